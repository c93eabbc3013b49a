"""Cluster events from the servers' own log files, to the millisecond. Pure: no Redis.

Polling ``CLUSTER NODES`` sees an event up to one poll late and only as one node saw it. The
servers log the moments that matter themselves: a master *marking* a node as failing once a
quorum agrees (FAIL, the cluster's decision, not one node's PFAIL suspicion) and a replica
*winning* its failover election (the promotion). Log lines look like
``1234:S 27 Nov 2026 16:42:49.123 # Failover election won for epoch 7.`` in the servers' local
time, which on this machine is the harness's local time too.
"""

from __future__ import annotations

import re
from datetime import datetime

_LINE = re.compile(r"^\d+:[A-Z] (\d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2}\.\d{3}) [.\-*#] (.*)$")
_FAILING = re.compile(r"Marking node ([0-9a-f]{40}).* as failing \(quorum reached\)")
_ELECTION_WON = "Failover election won"


def line_time(line: str) -> tuple[float, str] | None:
    """(epoch s, message) of one log line, or None for anything else."""
    match = _LINE.match(line.strip())
    if not match:
        return None
    try:
        stamp = datetime.strptime(match.group(1), "%d %b %Y %H:%M:%S.%f")
    except ValueError:
        return None
    return stamp.timestamp(), match.group(2)


def marked_failing_at(log_text: str, node_id: str, after: float) -> float | None:
    """When this server marked ``node_id`` as failing by quorum, at or after ``after`` (epoch s)."""
    for line in log_text.splitlines():
        parsed = line_time(line)
        if parsed and parsed[0] >= after:
            match = _FAILING.search(parsed[1])
            if match and match.group(1) == node_id:
                return parsed[0]
    return None


def election_won_at(log_text: str, after: float) -> float | None:
    """When this (replica) server won a failover election, at or after ``after`` (epoch s)."""
    for line in log_text.splitlines():
        parsed = line_time(line)
        if parsed and parsed[0] >= after and _ELECTION_WON in parsed[1]:
            return parsed[0]
    return None


# What a partitioned master and the rest of the cluster log about it (Redis 7 wording).
STATE_FAIL = "Cluster state changed: fail"  # a node stopped serving: on an isolated master, it stops taking writes
STATE_OK = "Cluster state changed: ok"
RECONFIGURED_AS_REPLICA = "Reconfiguring myself as a replica of"  # an old master learned it was replaced
SYNC_DONE = "MASTER <-> REPLICA sync: Finished with success"  # a replica loaded its master's data


def first_at(log_text: str, needle: str, after: float) -> float | None:
    """When this server first logged a line containing ``needle``, at or after ``after`` (epoch s)."""
    for line in log_text.splitlines():
        if needle not in line:
            continue
        parsed = line_time(line)
        if parsed and parsed[0] >= after and needle in parsed[1]:
            return parsed[0]
    return None
