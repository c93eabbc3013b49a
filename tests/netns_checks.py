"""Checks that must run inside a private network namespace; tests/test_partitions.py starts this file under
``unshare --net`` (bench.netns.unshare_command) and reads the JSON it prints on its last line.

    python tests/netns_checks.py firewall          links cut and healed by address, the restore check's firewall part
    python tests/netns_checks.py restore STATE_DIR each partition kind with a heal that "forgets" its rules: the
                                                   restore check must say so; then a real heal: restored and checked
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import faults, netns
from bench.backends import BackendSpec, ClusterBackend, start_backend
from bench.ports import free_port


def _connects(source: str, host: str, port: int, timeout: float = 0.4) -> bool:
    with socket.socket() as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        try:
            sock.connect((host, port))
            return True
        except OSError:
            return False


def firewall() -> dict[str, Any]:
    netns.setup()
    out: dict[str, Any] = {"private": netns.is_private(), "inside": netns.inside()}
    listeners = []
    for host in ("127.0.0.2", "127.0.0.3"):
        sock = socket.socket()
        sock.bind((host, 7777))
        sock.listen(16)
        listeners.append(sock)
    wall = netns.Firewall()
    out["before"] = {
        "2->3": _connects("127.0.0.2", "127.0.0.3", 7777),
        "1->3": _connects("127.0.0.1", "127.0.0.3", 7777),
    }
    out["rules"] = wall.cut([("127.0.0.2", "127.0.0.3")])
    out["cut"] = {
        "2->3": _connects("127.0.0.2", "127.0.0.3", 7777),
        "3->2": _connects("127.0.0.3", "127.0.0.2", 7777),
        "1->3": _connects("127.0.0.1", "127.0.0.3", 7777),
        "4->3": _connects("127.0.0.4", "127.0.0.3", 7777),
        "1->2": _connects("127.0.0.1", "127.0.0.2", 7777),
    }
    out["problems_cut"] = wall.problems()
    wall.heal()
    out["problems_healed"] = wall.problems()
    out["healed"] = {"2->3": _connects("127.0.0.2", "127.0.0.3", 7777)}
    for sock in listeners:
        sock.close()
    return out


class ForgetfulFirewall(netns.Firewall):
    """Heals nothing until told to: what a crashed or buggy heal would leave behind."""

    forget = True

    def heal(self) -> None:
        if not self.forget:
            super().heal()


def restore(state_dir: str) -> dict[str, Any]:
    netns.setup()
    port = free_port(span=6, start=23000, bus_offset=10000)
    spec = BackendSpec(
        "cluster",
        port=port,
        state_dir=Path(state_dir),
        node_timeout_ms=1000,
        node_addresses=True,
        extra_config={"repl-diskless-sync-delay": "0"},
    )
    backend = start_backend(spec)
    assert isinstance(backend, ClusterBackend)
    out: dict[str, Any] = {"addresses": backend.nodes}
    try:
        for kind, hold in (("partition-client", 0.6), ("partition-master", 3.0)):
            wall = ForgetfulFirewall()
            injector = faults.FaultInjector(backend, kind, "q", 0, time.time() + 0.1, hold_s=hold, firewall=wall)
            injector.start()
            injector.join(timeout=30)
            forgotten = faults.restore(backend, injector, timeout=3)
            assert forgotten is not None
            forgotten_problems = list(forgotten.restore_problems)  # the same events object is restored again below
            wall.forget = False
            healed = faults.restore(backend, injector, timeout=40)
            assert healed is not None
            out[kind] = {
                "forgotten_problems": forgotten_problems,
                "healed_problems": healed.restore_problems,
                "cut": healed.cut,
                "promoted_at": healed.promoted_at,
                "demoted_at": healed.demoted_at,
                "resynced_at": healed.resynced_at,
                "target": healed.target,
                "roles": {
                    s.address: s.client(1.0).info("replication").get("role") for s in backend.servers if s.is_alive()
                },
            }
    finally:
        backend.stop()
    return out


if __name__ == "__main__":
    result = {"firewall": firewall, "restore": restore}[sys.argv[1]](*sys.argv[2:])
    print(json.dumps(result, default=str))
