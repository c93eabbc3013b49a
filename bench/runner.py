"""``bench run``: scenario cells -> Locust runs on prepared backends -> drain, audit, faults -> results.

Each cell (and each repeat) is one headless run of ``locustfiles/queue.py`` in a subprocess: the
load engine is Locust, never a second generator. Around it this module runs the cells in order: the
backend prepared (bench.backend_pool; external: only with --allow-flush), Locust started
(bench.locust_cmd), the cell's fault injected, server INFO sampled every second, and the repeat's
results collected: the queue drained, every task counted (bench.collect). Ctrl-C, SIGTERM or a
crash: results so far (the interrupted cell's too) are written, marked incomplete, and Locust and
the embedded servers are stopped. Every child process is started by bench.children: it gets
PR_SET_PDEATHSIG, so even a SIGKILL of the harness leaves no process behind, and a Ctrl-C or SIGTERM
that arrives while it is forked is raised right after the fork instead of being dropped.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from . import clientlib, faults, network, periodic
from .backend_kinds import ClusterBackend
from .backend_pool import BackendPool, refuse_unsupported
from .backends import default_state_dir
from .collect import DRAIN_NOT_FINISHED, before_drain, collect, combine_cell, load_only
from .drain import probe_queue
from .external import External
from .locust_cmd import cell_load_options, end_locust, launch, locust_command, locust_env, wait_for_start
from .monitor import InfoSampler
from .probes import LoadProbe
from .progress import CellProgress
from .run_summary import summary_header, write_summary
from .scenario import Cell, Scenario

RESTORE_TIMEOUT_S = 60.0  # after a fault: the cluster healthy again (faults.restore)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (results so far written, marked incomplete; Locust and the
    servers stopped), but ``bench`` exits 143 (128 + SIGTERM) instead of 130."""

    exit_code = 143
    reason = "terminated (SIGTERM)"


def interruption_reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"


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
        self.backends = BackendPool(
            server_bin=server_bin, external=external, console=self.console, started=self._record_servers
        )
        self.summary: dict[str, Any] = {}
        self.interrupted: KeyboardInterrupt | None = None  # Ctrl-C or Terminated, once seen
        # The running cell's record from what Locust measured, in summary.json while its restore and drain run
        # (a SIGKILL there keeps the cell, marked provisional); replaced by the full record when the drain ends.
        self.pending: dict[str, Any] | None = None
        self._repeats: list[dict[str, Any]] = []  # the running cell's finished repeats

    # -- whole run ------------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse before anything starts: unknown adapters, what the chosen backend cannot do."""
        refuse_unsupported(self.scenario.cells, self.external)

    def run(self) -> Path:
        self.check()
        self.out.mkdir(parents=True, exist_ok=True)
        source = ("docker" if self.external.docker else "external") if self.external else "embedded"
        self.summary = {
            **summary_header("scenario-run", self.scenario, source),
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
                    self.pending = None
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
            self.backends.close(keep=self.keep)
        return self.out

    def _write_summary(self) -> None:
        cells = self.summary.get("cells", [])
        write_summary(self.out, {**self.summary, "cells": [*cells, self.pending]} if self.pending else self.summary)

    def _write_pending(self, cell: Cell, rep_dir: Path, returncode: int | None) -> None:
        """Before the restore and the drain: the cell as Locust measured it, in summary.json (bench.collect
        before_drain), so a kill from here on keeps it; its audit says undelivered, not lost."""
        pending = combine_cell(cell, [*self._repeats, before_drain(rep_dir, returncode)])
        pending |= {
            "dir": str(rep_dir.parent.relative_to(self.out)),
            "complete": False,
            "incomplete_reason": DRAIN_NOT_FINISHED,
            "provisional": True,
        }
        self.pending = pending
        self._write_summary()

    def _record_servers(self, key: str, addresses: list[str]) -> None:
        self.summary.setdefault("embedded_servers", {})[key] = addresses
        self._write_summary()  # on disk at once: which servers to look for, even after a SIGKILL

    def _warn(self, cell: Cell) -> None:
        policy = cell.params["maxmemory_policy"]
        if policy != "noeviction":
            self.console.print(
                f"[yellow]warning: cell {escape(repr(cell.id))} runs maxmemory-policy {policy}, "
                "which can delete queued tasks[/]"
            )

    # -- one cell -------------------------------------------------------------------------------

    def run_cell(self, index: int, cell: Cell, progress: CellProgress) -> dict[str, Any]:
        params = cell.params
        cell_dir = self.out / "cells" / f"{index:02d}-{cell.slug}"
        repeats: list[dict[str, Any]] = []
        self._repeats = repeats
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
        backend = self.backends.backend_for(params)
        self.backends.prepare(backend, params)
        rep_dir.mkdir(parents=True, exist_ok=True)
        # The cell's network round trip (bench.network), for the load only: the restore and the drain that
        # count the tasks afterwards run on loopback (a drain through 2 ms would take a round trip per ack).
        net = network.start(backend, params, cell.id, self.console)
        try:
            result = self._load_and_collect(index, cell, r, rep_dir, progress, backend, net)
        finally:
            if net is not None:
                net.stop()
        if net is not None:
            result["network"] = net.record()
        return result

    def _load_and_collect(
        self,
        index: int,
        cell: Cell,
        r: int,
        rep_dir: Path,
        progress: CellProgress,
        backend: Any,
        net: network.CellNetwork | None,
    ) -> dict[str, Any]:
        params = cell.params
        queue_name = f"cell{index}"
        target = backend.target
        sampler = InfoSampler(backend.servers) if backend.servers else None  # an external backend lists none
        if sampler:
            sampler.start()
        injector: faults.FaultInjector | periodic.RepeatedFault | None = None
        probe: LoadProbe | None = None
        proc: subprocess.Popen[bytes] | None = None
        label = f"{cell.id}" + (f" (repeat {r + 1}/{params['repeat']})" if params["repeat"] > 1 else "")
        ran_to_end = False
        try:
            opts = cell_load_options(cell, target, queue_name, rep_dir)
            client_path = clientlib.path_for(params["redis_py"], default_state_dir())
            proc = launch(locust_command(params, opts, rep_dir), locust_env(opts, client_path), rep_dir)
            started = wait_for_start(proc, rep_dir)
            probe = LoadProbe(proc.pid, probe_queue(target, params, queue_name))
            probe.start()
            if params["fault"] != "none" and isinstance(backend, ClusterBackend):
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
                if net is not None:
                    net.stop()
        if proc is None:  # interrupted before Locust started: nothing was measured
            raise self.interrupted or KeyboardInterrupt
        # Interrupted on embedded servers: they are stopped next, so no wait for the cluster to heal
        # (a docker or external cluster is still brought back).
        heal_s = 0.0 if self.interrupted is not None and self.external is None else RESTORE_TIMEOUT_S
        try:
            self._write_pending(cell, rep_dir, proc.returncode)
            progress.phase("restore")
            events = periodic.finish(backend, injector, heal_s)
            progress.phase("drain")
            result = collect(
                cell,
                rep_dir,
                target,
                queue_name,
                sampler,
                probe,
                events,
                proc.returncode,
                console=self.console,
                interrupted=self.interrupted is not None,
            )
        except KeyboardInterrupt as exc:  # during the restore or the drain: keep what Locust measured
            self.interrupted = self.interrupted or exc
            if injector is not None:
                injector.cancel()
            result = load_only(rep_dir, proc.returncode)
        progress.phase("done")
        if self.interrupted is not None:
            result["complete"] = False
            result["incomplete_reason"] = interruption_reason(self.interrupted)
        return result
