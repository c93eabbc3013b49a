"""``bench run``: scenario cells -> Locust runs on prepared backends -> drain, audit, faults -> results.

Each cell (and each repeat) is one headless run of ``locustfiles/queue.py`` in a subprocess: the
load engine is Locust, never a second generator. Around it this module prepares the backend
(embedded: started, reconfigured and flushed by the suite; external: only with --allow-flush),
injects the cell's fault, samples server INFO every second, drains the queue afterwards, and
counts every task. Ctrl-C, SIGTERM or a crash: results so far (the interrupted cell's too) are
written, marked incomplete, and Locust and the embedded servers are stopped. Every child process
gets PR_SET_PDEATHSIG, so even a SIGKILL of the harness leaves no process behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markup import escape

from taskqueue import TaskQueueError
from taskqueue.settings import redact_url

from . import adapters, backends, drift, faults, netns, periodic
from .audit import AuditLog, count
from .errors import UsageError
from .monitor import InfoSampler
from .options import LoadOptions
from .probes import LoadProbe
from .progress import CellProgress
from .results import environment_info, read_intervals
from .scenario import Cell, Scenario
from .servers import _die_with_parent, free_port
from .stats import combine_repeats
from .target import Target

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locustfiles" / "queue.py"
STOP_TIMEOUT_S = 5  # Locust lets users finish their current task (a consumer acks what it holds)
LOCUST_STOP_GRACE_S = 30  # after SIGTERM, Locust writes its partial results; then its group is killed
SHORT_SHARE = 0.9  # a cell that measured less than this share of its duration is flagged
RESTORE_TIMEOUT_S = 60.0  # after a fault: the cluster healthy again (faults.restore)
INTERRUPTED_DRAIN_S = 5  # an interrupted cell's drain: enough for its audit, short enough to stop soon

# ``python -m locust``, except that the workers ``--processes`` forks get PR_SET_PDEATHSIG too: the
# kernel clears it on fork, and a worker whose master died keeps running (Locust's master heartbeat
# timeout is 60 s). A child whose parent died before the prctl exits at once.
LOCUST_MAIN = """\
import os, runpy
from bench.servers import _die_with_parent
parent = [0]
def _before_fork():
    parent[0] = os.getpid()
def _in_child():
    _die_with_parent()
    if os.getppid() != parent[0]:
        os._exit(1)
os.register_at_fork(before=_before_fork, after_in_child=_in_child)
runpy.run_module("locust", run_name="__main__", alter_sys=True)
"""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (results so far written, marked incomplete; Locust and the
    servers stopped), but ``bench`` exits 143 (128 + SIGTERM) instead of 130."""

    exit_code = 143
    reason = "terminated (SIGTERM)"


def interruption_reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"


@dataclass
class External:
    """A user's own server(s). Never flushed or reconfigured unless ``allow_flush``."""

    redis_url: str = ""
    cluster_nodes: str = ""
    allow_flush: bool = False
    allow_failover: bool = False  # graceful CLUSTER FAILOVER kinds on an external cluster
    docker: bool = False  # the docker-compose cluster: every fault kind, through the containers
    containers: dict[str, Any] | None = None  # --docker: image, compose file, Compose (docker.describe)

    @property
    def kind(self) -> str:
        return "cluster" if self.cluster_nodes else "standalone"

    @property
    def target(self) -> Target:
        return Target(self.redis_url, self.cluster_nodes)


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        out: Path,
        *,
        server_bin: str | None = None,
        external: External | None = None,
        console: Console | None = None,
        keep: bool = False,
    ) -> None:
        self.scenario, self.out, self.server_bin, self.external = scenario, out, server_bin, external
        self.console = console or Console()
        self.keep = keep  # keep the temporary folder (embedded servers' data and logs) for debugging
        self.state_dir: Path | None = None  # bench-run-*: made with the first embedded backend
        self.embedded: dict[str, backends.Backend] = {}
        self.summary: dict[str, Any] = {}
        self.interrupted: KeyboardInterrupt | None = None  # Ctrl-C or Terminated, once seen

    # -- whole run ------------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse before anything starts: unknown adapters, what the chosen backend cannot do."""
        for spec in {c.params["queue"] for c in self.scenario.cells if c.params["queue"]}:
            adapters.resolve(spec)
        partitioned = netns.wanted(self.scenario.cells)
        if partitioned and (self.external is not None or not netns.inside()):
            named = ", ".join(f"[{c}]" for c in partitioned[:3])
            raise UsageError(
                f"cells {named} inject network partitions: they run on the embedded cluster inside the private "
                "network namespace `bench run` makes for them (bench.netns), not here"
            )
        if self.external is None:
            return
        for cell in self.scenario.cells:
            if cell.params["backend"] != self.external.kind:
                wanted = cell.params["backend"]
                raise UsageError(f"cell [{cell.id}] needs a {wanted} backend, the external one is {self.external.kind}")
            fault = cell.params["fault"]
            if fault != "none" and not self.external.docker:
                if fault not in ("failover", "failover-force"):
                    raise UsageError(
                        f"cell [{cell.id}]: fault {fault!r} needs servers this suite runs (embedded or "
                        "--docker); on your own cluster only failover and failover-force are possible"
                    )
                if not self.external.allow_failover:
                    raise UsageError(f"cell [{cell.id}]: a {fault} on your own cluster needs --allow-failover")
            if not self.external.allow_flush:
                raise UsageError(
                    "bench run flushes and reconfigures the backend before every cell; on your own server that "
                    "needs --allow-flush (it deletes ALL data there)"
                )

    def run(self) -> Path:
        self.check()
        self.out.mkdir(parents=True, exist_ok=True)
        self.summary = {
            "kind": "scenario-run",
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "source": self.scenario.source,
            "complete": False,
            "started_at": datetime.now(UTC).isoformat(),
            "environment": environment_info(),
            "backend_source": ("docker" if self.external.docker else "external") if self.external else "embedded",
            **({"containers": self.external.containers} if self.external and self.external.containers else {}),
            "cells": [],
        }
        self._write_summary()
        cells = self.scenario.cells
        try:
            with CellProgress(self.console, cells) as progress:
                for i, cell in enumerate(cells, start=1):
                    self._warn(cell)
                    result = self.run_cell(i, cell, progress)
                    self.summary["cells"].append(result)
                    self._write_summary()
                    if self.interrupted is not None:  # the interrupted cell is kept (incomplete)
                        raise self.interrupted
            self.summary["complete"] = all(c["complete"] for c in self.summary["cells"])
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (Terminated)
            self.interrupted = exc
            self.summary["incomplete_reason"] = interruption_reason(exc)
            self.console.print(f"[yellow]{interruption_reason(exc)}: writing what was measured so far[/]")
        except Exception as exc:
            self.summary["incomplete_reason"] = f"crashed: {type(exc).__name__}: {exc}"
            raise
        finally:
            self.summary["finished_at"] = datetime.now(UTC).isoformat()
            self._write_summary()
            try:
                for backend in self.embedded.values():
                    backend.stop()
            finally:
                self._remove_state_dir()
        return self.out

    def _remove_state_dir(self) -> None:
        if self.state_dir is None:
            return
        if self.keep:
            self.console.print(f"kept the run's temporary folder (server data and logs): {self.state_dir}")
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _write_summary(self) -> None:
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2, default=str))
        tmp.replace(self.out / "summary.json")

    def _warn(self, cell: Cell) -> None:
        policy = cell.params["maxmemory_policy"]
        if policy != "noeviction":
            self.console.print(
                f"[yellow]warning: cell {escape(repr(cell.id))} runs maxmemory-policy {policy}, "
                "which can delete queued tasks[/]"
            )

    # -- backends -------------------------------------------------------------------------------

    def backend_for(self, params: dict[str, Any]) -> backends.Backend | External:
        if self.external is not None:
            if params["fault"] != "none" and self.external.cluster_nodes:  # faults need the live topology
                from .remote import remote_cluster

                return remote_cluster(self.external.target.nodes(), docker=self.external.docker)
            return self.external
        kind = params["backend"]
        server_bin = params.get("server_bin") or self.server_bin
        key = f"{kind}:{server_bin or ''}"
        if key not in self.embedded:
            span = 6 if kind == "cluster" else 1
            port = free_port(span=span, start=20000 if kind == "cluster" else 21000, bus_offset=10000)
            if self.state_dir is None:
                self.state_dir = Path(tempfile.mkdtemp(prefix="bench-run-"))
            where = (
                f"127.0.0.2…127.0.0.{1 + span}, ports {port}+"
                if kind == "cluster" and netns.inside()
                else f"127.0.0.1:{port}"
            )
            self.console.print(f"starting embedded {kind} ({server_bin or 'default server'}) on {where} …")
            spec = backends.BackendSpec(
                kind=kind,
                port=port,
                server_bin=server_bin,
                state_dir=self.state_dir / f"{kind}-{len(self.embedded)}",
                node_timeout_ms=params["node_timeout"],
                # In the network-fault namespace: one loopback address per node, so rules can cut single links;
                # an old master rejoining as a replica resyncs at once (not after the 5 s diskless-sync delay).
                node_addresses=kind == "cluster" and netns.inside(),
                extra_config={"repl-diskless-sync-delay": "0"} if kind == "cluster" and netns.inside() else {},
            )
            self.embedded[key] = backends.start_backend(spec)
            self.summary.setdefault("embedded_servers", {})[key] = [s.address for s in self.embedded[key].servers]
            self._write_summary()  # on disk at once: which servers to look for, even after a SIGKILL
        return self.embedded[key]

    def prepare(self, backend: backends.Backend | External, params: dict[str, Any]) -> None:
        """Healthy, flushed, and configured as the cell asks (maxmemory 0 = unlimited)."""
        config = {"maxmemory": str(params["maxmemory"]), "maxmemory-policy": params["maxmemory_policy"]}
        if params["backend"] == "cluster":  # protection on the servers' side: too few good replicas, writes refused
            config["min-replicas-to-write"] = str(params["min_replicas_to_write"])
            config["min-replicas-max-lag"] = str(params["min_replicas_max_lag"])
        if isinstance(backend, External):
            _flush_external(backend, config)
            return
        if isinstance(backend, backends.ClusterBackend):
            if self.external is None:  # someone else's cluster keeps its node timeout (recorded as read)
                config["cluster-node-timeout"] = str(params["node_timeout"])
                backend.node_timeout_ms = params["node_timeout"]
            backend.wait_healthy(60)
        backend.configure({"maxmemory": "0"})  # flush needs room
        backend.flush()
        backend.configure(config)
        reset_stats(backend)

    # -- one cell -------------------------------------------------------------------------------

    def run_cell(self, index: int, cell: Cell, progress: CellProgress) -> dict[str, Any]:
        params = cell.params
        cell_dir = self.out / "cells" / f"{index:02d}-{cell.slug}"
        repeats = []
        for r in range(params["repeat"]):
            rep_dir = cell_dir / f"repeat-{r + 1}"
            repeats.append(self.run_repeat(index, cell, r, rep_dir, progress))
            if not repeats[-1]["complete"]:
                break
        result = combine_cell(cell, repeats)
        result["dir"] = str(cell_dir.relative_to(self.out))
        return result

    def run_repeat(self, index: int, cell: Cell, r: int, rep_dir: Path, progress: CellProgress) -> dict[str, Any]:
        params = cell.params
        backend = self.backend_for(params)
        self.prepare(backend, params)
        rep_dir.mkdir(parents=True, exist_ok=True)
        queue_name = f"cell{index}"
        target = backend.target
        sampler = InfoSampler(backend.servers) if not isinstance(backend, External) else None
        if sampler:
            sampler.start()
        injector: faults.FaultInjector | periodic.RepeatedFault | None = None
        probe: LoadProbe | None = None
        proc: subprocess.Popen[bytes] | None = None
        label = f"{cell.id}" + (f" (repeat {r + 1}/{params['repeat']})" if params["repeat"] > 1 else "")
        ran_to_end = False
        try:
            with open(rep_dir / "locust.log", "w") as log:
                opts = cell_load_options(cell, target, queue_name, rep_dir)
                proc = start_locust(locust_command(params, opts, rep_dir), log, env={**os.environ, **opts.as_env()})
            started = _wait_for_start(proc, rep_dir)
            probe = LoadProbe(proc.pid, _probe_queue(target, params, queue_name))
            probe.start()
            if params["fault"] != "none" and isinstance(backend, backends.ClusterBackend):
                injector = periodic.start(backend, params, queue_name, started)
            progress.track(index, label, proc, rep_dir / "locust_stats_history.csv", params["duration"])
            ran_to_end = True
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: this repeat is collected, then the run stops
            self.interrupted = exc
        finally:
            try:
                if proc is not None:  # interrupted or crashed: stopped, Locust writes its partial results
                    end_locust(proc, stop=not ran_to_end)
            finally:
                if sampler:
                    sampler.stop()
                if probe is not None:
                    probe.stop()
        if proc is None:  # interrupted before Locust started: nothing was measured
            raise self.interrupted or KeyboardInterrupt
        # Interrupted on embedded servers: they are stopped next, so no wait for the cluster to heal
        # (a docker or external cluster is still brought back).
        heal_s = 0.0 if self.interrupted is not None and self.external is None else RESTORE_TIMEOUT_S
        try:
            progress.phase("restore")
            events = periodic.finish(backend, injector, heal_s)
            progress.phase("drain")
            result = self.collect(cell, rep_dir, target, queue_name, sampler, probe, events, proc.returncode)
        except KeyboardInterrupt as exc:  # during the restore or the drain: keep what Locust measured
            self.interrupted = self.interrupted or exc
            if injector is not None:
                injector.cancel()
            result = _load_only(rep_dir, proc.returncode)
        progress.phase("done")
        if self.interrupted is not None:
            result["complete"] = False
            result["incomplete_reason"] = interruption_reason(self.interrupted)
        return result

    def _raise_usage_error(self, rep_dir: Path, returncode: int | None) -> None:
        """Locust refused the cell's options (exit 2): the whole run stops with its message."""
        if returncode == 2 and (line := _usage_line(rep_dir)):
            self.summary["incomplete_reason"] = f"cell refused: {line}"
            raise UsageError(line)

    def collect(
        self,
        cell: Cell,
        rep_dir: Path,
        target: Target,
        queue_name: str,
        sampler: InfoSampler | None,
        probe: LoadProbe | None,
        events: list[faults.FaultEvents] | None,
        returncode: int | None,
    ) -> dict[str, Any]:
        params = cell.params
        if self.interrupted is not None:  # stop soon: a short drain, enough to audit what was sent
            params = {**params, "drain_timeout": min(params["drain_timeout"], INTERRUPTED_DRAIN_S)}
        try:
            load = json.loads((rep_dir / "summary.json").read_text())
        except (OSError, ValueError):
            self._raise_usage_error(rep_dir, returncode)
            tail = (
                (rep_dir / "locust.log").read_text(errors="replace")[-600:] if (rep_dir / "locust.log").exists() else ""
            )
            return {"complete": False, "incomplete_reason": f"locust wrote no results (exit {returncode}): {tail}"}
        start = datetime.fromisoformat(load["started_at"]).timestamp()
        self._raise_usage_error(rep_dir, returncode)
        audit_file = rep_dir / "audit-ids.json.gz"
        audit = AuditLog.load(audit_file) if audit_file.exists() else AuditLog()
        drain = drain_queue(target, params, queue_name, audit)
        audit.save(audit_file)
        info_rows = sampler.write(rep_dir / "info.csv", start) if sampler else []
        probe_rows = (
            probe.write(rep_dir / "probes.csv", start, start + float(load.get("elapsed_s") or 0)) if probe else []
        )
        # Still queued is not lost: a drain that timed out gives only an upper bound, named as such.
        counts = count(audit, stage="drained" if drain["complete"] else "drain_timed_out")
        if not drain["complete"]:
            counts["still_queued"] = max(0, drain["left_ready"]) + max(0, drain["left_inflight"])
        result = {
            "complete": bool(load.get("complete")) and returncode == 0 and drain["complete"],
            "incomplete_reason": load.get("incomplete_reason") or (None if drain["complete"] else "drain timed out"),
            "ops": load.get("ops", {}),
            "errors": load.get("errors", {}),
            "effective": load.get("effective", {}),
            "audit": counts,
            "drain": drain,
            "counters": load.get("counters", {}),
            "server": {"peak_used_memory": sampler.peak("used_memory"), **sampler.counters(), "stats_reset": True}
            if sampler
            else {},
        }
        measured = float(load.get("elapsed_s") or 0.0)
        if measured < SHORT_SHARE * params["duration"]:  # Locust's -t clock runs during its start-up too
            result["short"] = {"measured_s": round(measured, 3), "planned_s": params["duration"]}
            self.console.print(
                f"[yellow]warning: cell {escape(repr(cell.id))} measured {measured:.1f} s of its "
                f"{params['duration']:g} s (a slow start-up on a busy host): its rates divide by what ran[/]"
            )
        if load.get("open_loop"):
            result["open_loop"] = load["open_loop"]
            if not load["open_loop"]["rate_reached"]:
                ol = load["open_loop"]
                self.console.print(
                    f"[yellow]warning: cell {escape(repr(cell.id))} offered {ol['rate']:,.0f} tasks/s but made only "
                    f"{100 * ol['coverage']:.1f}% of the planned sends ({ol['achieved_rate']:,.0f}/s): its latency "
                    "percentiles are not the latency at that rate[/]"
                )
        result["drift"] = drift.of_cell(read_intervals(rep_dir), probe_rows, info_rows)
        if events:
            masters = (load.get("effective") or {}).get("queue", {}).get("partition_masters") or {}
            timelines = periodic.timelines(events, start, load, params["fault_partition"], masters)
            result["fault"] = timelines[0]
            if params["fault_every"]:
                result["faults"] = timelines
                result["fault_series"] = periodic.summarize(timelines)
            result["complete"] = result["complete"] and all(t["restore_ok"] for t in timelines)
            if events[0].kind in netns.NETWORK_FAULTS:
                self._explain_loss(cell, rep_dir, audit, events[0], start, result)
        elif params["fault"] != "none" and params["fault_every"]:
            result["fault_series"] = periodic.summarize([])
        return result

    def _explain_loss(
        self,
        cell: Cell,
        rep_dir: Path,
        audit: AuditLog,
        events: faults.FaultEvents,
        start: float,
        result: dict[str, Any],
    ) -> None:
        """Lost tasks next to what the cut-off master acknowledged after the partition began, from
        the clients' own per-partition ack log (bench.partition_loss)."""
        from . import partition_loss
        from .acklog import AckLog

        acked_file = rep_dir / "acked-ids.json.gz"
        if events.injected_at is None or not acked_file.exists():
            return
        fault = result["fault"]
        faulted = [int(p) for p, d in fault["partitions"].items() if d["faulted"]]
        if events.kind == "partition-master" and events.isolated_down_at is not None:
            end, source = events.isolated_down_at, "isolated master's log: cluster_state fail (stopped taking writes)"
        else:
            end, source = events.healed_at or time.time(), "healed"
        loss = partition_loss.explain(
            audit, AckLog.load(acked_file), faulted, (events.injected_at, end), start, window_end_source=source
        )
        loss["drain_complete"] = bool(result["drain"]["complete"])
        fault["loss"] = loss
        fault["before"] = partition_loss.before_fault(rep_dir, fault["partitioned_at_s"])
        self.console.print(f"  {escape(cell.id)}: {escape(partition_loss.headline(loss))}")


def _load_only(rep_dir: Path, returncode: int | None) -> dict[str, Any]:
    """An interrupted repeat's result from Locust's own summary alone (no drain, no audit)."""
    try:
        load = json.loads((rep_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {"complete": False, "incomplete_reason": f"locust wrote no results (exit {returncode})"}
    return {
        "complete": False,
        "ops": load.get("ops", {}),
        "errors": load.get("errors", {}),
        "effective": load.get("effective", {}),
        "audit": {},
        "drain": None,
        "counters": load.get("counters", {}),
        "server": {},
    }


def start_locust(cmd: list[str], log: IO[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Locust in its own session and process group: a terminal's Ctrl-C reaches only the harness,
    which stops Locust itself (:func:`end_locust`). PR_SET_PDEATHSIG: the kernel kills it if the
    harness dies, even by SIGKILL (and its workers, see ``LOCUST_MAIN``)."""
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        preexec_fn=_die_with_parent,
        start_new_session=True,
    )


def end_locust(proc: subprocess.Popen[bytes], *, stop: bool, grace: float = LOCUST_STOP_GRACE_S) -> None:
    """Wait for Locust to exit, first sending SIGTERM when ``stop``, SIGKILL after ``grace`` s; then
    SIGKILL whatever is left of its process group (a ``--processes`` worker outlives a master that
    crashed). SIGTERM, not SIGINT: Locust shuts down in order on it and writes its partial results,
    while a SIGINT is a KeyboardInterrupt in whichever greenlet runs (in a ``--processes`` master,
    often the one merging the workers' reports, which then dies and loses them)."""
    try:
        if stop and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group outlives its leader while members remain
        proc.wait()


def _usage_line(rep_dir: Path) -> str | None:
    try:
        lines = (rep_dir / "locust.log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((ln.split("error: ", 1)[1] for ln in lines if "locust: error: " in ln), None)


def headless_locust(users: int, spawn_rate: float, seconds: float) -> list[str]:
    """The start of every headless Locust run of the suite's locustfile."""
    return [
        sys.executable,
        "-c",
        LOCUST_MAIN,  # python -m locust, whose --processes workers die with it too
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        f"{max(1, round(seconds))}s",
    ]


def cell_load_options(cell: Cell, target: Target, queue_name: str, rep_dir: Path) -> LoadOptions:
    """The cell's load as Locust options (validated), on this target, queue and results folder."""
    return dataclasses.replace(
        cell.load,
        redis_url=target.redis_url or "",
        cluster_nodes=target.cluster_nodes or "",
        queue_name=queue_name,
        audit=True,
        ack_log=cell.harness["fault"] in netns.NETWORK_FAULTS,  # which partition acknowledged which id, when
        results_dir=str(rep_dir),
    ).validated()


def locust_command(params: dict[str, Any], opts: LoadOptions, rep_dir: Path) -> list[str]:
    """The headless Locust command line of a cell; secret options (a password in the URL) are
    not on it: pass ``opts.as_env()`` as the child's environment."""
    users = params["users"]
    cmd = [
        *headless_locust(users, params["spawn_rate"] or users, params["duration"]),
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        "--csv",
        str(rep_dir / "locust"),
        "--csv-full-history",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
        *opts.as_args(),
    ]
    if params["processes"]:
        cmd += ["--processes", str(params["processes"])]
    return cmd


def _probe_queue(target: Target, params: dict[str, Any], queue_name: str) -> adapters.QueueAdapter | None:
    """The queue as the drain will read it, for depth/inflight each second; None if it cannot be
    built (the probe then records memory only)."""
    try:
        return adapters.build(params["queue"] or adapters.DEFAULT, target, _drain_options(params, queue_name))
    except Exception:
        return None


def _wait_for_start(proc: subprocess.Popen[bytes], rep_dir: Path, timeout: float = 60) -> float:
    """Epoch time the load started: Locust creates its CSV history when the test starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (rep_dir / "locust_stats_history.csv").exists():
            return time.time()
        time.sleep(0.05)
    return time.time()


def drain_queue(target: Target, params: dict[str, Any], queue_name: str, audit: AuditLog) -> dict[str, Any]:
    """After the load: consume until the queue is empty (expired leases requeued) or the drain
    timeout passes. Every delivery goes into the audit."""
    started = time.monotonic()
    deadline = started + params["drain_timeout"]
    delivered = errors = 0
    depth = inflight = -1
    queue = adapters.build(params["queue"] or adapters.DEFAULT, target, _drain_options(params, queue_name))
    try:
        while time.monotonic() < deadline:
            try:
                queue.requeue_expired()
                tasks = (
                    queue.dequeue_many(200, timeout=0.2)
                    if hasattr(queue, "dequeue_many")
                    else [t for t in [queue.dequeue(0.2)] if t is not None]
                )
                for task in tasks:
                    audit.deliver(task.id)
                    queue.ack(task)
                delivered += len(tasks)
                if not tasks:
                    depth, inflight = queue.depth(), queue.inflight()
                    if depth == 0 and inflight == 0:
                        break
            except TaskQueueError:
                errors += 1  # e.g. the cluster still settling after a fault
                time.sleep(0.2)
    finally:
        queue.close()
    return {
        "delivered": delivered,
        "seconds": round(time.monotonic() - started, 3),
        "left_ready": depth,
        "left_inflight": inflight,
        "errors": errors,
        "complete": depth == 0 and inflight == 0,
    }


def _drain_options(params: dict[str, Any], queue_name: str) -> LoadOptions:
    """The same queue (name, engine, partitions, lease) as the load used, with a small pool."""
    return LoadOptions(
        queue_name=queue_name,
        engine=params["engine"],
        queue=params["queue"],
        partitions=params["partitions"],
        visibility_timeout=params["visibility_timeout"],
        pool_size=4,
    )


def combine_cell(cell: Cell, repeats: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in repeats if "ops" in r]  # every repeat Locust wrote results for, even if all calls failed
    ops_names = sorted({op for r in done for op in r["ops"]})
    ops = {op: combine_repeats([r["ops"][op] for r in done if op in r["ops"]]) for op in ops_names}
    errors: dict[str, Counter[str]] = {}
    for r in done:
        for op, kinds in r["errors"].items():
            errors.setdefault(op, Counter()).update(kinds)
    audit: Counter[str] = Counter()
    for r in done:
        audit.update(r["audit"])
    if "lost_upper_bound" in audit:  # one repeat's drain timed out: the sum is an upper bound too
        audit["lost_upper_bound"] += audit.pop("lost", 0)
        audit["lost_ambiguous_upper_bound"] += audit.pop("lost_ambiguous", 0)
    open_loops = [r["open_loop"] for r in done if r.get("open_loop")]
    return {
        "id": cell.id,
        "params": _public(cell.params),
        "complete": bool(repeats) and all(r["complete"] for r in repeats) and len(repeats) == cell.params["repeat"],
        "effective": done[0]["effective"] if done else {},
        "ops": ops,
        "errors": {op: dict(kinds) for op, kinds in errors.items()},
        "audit": dict(audit),
        "fault": done[0].get("fault") if done else None,
        # A repeated fault and drift are read per repeat; the first speaks for the cell (each repeat keeps its own).
        **{key: done[0][key] for key in ("faults", "fault_series", "drift") if done and key in done[0]},
        "short": min((r["short"] for r in done if r.get("short")), key=lambda s: s["measured_s"], default=None),
        # Repeats: the one that fell furthest short of the offered rate speaks for the cell.
        "open_loop": min(open_loops, key=lambda o: o["coverage"]) if open_loops else None,
        "unstable": sorted(op for op, s in ops.items() if s.get("unstable")),
        "repeats": repeats,
    }


def reset_stats(backend: backends.Backend) -> None:
    """CONFIG RESETSTAT on every live node, so the cell's server counters are its own."""
    for server in backend.servers:
        if server.is_alive():
            with server.client() as r:
                r.config_resetstat()


def _public(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (redact_url(v) if isinstance(v, str) and "://" in v else v) for k, v in params.items()}


def _flush_external(backend: External, config: dict[str, str]) -> None:
    import redis
    from redis.cluster import RedisCluster

    from taskqueue.settings import parse_nodes

    if backend.cluster_nodes:
        host, port = parse_nodes(backend.cluster_nodes)[0]
        client: Any = RedisCluster(host=host, port=port)
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
        for key, value in config.items():
            client.config_set(key, value, target_nodes=RedisCluster.ALL_NODES)
        client.config_resetstat(target_nodes=RedisCluster.ALL_NODES)
    else:
        client = redis.Redis.from_url(backend.redis_url)
        client.flushall()
        for key, value in config.items():
            client.config_set(key, value)
        client.config_resetstat()
    client.close()
