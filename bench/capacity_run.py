"""``bench capacity``: the open-loop rate search of ``bench/capacity.py`` run for real, per configuration.

Each step is one short headless Locust run (``locustfiles/queue.py`` with ``--rate``), started exactly as
``bench run`` starts a cell (``bench.locust_cmd``), on the configuration's backend, prepared (flushed,
reconfigured, counters reset) by the same ``bench.backend_pool`` before every step. Beside Locust, a sampler
(``bench.step_sampler``) reads the queue depth and the servers', load processes' and host's CPU; over the
measured window (after the warm-up) that gives the depth slope and the CPU in cores, which decide "backlog"
and "harness-bound".

Results (the contract of ``results/README.md``): ``summary.json`` with ``kind: "capacity-run"``, one
``configurations[]`` entry per configuration holding its capacity line and every step as a cell-like
record, and ``cells[]``: each configuration at its capacity (so ``bench report``/``plot``/``compare`` read it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from taskqueue import TaskQueueError

from . import adapters, commandstats, cost_cell
from .backend_pool import BackendPool, refuse_unsupported
from .capacity import PERCENTILE_KEYS, Criteria, Judged, SearchResult, Step, search
from .capacity_ceiling import CeilingOptions, for_configuration
from .capacity_options import SearchOptions, Workers
from .capacity_text import capacity_line, capacity_text, step_line
from .collect import combine_cell, public_params
from .drain import open_queue
from .errors import UsageError
from .external import External
from .load_processes import merge_processes, read_json, split_users, without_processes
from .locust_cmd import cell_load_options, end_locust, launch, locust_command, locust_env, usage_line
from .run_summary import summary_header, write_summary
from .scenario import Cell, Scenario
from .step_sampler import StepSampler, node_clients, window_metrics
from .target import Target

STEP_GRACE_S = 60.0  # beyond the step's own duration: Locust's start, stop and results
STARTUP_ALLOWANCE_S = 1.0  # added to Locust's -t: its clock runs while the test starts up
SHORT_WINDOW = 0.8  # a step measured for less than this share of its seconds is run again
MAX_ATTEMPTS = 3


def step_from_results(rate: float, load: dict[str, Any] | None, window: dict[str, Any]) -> Step:
    """A :class:`Step` from a Locust run's summary.json and the sampler's window."""
    measured_s = (load or {}).get("measured_s")
    extra: dict[str, Any] = {"measured_s": None if measured_s is None else float(measured_s)} | {
        k: window.get(k)
        for k in (
            "depth_slope",
            "depth_start",
            "depth_end",
            "server_cpu",
            "server_ops",
            "generator_cpu",
            "generator_cpu_total",
            "host_cpu",
            "other_cpu",
        )
    }
    if load is None:
        return Step(rate=rate, coverage=0.0, achieved_rate=0.0, complete=False, note="Locust wrote no results", **extra)
    ops = load.get("ops") or {}
    op = "enqueue" if "enqueue" in ops else "enqueue_many"
    corrected = {k: (ops.get(op) or {}).get(k) for k in PERCENTILE_KEYS.values()}
    service = {k: (ops.get(f"{op}_service") or {}).get(k) for k in PERCENTILE_KEYS.values()}
    operations = sum(int((ops.get(o) or {}).get("count") or 0) for o in (op, "dequeue", "ack"))
    errors = sum(sum(kinds.values()) for kinds in (load.get("errors") or {}).values())
    ol = load.get("open_loop") or {}
    return Step(
        rate=rate,
        planned=int(ol.get("planned") or 0),
        issued=int(ol.get("issued") or 0),
        achieved_rate=ol.get("achieved_rate"),
        coverage=float(ol.get("coverage") or 0.0),
        corrected=corrected,
        service=service,
        operations=operations,
        errors=errors,
        complete=bool(load.get("complete")),
        note="" if load.get("complete") else str(load.get("incomplete_reason") or "incomplete"),
        **extra,
    )


# -- the run ------------------------------------------------------------------------------------------


class CapacityRun:
    def __init__(
        self,
        scenario: Scenario,
        out: Path,
        criteria: Criteria,
        options: SearchOptions,
        *,
        server_bin: str | None = None,
        external: External | None = None,
        workers: Workers | None = None,
        console: Console | None = None,
        ceiling: CeilingOptions | None = None,
    ) -> None:
        self.scenario, self.out, self.criteria, self.options = scenario, out, criteria, options.check()
        self.ceiling = ceiling.check() if ceiling else None  # None: no server-side ceiling (bench.capacity_ceiling)
        self.external, self.workers = external, workers
        self.console = console or Console()
        for cell in scenario.cells:
            if cell.params["fault"] != "none":
                raise UsageError(
                    f"cell [{cell.id}]: bench capacity measures without faults (fault = {cell.params['fault']!r})"
                )
        # Started, prepared and stopped as bench run's are; their servers recorded in this summary at once.
        self.backends = BackendPool(
            server_bin=server_bin, external=external, console=self.console, started=self._record_servers
        )
        self.summary: dict[str, Any] = {}
        self.results: list[SearchResult] = []

    def run(self) -> dict[str, Any]:
        refuse_unsupported(self.scenario.cells, self.external)
        self.out.mkdir(parents=True, exist_ok=True)
        o = self.options
        self.summary = {
            **summary_header("capacity-run", self.scenario, "external" if self.external else "embedded"),
            "criteria": self.criteria.as_dict(),
            "search": {
                "start_rate": o.start_rate,
                "factor": o.factor,
                "resolution": o.resolution,
                "max_rate": o.max_rate,
                "min_rate": o.min_rate or o.start_rate / 16,
                "step_s": o.step_s,
                "warmup_s": o.warmup_s,
                "confirm": o.confirm,
                "max_steps": o.max_steps,
                "workers": dataclasses.asdict(self.workers) if self.workers else None,
            },
            "configurations": [],
            "cells": [],
        }
        self._write()
        try:
            for index, cell in enumerate(self.scenario.cells, start=1):
                self.run_configuration(index, cell)
            self.summary["complete"] = True
        except KeyboardInterrupt as exc:
            self.summary["incomplete_reason"] = getattr(exc, "reason", "interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            self.summary["incomplete_reason"] = f"crashed: {type(exc).__name__}: {exc}"
            raise
        finally:
            self.summary["finished_at"] = datetime.now(UTC).isoformat()
            self._write()
            self.backends.close()
        return self.summary

    def _write(self) -> None:
        write_summary(self.out, self.summary)

    def _record_servers(self, key: str, addresses: list[str]) -> None:
        self.summary.setdefault("embedded_servers", {})[key] = addresses
        self._write()  # on disk at once: which servers to look for, even after a SIGKILL

    def run_configuration(self, index: int, cell: Cell) -> None:
        slug = f"{index:02d}-{cell.slug}"
        config: dict[str, Any] = {
            "id": cell.id,
            "dir": f"cells/{slug}",
            "params": public_params(_config_params(cell.params)),
            "capacity": None,
            "steps": [],
        }
        self.summary["configurations"].append(config)
        self.console.print(f"\n[bold]configuration {index}/{len(self.scenario.cells)}: {escape(cell.id)}[/]")

        def measure(rate: float) -> Step:
            step_no = len(config["steps"]) + 1
            step_dir = self.out / config["dir"] / f"step-{step_no:02d}-{rate:g}per-s"
            step, record = self.run_step(index, cell, rate, step_dir)
            config["steps"].append(record)
            return step

        def on_step(judged: Judged) -> None:
            record = config["steps"][-1]
            record["step"] = {
                "index": judged.index,
                "phase": judged.phase,
                "rate": judged.rate,
                "measured": dataclasses.asdict(judged.step),
                "verdict": dataclasses.asdict(judged.verdict),
            }
            self._write()
            self.console.print(step_line(judged))

        o = self.options
        result = search(
            measure,
            self.criteria,
            start=o.start_rate,
            factor=o.factor,
            resolution=o.resolution,
            max_rate=o.max_rate,
            min_rate=o.min_rate or o.start_rate / 16,
            max_steps=o.max_steps,
            confirm=o.confirm,
            on_step=on_step,
        )
        self.results.append(result)
        config["capacity"] = capacity_line(result, self.criteria)
        shown = result.capacity or (min(result.steps, key=lambda s: s.rate) if result.steps else None)
        if shown is not None:
            cell_record = dict(config["steps"][shown.index - 1])
            cell_record.update(id=cell.id, capacity=config["capacity"])
            self.summary["cells"].append(cell_record)
        self._write()
        self.console.print(capacity_text(cell.id, config["capacity"], self.criteria))
        if self.ceiling is not None:
            at = config["steps"][shown.index - 1] if shown is not None else None
            args = (cell.params, config, at, self.ceiling, self.console, cell.id)
            config["ceiling"] = for_configuration(self.backends, *args)
            self._write()

    def run_step(self, index: int, cell: Cell, rate: float, step_dir: Path) -> tuple[Step, dict[str, Any]]:
        """One step: a Locust run of warm-up + step seconds at ``rate``. Locust's ``-t`` clock starts before
        the test's own start-up (connecting, reading the config back), which on a busy host can eat seconds
        of a short step: a run measured for less than 80 % of the step is moved aside and run again longer."""
        o = self.options
        allowance = STARTUP_ALLOWANCE_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            step_cell = cell.updated(rate=rate, duration=o.warmup_s + o.step_s + allowance, warmup=o.warmup_s, repeat=1)
            rep_dir = step_dir / "repeat-1"
            load, returncode, samples = self._locust(index, step_cell, rep_dir)
            measured = float((load or {}).get("measured_s") or 0.0)
            if load is None or measured >= SHORT_WINDOW * o.step_s or attempt == MAX_ATTEMPTS:
                break
            rep_dir.rename(step_dir / f"short-{attempt}")  # kept: what was measured, and why it was redone
            self.console.print(
                f"  [yellow]step at {rate:,.0f}/s measured only {measured:.1f} s of {o.step_s:g} s (slow Locust "
                "start-up on a busy host): running it again, longer[/]"
            )
            allowance += o.step_s - measured + 1
        # The step's server counters (reset when it was prepared), before the next step's prepare resets them.
        servers = self.backends.backend_for(step_cell.params).servers
        stats = commandstats.read(servers) if servers else None
        window: dict[str, Any] = {}
        if load is not None:
            started = datetime.fromisoformat(load["started_at"]).timestamp()
            t0 = math.ceil(started + o.warmup_s) if o.warmup_s > 0 else started
            window = window_metrics(samples, t0, started + float(load.get("elapsed_s") or 0.0))
        step = step_from_results(rate, load, window)
        step.attempts = attempt
        repeat = {
            "complete": bool(load and load.get("complete")) and returncode == 0,
            "incomplete_reason": None if load else f"locust wrote no results (exit {returncode})",
            "ops": (load or {}).get("ops", {}),
            "errors": (load or {}).get("errors", {}),
            "effective": (load or {}).get("effective", {}),
            "audit": {},
            "drain": None,
            "counters": (load or {}).get("counters", {}),
            "server": {},  # the step's server CPU and commands/s are in its "step" block (sampler window)
            "open_loop": (load or {}).get("open_loop"),
        }
        if load is None:
            del repeat["ops"]  # combine_cell counts only repeats that have results
        record = combine_cell(step_cell.updated(f"{cell.id} @ {rate:,.0f}/s"), [repeat])
        record["params"] = public_params(record["params"])
        record["dir"] = str(step_dir.relative_to(self.out))
        record["window"] = window
        cores = None if self.workers else window.get("generator_cpu_total")  # workers elsewhere: CPU unknown
        folders = sorted(rep_dir.glob("process-*")) or [rep_dir]
        record["cost"] = cost_cell.repeat_cost(stats, folders, load or {}, step_cell.params, client_cores=cores)
        return step, record

    def _locust(
        self, index: int, cell: Cell, rep_dir: Path
    ) -> tuple[dict[str, Any] | None, int | None, list[dict[str, Any]]]:
        """Prepare the backend, run Locust into ``rep_dir`` while sampling; its summary.json and the samples.

        ``processes`` N >= 2 runs N independent Locust processes (``rep_dir/process-K``), each with its share
        of the users (producers and consumers) and of the rate, merged into ``rep_dir``. Not Locust's own
        ``--processes``: its dispatcher puts all of one user class on each of two workers, and every worker
        plans rate / N sends, so one process would offer half the rate and the other plan sends it has no
        producer for (coverage 50 %, whatever the queue does)."""
        params = cell.params
        backend = self.backends.backend_for(params)
        self.backends.prepare(backend, params)
        rep_dir.mkdir(parents=True, exist_ok=True)
        queue_name = f"cap{index}"
        n = params["processes"] if self.workers is None and params["processes"] >= 2 else 1
        runs = []  # (command, env, results folder)
        for k, share in enumerate(split_users(params["users"], n), start=1):
            own = cell.updated(users=share, rate=params["rate"] / n, processes=0) if n > 1 else cell
            out = rep_dir / f"process-{k}" if n > 1 else rep_dir
            out.mkdir(parents=True, exist_ok=True)
            # No audit: nothing is drained between steps (the next step's prepare flushes), and recording
            # every id would cost the load generator CPU that belongs to the load.
            opts = dataclasses.replace(cell_load_options(own, backend.target, queue_name, out), audit=False)
            cmd = locust_command(own.params, opts, out)
            if self.workers is not None:
                cmd = without_processes(cmd) + self.workers.args()
            runs.append((cmd, locust_env(opts), out))
        nodes = node_clients(backend)
        depth_queue = _depth_queue(params, backend.target, queue_name)
        procs: list[subprocess.Popen[bytes]] = []
        sampler = None
        try:
            for cmd, env, out in runs:
                procs.append(launch(cmd, env, out))
            sampler = StepSampler(nodes, depth_queue, [p.pid for p in procs])
            sampler.start()
            grace = params["duration"] + STEP_GRACE_S + (self.workers.max_wait_s if self.workers else 0)
            for proc in procs:
                end_locust(proc, stop=False, grace=grace)
        except KeyboardInterrupt:
            for proc in procs:
                end_locust(proc, stop=True)
            raise
        finally:
            if sampler is not None:
                sampler.stop()
            for client in nodes.values():
                client.close()
            if depth_queue is not None:
                depth_queue.close()
        samples = sampler.samples if sampler is not None else []
        # the raw samples beside Locust's results: every derived figure can be checked
        (rep_dir / "capacity_samples.json").write_text(json.dumps(samples, default=str))
        returncode = max((p.returncode or 0 for p in procs), default=0)
        for _, _, out in runs:
            if not (out / "summary.json").exists() and returncode == 2 and (line := usage_line(out)):
                raise UsageError(line)
        if n > 1:
            merged = merge_processes([out for _, _, out in runs], params["rate"])
            if merged is not None:
                (rep_dir / "summary.json").write_text(json.dumps(merged, indent=2, default=str))
        return read_json(rep_dir / "summary.json"), returncode, samples


def _config_params(params: dict[str, Any]) -> dict[str, Any]:
    """A configuration's own parameters: what the search sets per step left out."""
    return {k: v for k, v in params.items() if k not in ("rate", "duration", "warmup", "repeat", "fault_at")}


def _depth_queue(params: dict[str, Any], target: Target, queue_name: str) -> adapters.QueueAdapter | None:
    """The step's queue (same name, engine, partitions) with a small pool, to read its depth."""
    try:
        return open_queue(target, params, queue_name, pool_size=2)
    except TaskQueueError:
        return None
