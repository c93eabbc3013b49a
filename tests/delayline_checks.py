"""Checks of bench.delayline that must run inside a private network namespace; tests/test_delayline.py starts
this file under ``unshare --net`` (bench.netns.unshare_command) and reads the JSON it prints on its last line.

    python tests/delayline_checks.py rtt STATE_DIR    0.5/1/2 ms to the clients, 2 ms between nodes, jitter,
                                                      nodes only; after stop: loopback speed, no rules
    python tests/delayline_checks.py dead STATE_DIR   a SIGKILLed delayer stops traffic; a killed harness
                                                      takes its delayer along
    python tests/delayline_checks.py cost STATE_DIR   the delayer's CPU per packet and release lateness,
                                                      one connection at a time and 20 at once
    python tests/delayline_checks.py hold STATE_DIR   (for `dead`) start a delay line, print its pid, wait
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import delayline, netns
from bench.children import spawn
from bench.servers import RedisServer, find_server_bin

MASTER, REPLICA, STANDALONE = ("127.0.0.2", 6400), ("127.0.0.3", 6400), ("127.0.0.1", 6401)
NODES = [MASTER[0], REPLICA[0]]


def start_servers(state_dir: str) -> list[RedisServer]:
    servers = []
    for host, port in (MASTER, REPLICA, STANDALONE):
        server = RedisServer(find_server_bin(), port, Path(state_dir) / f"{host}-{port}", host=host)
        server.start()
        servers.append(server)
    return servers


def alive(pid: int | None) -> bool:
    return pid is not None and Path(f"/proc/{pid}").exists()


def my_delayers() -> list[int]:
    """Delayer processes this process started (the pid namespace is the host's: others may run theirs)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"bench.delayer" in cmdline:
            found.append(int(stat.parent.name))
    return found


def rules_in_force() -> list[str]:
    listed = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True, timeout=20).stdout
    return [line for line in listed.splitlines() if delayline.CHAIN in line]


def rtt(state_dir: str) -> dict[str, Any]:
    netns.setup()
    servers = start_servers(state_dir)
    master, replica = servers[0].client(), servers[1].client()
    endpoints = [MASTER, REPLICA, STANDALONE]
    out: dict[str, Any] = {"base": delayline.measure_rtt(endpoints, count=100)}
    try:
        for ms in (0.5, 1.0, 2.0):
            line = delayline.DelayLine(endpoints, rtt_ms=ms, node_rtt_ms=2.0, node_addresses=NODES)
            with line:
                run: dict[str, Any] = {"clients": line.measure(endpoints, count=150)}
                run["node"] = line.measure([MASTER], source=REPLICA[0], count=100)
                run |= {"describe": line.describe(), "in_force": rules_in_force(), "built": line.rules()}
                if ms == 1.0:  # replication goes through the node delay, and still works
                    replica.replicaof(*MASTER)
                    master.set("through", "the delay line")
                    deadline = time.monotonic() + 10
                    while replica.get("through") is None and time.monotonic() < deadline:
                        time.sleep(0.05)
                    run["replicated"] = replica.get("through") == b"the delay line"
                run["stats"], run["pid"], run["cpu_s"] = line.stats(), line.pid, line.cpu_seconds()
            run["after"] = delayline.measure_rtt(endpoints, count=100)
            run["after_rules"], run["after_alive"] = rules_in_force(), alive(run["pid"])
            out[str(ms)] = run
        line = delayline.DelayLine(endpoints, rtt_ms=0, node_rtt_ms=2.0, node_addresses=NODES)
        with line:
            out["nodes_only"] = {
                "clients": line.measure(endpoints, count=100),
                "node": line.measure([MASTER], source=REPLICA[0], count=100),
                "in_force": rules_in_force(),
                "describe": line.describe(),
            }
        with delayline.DelayLine([MASTER], rtt_ms=1.0, jitter_ms=0.6, seed=7) as line:
            times = sorted(delayline.ping_times(*MASTER, count=300))
            out["jitter"] = {"p5": times[15], "p50": times[150], "p95": times[285], "describe": line.describe()}
    finally:
        for server in servers:
            server.stop()
    return out


def _ping_once(sock: socket.socket) -> str:
    try:
        sock.sendall(b"PING\r\n")
        return "answered" if sock.recv(64) == b"+PONG\r\n" else "garbled"
    except TimeoutError:
        return "timed out"


def _connect(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return "connected"
    except TimeoutError:
        return "timed out"


def dead(state_dir: str) -> dict[str, Any]:
    netns.setup()
    servers = start_servers(state_dir)
    out: dict[str, Any] = {}
    try:
        partial = delayline.DelayLine([(MASTER[0], 70000)], rtt_ms=1.0)  # a port iptables refuses
        try:
            partial.start()  # the delayer is up when the rules fail: undone, all of it
            out["partial"] = "started"
        except RuntimeError as exc:
            out["partial"] = str(exc)
        out["partial_left"] = {"rules": rules_in_force(), "delayers": my_delayers()}
        partial.stop()  # again: nothing left to do
        line = delayline.DelayLine([MASTER, STANDALONE], rtt_ms=1.0, calibrate=False)
        with line:
            sock = socket.create_connection(MASTER, timeout=1.0)
            out["before"] = _ping_once(sock)
            assert line.pid is not None
            os.kill(line.pid, signal.SIGKILL)
            delayer = line._delayer
            assert delayer is not None
            deadline = time.monotonic() + 5
            while delayer.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            out["killed"] = not delayer.alive()
            out["open_connection"] = _ping_once(sock)
            out["new_connection"] = _connect(*MASTER)
            out["standalone"] = _connect(*STANDALONE)
            out["rules_while_dead"] = len(rules_in_force())
        sock.close()
        out["after_stop"] = _connect(*MASTER)
        out["after_rules"] = rules_in_force()
        # the harness dies (SIGKILL): the kernel kills its delayer with it (PR_SET_PDEATHSIG)
        cmd, env = [sys.executable, __file__, "hold", state_dir], {**os.environ}
        holder = spawn(cmd, stdout=subprocess.PIPE, text=True, env=env)
        assert holder.stdout is not None
        pid = int(holder.stdout.readline())
        out["held_alive"] = alive(pid)
        holder.kill()
        holder.wait(timeout=10)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        out["orphan_alive"] = alive(pid)
        out["orphan_rules"] = len(rules_in_force())  # left in force: traffic stays stopped, never undelayed
        out["after_orphan"] = _connect(*MASTER)
    finally:
        for server in servers:
            server.stop()
    return out


def hold(state_dir: str) -> None:
    line = delayline.DelayLine([MASTER], rtt_ms=1.0, calibrate=False)
    line.start()
    print(line.pid, flush=True)
    time.sleep(30)  # killed long before


def _load(target: tuple[str, int], conns: int, seconds: float) -> int:
    """``conns`` connections each PINGing back to back for ``seconds``: the round trips done."""
    selector, socks, done = selectors.DefaultSelector(), [], 0
    for _ in range(conns):
        sock = socket.create_connection(target, timeout=2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
        sock.send(b"PING\r\n")
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # bounded by the time
        for key, _ in selector.select(0.5):
            if key.fileobj.recv(64):  # type: ignore[union-attr]
                done += 1
                key.fileobj.send(b"PING\r\n")  # type: ignore[union-attr]
    for sock in socks:
        sock.close()
    return done


def cost(state_dir: str) -> dict[str, Any]:
    netns.setup()
    servers = start_servers(state_dir)
    out: dict[str, Any] = {}
    try:
        with delayline.DelayLine([MASTER], rtt_ms=1.0) as line:
            for name, conns, seconds in (("one", 1, 1.0), ("twenty", 20, 1.5)):
                line.reset_lateness()
                cpu, packets, start = line.cpu_seconds(), line.packets(), time.monotonic()
                pings = _load(MASTER, conns, seconds)
                stats = line.stats()
                n = stats["packets"] - packets
                out[name] = {
                    "pings_per_s": round(pings / (time.monotonic() - start)),
                    "packets": n,
                    "cpu_us_per_packet": round((line.cpu_seconds() - cpu) / max(1, n) * 1e6, 1),
                    **{k: v for k, v in stats.items() if k.startswith("late")},
                }
            out["describe"] = line.describe()
    finally:
        for server in servers:
            server.stop()
    return out


if __name__ == "__main__":
    command, state = sys.argv[1], sys.argv[2]
    if command == "hold":
        hold(state)
        sys.exit(0)
    result = {"rtt": rtt, "dead": dead, "cost": cost}[command](state)
    print(json.dumps(result))
