"""A network delay line inside a private network namespace: the packets of chosen links are held in userspace
and released after a delay, so a cell can run against servers "1 ms away" (bench.netns has the namespace).

The kernel here has no netem/fq qdisc, so packets are queued with iptables' NFQUEUE target on OUTPUT (on
loopback every packet passes OUTPUT exactly once) to a delayer child (:mod:`bench.delayer`) that holds each
one and ACCEPTs it when due. Two queues, two delay classes: the clients' links to the endpoints (both ways,
classified by address *and* port, since a standalone server shares 127.0.0.1 with its clients), and the
links between two node addresses (replication, cluster bus). Each is delayed half its round trip each way.

No ``--queue-bypass``: with the delayer gone, queued traffic stops instead of flowing undelayed. Jitter is
uniform: each one-way delay is drawn from ``rtt/2 ± jitter/2`` (a round trip lies in ``rtt ± jitter``), and
a packet is never released before the one queued ahead of it (FIFO per queue: no reordering).

The path itself adds some tens of µs per hop (wake-ups of the delayer, the server and the client), so
:meth:`DelayLine.start` calibrates: PING with the configured delay and take that share off the per-hop delay,
until the p50 is within 2 % of the target twice in a row (at most 3 rounds of 50 pings per class).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import ipaddress
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import netns
from .delayer import MAX_LEAD_US, QUEUE_BASE, DelayerProcess, child_env

CHAIN = "TQB-DELAY"
BINDING = "fnfqueue"
FORCE_UNAVAILABLE_ENV = "TQB_DELAY_UNAVAILABLE"  # tests: "what is missing", as if the machine lacked it
CAL_PINGS, CAL_ROUNDS, CAL_TOLERANCE = 50, 3, 0.02
ROOT = Path(__file__).resolve().parent.parent


def build_rules(
    endpoints: Sequence[tuple[str, int]],
    client_address: str,
    node_addresses: Sequence[str],
    client_queue: int | None,
    node_queue: int | None,
) -> list[str]:
    """The chain's rules, as ``iptables -S`` prints them; a class whose queue is None is not delayed."""
    rules = []
    if client_queue is not None:
        for host, port in endpoints:
            to, back = f"-s {client_address}/32 -d {host}/32", f"-s {host}/32 -d {client_address}/32"
            rules.append(f"-A {CHAIN} {to} -p tcp -m tcp --dport {port} -j NFQUEUE --queue-num {client_queue}")
            rules.append(f"-A {CHAIN} {back} -p tcp -m tcp --sport {port} -j NFQUEUE --queue-num {client_queue}")
    if node_queue is not None:
        for a in node_addresses:
            for b in node_addresses:
                if b != a:
                    rules.append(f"-A {CHAIN} -s {a}/32 -d {b}/32 -p tcp -j NFQUEUE --queue-num {node_queue}")
    return rules


def percentile(ascending: Sequence[float], p: float) -> float:
    """Nearest rank."""
    return ascending[max(0, math.ceil(p / 100 * len(ascending)) - 1)] if ascending else math.nan


def ping_times(
    host: str, port: int, *, source: str | None = None, count: int = 50, timeout: float = 2.0
) -> list[float]:
    """``count`` RESP PING round trips (µs) on one raw TCP connection, after two warm-ups."""
    source_address = (source, 0) if source else None
    with socket.create_connection((host, port), timeout, source_address=source_address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for i in range(max(1, min(count, 10_000)) + 2):
            start = time.perf_counter()
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n") and len(reply) < 64:  # a 7-byte reply: a read or two
                chunk = sock.recv(64)
                if not chunk:
                    raise ConnectionError(f"{host}:{port} closed the connection")
                reply += chunk
            if reply != b"+PONG\r\n":
                raise ConnectionError(f"{host}:{port} answered {reply!r} to PING")
            if i >= 2:
                times.append((time.perf_counter() - start) * 1e6)
    return times


def measure_rtt(
    targets: Sequence[tuple[str, int]], *, source: str | None = None, count: int = 50, timeout: float = 2.0
) -> dict[str, dict[str, float]]:
    out = {}
    for host, port in targets:
        times = sorted(ping_times(host, port, source=source, count=count, timeout=timeout))
        out[f"{host}:{port}"] = {"p50_us": percentile(times, 50), "p99_us": percentile(times, 99), "count": len(times)}
    return out


def binding_version() -> str | None:
    try:
        return importlib.metadata.version(BINDING)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _probe_once(iptables: str) -> str | None:
    cmd, env = netns.unshare_command([sys.executable, "-m", "bench.delayer", "probe", "--iptables", iptables])
    try:
        env["PYTHONPATH"] = child_env()["PYTHONPATH"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"a working NFQUEUE in `unshare --net` ({exc})"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"the kernel's NFQUEUE (xt_NFQUEUE, nfnetlink_queue) working in a namespace ({tail})"
    return None


def delay_problems(euid: int | None = None) -> list[str]:
    """What this machine lacks for a delay line ([] when nothing). The NFQUEUE probe runs once per process,
    in a throwaway ``unshare --net`` namespace, never the host's."""
    forced = os.environ.get(FORCE_UNAVAILABLE_ENV, "").strip()
    if forced:
        return [forced]
    problems = netns.netns_problems(euid, probe=False)  # root, unshare, ip, iptables
    try:
        import fnfqueue  # noqa: F401
    except Exception as exc:  # not installed, or its shared library does not load here
        problems.append(f"the {BINDING} package (pip install {BINDING}; {type(exc).__name__}: {exc})")
    iptables = netns.iptables_bin()
    if problems or iptables is None:
        return problems
    failed = _probe_once(iptables)
    return [failed] if failed else []


class DelayLine:
    """Delays the clients' links to ``endpoints`` by ``rtt_ms`` and node-to-node links by ``node_rtt_ms``
    (round trips, half each way). ``queue_base`` and ``queue_base + 1`` are its queues: one delay line per
    namespace at a time, unless given other numbers."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        rtt_ms: float,
        node_rtt_ms: float = 0.0,
        jitter_ms: float = 0.0,
        client_address: str = "127.0.0.1",
        node_addresses: Sequence[str] = (),
        iptables: str | None = None,
        queue_base: int = QUEUE_BASE,
        calibrate: bool = True,
        seed: int | None = None,
        max_lead_us: float = MAX_LEAD_US,
    ) -> None:
        if min(rtt_ms, node_rtt_ms, jitter_ms) < 0:
            raise ValueError("rtt_ms, node_rtt_ms and jitter_ms must be >= 0")
        for address in [client_address, *node_addresses, *(h for h, _ in endpoints)]:
            if ipaddress.ip_address(address).version != 4:  # the rules match IPv4 addresses, never names
                raise ValueError(f"{address}: an IPv4 address, please")
        self.endpoints = [(h, int(p)) for h, p in endpoints]
        self.rtt_ms, self.node_rtt_ms, self.jitter_ms = rtt_ms, node_rtt_ms, jitter_ms
        self.client_address, self.node_addresses = client_address, list(node_addresses)
        self.iptables, self.calibrate, self.seed, self.max_lead_us = iptables, calibrate, seed, max_lead_us
        self.queues: dict[str, int] = {}
        if rtt_ms > 0 and self.endpoints:
            self.queues["client"] = queue_base
        if node_rtt_ms > 0 and len(self.node_addresses) > 1:
            self.queues["nodes"] = queue_base + 1
        self.configured_us = {"client": rtt_ms * 500, "nodes": node_rtt_ms * 500}  # per hop: half a round trip
        self.hop_us = {k: self.configured_us[k] for k in self.queues}
        self.calibration: dict[str, dict[str, Any]] = {}
        self._delayer: DelayerProcess | None = None
        self._stopped: DelayerProcess | None = None  # the last one: its counters stay readable
        self._installed = False

    def rules(self) -> list[str]:
        client, nodes = self.queues.get("client"), self.queues.get("nodes")
        return build_rules(self.endpoints, self.client_address, self.node_addresses, client, nodes)

    def _ipt(self, *args: str, stdin: str | None = None, restore: bool = False) -> str:
        netns.require_private_netns("delay-line rules")  # on every call, like bench.netns.Firewall
        tool = self.iptables or netns.iptables_bin()
        if tool is None:
            raise RuntimeError("no iptables: apt-get install -y iptables")
        cmd = [tool + "-restore" if restore else tool, "-w", *args]
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
        return done.stdout

    def installed_rules(self) -> list[str]:
        """Our chain, its rules and the jumps to it, as in force now."""
        return [line for line in self._ipt("-S").splitlines() if CHAIN in line.split()]

    def _remove_rules(self) -> None:
        listed = self.installed_rules()
        lines = [line.replace("-A ", "-D ", 1) for line in listed if line.endswith(f"-j {CHAIN}")]
        if f"-N {CHAIN}" in listed:
            lines += [f"-F {CHAIN}", f"-X {CHAIN}"]
        if lines:  # one restore: the jumps and the chain go together
            self._ipt("--noflush", stdin="*filter\n" + "\n".join(lines) + "\nCOMMIT\n", restore=True)
        self._installed = False

    def start(self) -> None:
        """Delayer first, bound to its queues, then the rules (no packet waits on a missing listener), then
        the calibration. Anything that fails on the way is undone."""
        netns.require_private_netns("the delay line")
        if self._delayer is not None:
            raise RuntimeError("this delay line is started already")
        try:
            self._remove_rules()  # a chain left by an earlier delay line in this namespace
            if not self.queues:
                return  # nothing to delay: no rules, no delayer
            queues = {q: (self.hop_us[kind], self.jitter_ms * 500) for kind, q in self.queues.items()}
            self._delayer = DelayerProcess(queues, seed=self.seed, max_lead_us=self.max_lead_us)
            body = [f":{CHAIN} - [0:0]", *self.rules(), f"-I OUTPUT 1 -j {CHAIN}"]
            self._ipt("--noflush", stdin="*filter\n" + "\n".join(body) + "\nCOMMIT\n", restore=True)
            self._installed = True
            if self.calibrate:
                self._calibrate()
        except BaseException:
            self.stop()
            raise

    def _probe_link(self, kind: str) -> tuple[tuple[str, int], str | None] | None:
        """What to PING to calibrate ``kind``, and from where."""
        if kind == "client":
            return self.endpoints[0], None
        on_nodes = [(h, p) for h, p in self.endpoints if h in self.node_addresses]
        if not on_nodes:
            return None
        return on_nodes[0], next(a for a in self.node_addresses if a != on_nodes[0][0])

    def _calibrate(self) -> None:
        """Each round estimates the path's own share of the round trip (p50 - 2 × hop) and sets the hop from
        the median of the estimates so far, so one round on a busy moment does not throw it off; done after
        two rounds in a row within CAL_TOLERANCE. A class with no server to PING takes the other's offset:
        both go through the same path."""
        for kind in self.queues:
            link = self._probe_link(kind)
            if link is None:
                continue
            (host, port), source = link
            target, overheads, p50s = 2 * self.configured_us[kind], [], []
            for _ in range(CAL_ROUNDS):
                p50 = self.measure([(host, port)], source=source, count=CAL_PINGS)[f"{host}:{port}"]["p50_us"]
                p50s.append(round(p50, 1))
                if len(p50s) >= 2 and all(abs(p - target) <= CAL_TOLERANCE * target for p in p50s[-2:]):
                    break
                overheads.append(max(0.0, p50 - 2 * self.hop_us[kind]))
                self._set_hop(kind, (target - statistics.median(overheads)) / 2)
            self.calibration[kind] = {"target_us": target, "p50s_us": p50s}
        for kind in self.queues:
            if kind not in self.calibration and self.calibration:
                other = next(iter(self.calibration))
                self._set_hop(kind, self.configured_us[kind] - (self.configured_us[other] - self.hop_us[other]))

    def _set_hop(self, kind: str, hop_us: float) -> None:
        self.hop_us[kind] = max(0.0, hop_us)
        if self._delayer is not None:
            self._delayer.ask(f"delay {self.queues[kind]} {self.hop_us[kind]}")

    def stop(self) -> None:
        """Rules first (nothing is queued any more), then the delayer, which releases what it still holds."""
        try:
            if self._installed or self._delayer is not None:
                self._remove_rules()
        finally:
            delayer, self._delayer = self._delayer, None
            if delayer is not None:
                delayer.stop()
                self._stopped = delayer

    def __enter__(self) -> DelayLine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._delayer.pid if self._delayer is not None else None

    def stats(self) -> dict[str, Any]:
        """The delayer's counters: packets, held now, errors, its release lateness p50/p99/max (µs), its own
        CPU time; the last ones known once it is gone."""
        delayer = self._delayer or self._stopped
        if delayer is None:
            return {"packets": 0}
        if delayer.alive():
            with contextlib.suppress(RuntimeError, OSError):
                return delayer.ask("stats", timeout=2)
        return dict(delayer.last)

    def reset_lateness(self) -> None:
        if self._delayer is not None:
            self._delayer.ask("reset")

    def cpu_seconds(self) -> float:
        """user+sys CPU of the delayer, from /proc (the last value read once it is gone)."""
        delayer = self._delayer or self._stopped
        return delayer.cpu_seconds() if delayer is not None else 0.0

    def packets(self) -> int:
        return int(self.stats().get("packets", 0))

    def measure(
        self, targets: Sequence[tuple[str, int]], *, source: str | None = None, count: int = 50
    ) -> dict[str, dict[str, float]]:
        """PING round trips through the delay line (from ``source``, e.g. a replica's address)."""
        timeout = max(1.0, 20e-3 * (self.rtt_ms + self.node_rtt_ms + self.jitter_ms))
        return measure_rtt(targets, source=source, count=count, timeout=timeout)

    def describe(self) -> dict[str, Any]:
        return {
            "rtt_ms": self.rtt_ms,
            "node_rtt_ms": self.node_rtt_ms,
            "jitter_ms": self.jitter_ms,
            "jitter": "uniform: each one-way delay in rtt/2 ± jitter/2, FIFO per queue (no reordering)",
            "client_address": self.client_address,
            "endpoints": [f"{h}:{p}" for h, p in self.endpoints],
            "node_addresses": list(self.node_addresses),
            "queues": dict(self.queues),
            "configured_hop_us": {k: self.configured_us[k] for k in self.queues},
            "hop_delay_us": {k: round(v, 1) for k, v in self.hop_us.items()},
            "calibration_offset_us": {k: round(self.configured_us[k] - v, 1) for k, v in self.hop_us.items()},
            "calibration": dict(self.calibration),
            "binding": {"name": BINDING, "version": binding_version()},
            "chain": CHAIN,
            "rules": len(self.rules()),
        }
