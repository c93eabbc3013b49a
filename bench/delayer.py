"""The delay line's child process (started by :class:`bench.delayline.DelayLine`): it binds NFQUEUE queues,
holds every queued packet and issues its ACCEPT verdict when the packet is due.

    python -m bench.delayer serve --queue NUM:DELAY_US[:JITTER_US] [--queue ...] [--seed N]
    python -m bench.delayer probe [--iptables PATH]     (a throwaway private namespace only)

One loop, one thread: wait on the netlink socket (and the harness's command pipe) until the next packet is
due, take every packet that arrived, ACCEPT those due. The netlink calls are fnfqueue's C helpers (its
``lib``): its Python ``Connection`` reads in a thread and iterates without a timeout, which a delay needs.
Packets are copied as metadata only (no payload), unsegmented (GSO), so a 64 KiB loopback send is one
verdict. Timer wake-ups come tens of µs late on a VM: the loop learns how late (a moving average, capped at
``--max-lead-us``), wakes that much early and spins the rest, so releases land on their due time.

Commands on stdin, one a line, each answered with one JSON line of counters on stdout: ``stats``,
``reset`` (the lateness histogram), ``delay QUEUE US`` (the calibrated per-hop delay). SIGTERM or EOF on
stdin: every held packet is released at once (the harness has removed the rules first) and it exits;
the harness's death kills it (PR_SET_PDEATHSIG), and the kernel then drops what it held, never accepts it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import math
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import netns
from .children import spawn

QUEUE_BASE = 7100  # the client queue; the node queue is the next number (queue numbers are per namespace)
MAX_HELD = 65536  # kernel queue length; past it packets are dropped (never let through: no fail-open)
MAX_LEAD_US = 60.0  # at most this much spinning per timer wake-up
LATE_BUCKETS = 20_000  # release lateness histogram, 1 µs buckets; the last one holds everything later
ENOBUFS = 105
ROOT = Path(__file__).resolve().parent.parent


class Schedule:
    """Release times of one queue: arrival + delay (± uniform jitter), never before the previous release."""

    def __init__(self, delay_us: float, jitter_us: float = 0.0, seed: int | None = None) -> None:
        self.delay_s, self.jitter_s = delay_us / 1e6, jitter_us / 1e6
        self.rng = random.Random(seed)
        self.last = -math.inf

    def due(self, arrival: float) -> float:
        delay = self.delay_s
        if self.jitter_s:
            delay = max(0.0, delay + self.rng.uniform(-self.jitter_s, self.jitter_s))
        self.last = max(self.last, arrival + delay)  # FIFO: a short draw waits for the packet ahead
        return self.last


def lateness(histogram: Sequence[int]) -> dict[str, int]:
    """p50, p99 and max (µs) of a 1 µs-bucket histogram; {} when it is empty."""
    total, seen, marks = sum(histogram), 0, {}
    for bucket, n in enumerate(histogram):
        seen += n
        for name, p in (("late_p50_us", 0.5), ("late_p99_us", 0.99), ("late_max_us", 1.0)):
            if name not in marks and n and seen >= p * total:
                marks[name] = bucket
    return marks


class Delayer:
    BATCH = 64  # netlink messages per recvmmsg

    def __init__(self, schedules: dict[int, Schedule], max_lead_us: float = MAX_LEAD_US) -> None:
        from fnfqueue._fnfqueue import ffi, lib

        self.ffi, self.lib, self.schedules = ffi, lib, schedules
        self.lead, self.max_lead = 0.0, max_lead_us / 1e6
        self.held: dict[int, collections.deque[tuple[float, int]]] = {q: collections.deque() for q in schedules}
        self.late = [0] * (LATE_BUCKETS + 1)
        self.packets = self.errors = 0
        self.conn = ffi.new("struct nfq_connection *")
        if lib.init_connection(self.conn) == -1:
            raise OSError(ffi.errno, f"netlink socket: {os.strerror(ffi.errno)}")
        # SO_RCVBUFFORCE (root) on a dup of the same socket: a burst waits there instead of being lost
        with socket.fromfd(self.conn.fd, socket.AF_NETLINK, socket.SOCK_RAW) as dup, contextlib.suppress(OSError):
            dup.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
        os.set_blocking(self.conn.fd, False)
        self.buffers = [ffi.new("char[]", 4096) for _ in range(self.BATCH)]  # metadata only: small messages
        self.slots = [ffi.new("struct nfq_packet *") for _ in range(self.BATCH)]
        for slot, buffer in zip(self.slots, self.buffers, strict=True):
            slot.buffer, slot.len = buffer, 4096
        self.array = ffi.new("struct nfq_packet *[]", self.slots)
        self.verdict = ffi.new("struct nfq_packet *")  # only its queue and packet id are read
        seq = 0
        for q in schedules:
            for call, args in (
                (lib.bind_queue, ()),
                (lib.set_mode, (0, lib.NFQNL_COPY_META)),
                (lib.set_maxlen, (MAX_HELD,)),
                (lib.set_flags, (lib.NFQA_CFG_F_GSO, lib.NFQA_CFG_F_GSO)),
            ):
                seq += 1
                sent = call(self.conn, q, *args, 1, seq) != -1
                answer = self._ack(seq) if sent else ffi.errno
                if answer != -1:  # -1: the kernel's ACK
                    why = os.strerror(answer) if answer > 0 else "no answer from the kernel"
                    raise OSError(f"nfqueue {q}: {call.__name__} failed ({why})")

    def _ack(self, seq: int) -> int:
        """The kernel's answer to request ``seq``: -1 is an ACK, a positive number an errno; 0: none came."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # bounded: 5 s
            select.select([self.conn.fd], [], [], 0.5)
            if self.lib.receive(self.conn, self.array, 1) == 1 and self.array[0].seq == seq:
                return int(self.lib.parse_packet(self.array[0]))
        return 0

    def receive(self) -> None:
        lib, array, held, schedules = self.lib, self.array, self.held, self.schedules
        for _ in range(1000):  # at most 64 000 packets, then the releases get their turn
            n = lib.receive(self.conn, array, self.BATCH)
            if n <= 0:
                if n == -1 and self.ffi.errno == ENOBUFS:  # the kernel dropped messages, and with them packets
                    self.errors += 1
                    continue
                return
            now = time.monotonic()
            for i in range(n):
                packet = array[i]
                if lib.parse_packet(packet) == 0:
                    held[packet.queue_id].append((schedules[packet.queue_id].due(now), packet.id))
                    self.packets += 1
            if n < self.BATCH:
                return

    def release(self, until: float) -> None:
        """ACCEPT every packet due by ``until``, one verdict per queue: a batch verdict accepts every id up to
        its own, exactly the due run since the release times of a queue are in arrival (= id) order."""
        late, verdict = self.late, self.verdict
        for q, held in self.held.items():
            count, last = 0, 0
            while held and held[0][0] <= until:
                due, last = held.popleft()
                if until != math.inf:
                    late[min(LATE_BUCKETS, max(0, int((until - due) * 1e6)))] += 1
                count += 1
            if count:
                verdict.queue_id, verdict.id = q, last
                call = self.lib.set_verdict if count == 1 else self.lib.set_verdict_batch
                if call(self.conn, verdict, self.lib.NF_ACCEPT, 0, 0, 0) == -1:
                    self.errors += 1

    def stats(self) -> dict[str, Any]:
        held = sum(map(len, self.held.values()))
        counts = {"packets": self.packets, "held": held, "errors": self.errors, "cpu_s": time.process_time()}
        return counts | {"lead_us": round(self.lead * 1e6, 1)} | lateness(self.late)

    def command(self, line: str) -> None:
        words = line.split() or ["stats"]
        if words[0] == "delay":
            self.schedules[int(words[1])].delay_s = float(words[2]) / 1e6
        elif words[0] == "reset":
            self.late = [0] * (LATE_BUCKETS + 1)
        sys.stdout.write(json.dumps(self.stats()) + "\n")
        sys.stdout.flush()

    def serve(self) -> None:
        stopping: list[int] = []
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)  # a SIGTERM ends the select below at once
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops us, after it removed the rules
        ctypes.CDLL(None).prctl(29, 1)  # PR_SET_TIMERSLACK 1 ns, not the default 50 µs
        stdin, fd, pending = sys.stdin.fileno(), self.conn.fd, b""
        while not stopping:
            due = min((h[0][0] for h in self.held.values() if h), default=math.inf)
            wake = due - self.lead
            remaining = wake - time.monotonic()
            ready = select.select([fd, stdin, wake_r], [], [], min(1.0, max(0.0, remaining)))[0]
            if not ready and 0.0 < remaining <= 1.0:  # woken for the next due packet: learn how late that is
                now = time.monotonic()
                self.lead = min(self.max_lead, 0.9 * self.lead + 0.1 * max(0.0, now - wake))
                while now < due:  # at most max_lead: what is left of the early wake-up
                    now = time.monotonic()
            if wake_r in ready:
                os.read(wake_r, 512)
            if fd in ready:
                self.receive()
            if stdin in ready:
                chunk = os.read(stdin, 4096)
                if not chunk:  # EOF: the harness is gone
                    break
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self.command(line.decode())
            self.release(time.monotonic())
        self.release(math.inf)  # the rules are gone already: hand back what is held


def child_env() -> dict[str, str]:
    """The children import this checkout's bench, installed or not."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


class DelayerProcess:
    """The harness's handle on a delayer child: started and bound to its queues once it answers, asked for
    counters or a new delay, stopped; its last counters and CPU time stay readable after."""

    def __init__(self, queues: dict[int, tuple[float, float]], *, seed: int | None, max_lead_us: float) -> None:
        cmd = [sys.executable, "-m", "bench.delayer", "serve", "--max-lead-us", str(max_lead_us)]
        for q, (delay_us, jitter_us) in queues.items():
            cmd += ["--queue", f"{q}:{delay_us}:{jitter_us}"]
        cmd += ["--seed", str(seed)] if seed is not None else []
        self.last: dict[str, Any] = {"packets": 0}
        self.cpu, self.buffer = 0.0, b""
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop: it lives as long as the child)
        self.proc = spawn(  # owned: PR_SET_PDEATHSIG; own session: a terminal's Ctrl-C is the harness's
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=child_env(),
            start_new_session=True,
        )
        try:
            self.ask("stats", timeout=15)  # answered once every queue is bound
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, command: str, timeout: float = 5.0) -> dict[str, Any]:
        """One command, its one-line JSON answer."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        if not self.alive() or stdin is None or stdout is None or stdin.closed:
            raise RuntimeError(f"the delayer is not running{self._stderr_tail()}")
        stdin.write(command.encode() + b"\n")
        stdin.flush()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:  # bounded by the deadline
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                raise RuntimeError(f"the delayer did not answer {command!r} in {timeout} s")
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the delayer exited{self._stderr_tail()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.last = json.loads(line)
        return dict(self.last)

    def _stderr_tail(self) -> str:
        if self.stderr.closed:
            return ""
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace").strip().splitlines()
        return f": {tail[-1]}" if tail else ""

    def cpu_seconds(self) -> float:
        """user+sys CPU, from /proc (the last value read once it is gone)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            self.cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
        return self.cpu

    def stop(self) -> None:
        """SIGTERM: it releases what it holds and exits (the harness removed the rules before)."""
        if self.alive():
            with contextlib.suppress(RuntimeError, OSError):
                self.ask("stats", timeout=2)  # the last counters, kept for after
            self.cpu_seconds()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def run_probe(iptables: str) -> int:
    """In a throwaway private namespace: one SYN to a closed port is queued, arrives here, is accepted."""
    if not netns.is_private():
        raise SystemExit("probe refused: not in a private network namespace")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    delayer = Delayer({QUEUE_BASE: Schedule(0)})
    rule = f"-A OUTPUT -p tcp -d 127.0.0.1 --dport 9 -j NFQUEUE --queue-num {QUEUE_BASE}".split()
    done = subprocess.run([iptables, "-w", *rule], timeout=20, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"iptables NFQUEUE: {done.stderr.strip()}")
    with socket.socket() as sock:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", 9))
        deadline = time.monotonic() + 5
        while not delayer.packets and time.monotonic() < deadline:  # bounded: 5 s
            select.select([delayer.conn.fd], [], [], 0.2)
            delayer.receive()
        delayer.release(math.inf)
    if not delayer.packets:
        raise SystemExit("no packet reached the NFQUEUE queue")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delayer")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="hold queued packets, ACCEPT each when due")
    serve.add_argument("--queue", action="append", required=True, help="NUM:DELAY_US[:JITTER_US], one a queue")
    serve.add_argument("--seed", type=int, default=None)
    serve.add_argument("--max-lead-us", type=float, default=MAX_LEAD_US)
    sub.add_parser("probe", help="NFQUEUE works here (a private namespace only)").add_argument("--iptables")
    args = parser.parse_args(argv)
    if args.command == "probe":
        return run_probe(args.iptables or netns.iptables_bin() or "iptables")
    schedules = {}
    for spec in args.queue:
        num, delay, jitter = [*spec.split(":"), "0"][:3]
        seed = None if args.seed is None else args.seed + int(num)  # each queue its own draws
        schedules[int(num)] = Schedule(float(delay), float(jitter), seed)
    Delayer(schedules, args.max_lead_us).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
