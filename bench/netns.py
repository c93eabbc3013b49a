"""A private network namespace for cells with network faults, and the firewall inside it.

A network partition is made with firewall rules, and the host's own firewall is never touched:
``bench run`` re-executes itself under ``unshare --net`` (:func:`run_inside`). The new namespace
has nothing but its own loopback, which the inner run brings up (:func:`setup`). There every
cluster node gets its own loopback address (127.0.0.2, 127.0.0.3, …: ``bind``,
``bind-source-addr`` for its replication and cluster-bus connections, ``cluster-announce-ip``),
while every client (Locust, the harness) stays on 127.0.0.1. DROP rules by address pair
(:class:`Firewall`) then cut exactly the links a fault names: a master from the other nodes but
not from the clients (``partition-master``), or the clients from one master while the cluster still
sees it (``partition-client``). Rules sit on the INPUT path, so packets are sent and silently lost
as on a real partitioned network (a DROP on OUTPUT would fail the send at once with EPERM).

Every firewall command first checks that this process is in a namespace other than the host's
(:func:`require_private_netns`); the namespace disappears with its last process. The outer process
forwards SIGINT/SIGTERM/SIGHUP to the inner run and returns its exit code; the inner run is killed
by the kernel if the outer one dies (PR_SET_PDEATHSIG), and so are the servers and Locust.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .children import spawn
from .errors import UsageError
from .ports import LOOPBACK

NETWORK_FAULTS = ("partition-master", "partition-client")
DELAY_KEYS = ("rtt_ms", "node_rtt_ms")
IN_NETNS_ENV = "TQB_IN_NETNS"  # set for the re-executed run: the outer namespace's inode
FORCE_UNAVAILABLE_ENV = "TQB_NETNS_UNAVAILABLE"  # tests: "what is missing", as if the machine lacked it
CHAIN = "TQB-PARTITION"
CLIENT_ADDRESS = LOOPBACK  # clients never bind: every client connection comes from 127.0.0.1
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def node_host(index: int) -> str:
    """The loopback address of the ``index``-th node (0-based): 127.0.0.2, 127.0.0.3, …"""
    if not 0 <= index < 250:
        raise ValueError(f"node index {index}: at most 250 nodes get their own loopback address")
    return f"127.0.0.{2 + index}"


def delayed(params: dict[str, Any]) -> bool:
    """A cell with a network round trip of its own (the delay line, bench.delayline)."""
    return any(params.get(key) for key in DELAY_KEYS)


def wanted(cells: Iterable[Any], *, delay: bool | None = None) -> list[str]:
    """Ids of the cells (``scenario.Cell`` or dicts of params) that need a private namespace: a network
    fault or a network delay (``delay=True``: only the delayed ones; ``False``: only the faults)."""
    out = []
    for cell in cells:
        params = cell.params if hasattr(cell, "params") else cell
        fault, slow = params.get("fault") in NETWORK_FAULTS, delayed(params)
        if (fault and delay is not True) or (slow and delay is not False):
            out.append(str(getattr(cell, "id", params.get("fault"))))
    return out


def purpose(cells: Iterable[Any]) -> str:
    """What the namespace is for, in words: ``inject network partitions``, ``add a network delay`` or both."""
    listed = list(cells)
    parts = ["inject network partitions"] if wanted(listed, delay=False) else []
    return " and ".join(parts + (["add a network delay (rtt_ms, node_rtt_ms)"] if wanted(listed, delay=True) else []))


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


INIT_NETNS_INODE = 0xEFFFFFF9  # the kernel's fixed inode number of the initial network namespace


def is_private() -> bool:
    """True when this process's network namespace is neither the kernel's initial one, nor pid 1's
    (readable only from the same namespace), nor the one the run was started in (recorded by
    :func:`run_inside`); with no such record, pid 1's must be readable and different."""
    own = _inode("/proc/self/ns/net")
    if own is None or own == INIT_NETNS_INODE:
        return False
    outer = os.environ.get(IN_NETNS_ENV, "")
    host = _inode("/proc/1/ns/net")  # from inside a new namespace: permission denied (None)
    if host is not None and host == own:
        return False
    if outer.isdigit():
        return int(outer) != own
    return host is not None


def inside() -> bool:
    """True in the run :func:`run_inside` re-executed in a private namespace."""
    return bool(os.environ.get(IN_NETNS_ENV)) and is_private()


def require_private_netns(what: str) -> None:
    """Refuse ``what`` (firewall rules, nodes without protected mode) outside a private namespace."""
    if not is_private():
        raise RuntimeError(f"{what} only inside a private network namespace (bench run makes one); refused here")


def iptables_bin(which: Callable[[str], str | None] = shutil.which) -> str | None:
    return next((path for name in ("iptables", "iptables-legacy") if (path := which(name))), None)


def netns_problems(
    euid: int | None = None,
    which: Callable[[str], str | None] = shutil.which,
    probe: bool = True,
) -> list[str]:
    """What this machine lacks to run cells in a private network namespace, [] when nothing.
    ``$TQB_NETNS_UNAVAILABLE`` forces a problem (tests). With ``probe``, a throwaway namespace
    is made once (``unshare --net``, lo up, the firewall listed there): root in a container
    without CAP_SYS_ADMIN has the tools but not the right. The host's network is never touched."""
    forced = os.environ.get(FORCE_UNAVAILABLE_ENV, "").strip()
    if forced:
        return [forced]
    problems = []
    if (os.geteuid() if euid is None else euid) != 0:
        problems.append("root (namespaces and firewall rules need it)")
    for tool, hint in (("unshare", "util-linux"), ("ip", "iproute2")):
        if not which(tool):
            problems.append(f"`{tool}` ({hint})")
    iptables = iptables_bin(which)
    if iptables is None:
        problems.append("`iptables` (apt-get install -y iptables)")
    if problems or not probe:
        return problems
    unshare, ip = which("unshare"), which("ip")
    script = f'"{ip}" link set lo up && "{iptables}" -w -S INPUT >/dev/null'
    try:
        done = subprocess.run(
            [str(unshare), "--net", "--", "sh", "-c", script], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"a working `unshare --net` ({exc})"]
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return [f"a working `unshare --net` with iptables inside ({tail})"]
    return []


def named(cell_ids: Sequence[str]) -> str:
    return ", ".join(f"[{c}]" for c in cell_ids[:3]) + (f" and {len(cell_ids) - 3} more" if len(cell_ids) > 3 else "")


def refusal(cell_ids: Sequence[str], problems: Sequence[str], what: str = "inject network partitions") -> str:
    """The one line ``bench run`` stops with (exit 2) before starting anything."""
    return (
        f"cells {named(cell_ids)} {what}, which run in a private network namespace, but this machine "
        f"lacks {', '.join(problems)}; run as root with util-linux, iproute2 and iptables, or leave those cells out"
    )


def unshare_command(cmd: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``cmd`` run in a new network namespace, and its environment (which records this namespace,
    so the child can tell it is in another one: :func:`is_private`)."""
    env = {**os.environ, IN_NETNS_ENV: str(_inode("/proc/self/ns/net") or 0)}
    return [shutil.which("unshare") or "unshare", "--net", "--", *cmd], env


def run_inside(
    argv: Sequence[str],
    cell_ids: Sequence[str],
    *,
    docker: bool = False,
    external: bool = False,
    what: str = "inject network partitions",
    extra_problems: Callable[[], list[str]] | None = None,
) -> int:
    """Check, then run ``bench <argv>`` again inside a new network namespace and return its exit
    code. Refuses (UsageError, exit 2) before starting anything when the machine cannot."""
    if os.environ.get(IN_NETNS_ENV):  # re-executed already, yet not in a private namespace: never recurse
        raise UsageError(f"{IN_NETNS_ENV} is set but this process is not in a private network namespace; refused")
    if docker or external:
        raise UsageError(
            f"cells {named(cell_ids)} {what}, which need the embedded servers this suite starts in its own "
            "network namespace (your own network has its own round trip): drop --docker/--redis-url/--cluster-nodes"
        )
    problems = netns_problems()
    if not problems and extra_problems is not None:
        problems = extra_problems()
    if problems:
        raise UsageError(refusal(cell_ids, problems, what))
    cmd, env = unshare_command([sys.executable, "-m", "bench", *argv])
    proc = spawn(  # owned: the kernel kills the inner run (and with it everything) if we die
        cmd,
        env=env,
        start_new_session=True,  # a terminal's Ctrl-C reaches us only; we pass it on exactly once
    )

    def forward(signum: int, frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        returncode = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # only on an error here: never leave the inner run behind
            proc.kill()
            proc.wait()
    return 128 - returncode if returncode < 0 else returncode


def setup() -> None:
    """In the re-executed run: check the namespace is private, bring its loopback up."""
    require_private_netns("the partition run")
    done = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise UsageError(f"cannot bring up lo in the run's network namespace: {done.stderr.strip()}")


class Firewall:
    """DROP rules between address pairs, in one chain of the private namespace's INPUT path.
    ``cut`` installs a set of rules atomically (one ``iptables-restore``), ``heal`` flushes them
    (one command), ``rules`` lists what is in force for the restore check."""

    def __init__(self, iptables: str | None = None) -> None:
        require_private_netns("firewall rules")
        found = iptables or iptables_bin()
        if found is None:
            raise RuntimeError("no iptables: apt-get install -y iptables")
        self.iptables = found
        self._chain_ready = False

    def _run(self, *args: str, stdin: str | None = None, tool: str | None = None) -> str:
        require_private_netns("firewall rules")  # checked on every call, not only once
        cmd = [tool or self.iptables, "-w", *args]
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
        return done.stdout

    def _ensure_chain(self) -> None:
        if self._chain_ready:
            return
        listed = self._run("-S")
        if f"-N {CHAIN}" not in listed.splitlines():
            self._run("-N", CHAIN)
        if f"-A INPUT -j {CHAIN}" not in listed.splitlines():
            self._run("-I", "INPUT", "-j", CHAIN)
        self._chain_ready = True

    def cut(self, pairs: Iterable[tuple[str, str]]) -> list[str]:
        """Drop every packet between each pair of addresses, both ways; the rules, as installed."""
        self._ensure_chain()
        rules = []
        for a, b in pairs:
            rules += [f"-A {CHAIN} -s {a}/32 -d {b}/32 -j DROP", f"-A {CHAIN} -s {b}/32 -d {a}/32 -j DROP"]
        restore = self.iptables + "-restore"  # iptables-restore, iptables-legacy-restore
        self._run("--noflush", stdin="*filter\n" + "\n".join(rules) + "\nCOMMIT\n", tool=restore)
        return rules

    def heal(self) -> None:
        if self._chain_ready or f"-N {CHAIN}" in self._run("-S").splitlines():
            self._run("-F", CHAIN)

    def rules(self) -> list[str]:
        """The DROP rules in force in our chain (the restore check wants none)."""
        listed = self._run("-S")
        return [line for line in listed.splitlines() if line.startswith(f"-A {CHAIN} ")]

    def problems(self) -> list[str]:
        left = self.rules()
        return [f"{len(left)} firewall rule(s) still in force: {'; '.join(left[:2])}"] if left else []
