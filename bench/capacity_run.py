"""``bench capacity``: the open-loop rate search of ``bench/capacity.py`` run for real, per configuration.

Each step is one short headless Locust run (``locustfiles/queue.py`` with ``--rate``), started exactly as
``bench run`` starts a cell (``runner.cell_load_options`` / ``locust_command`` / ``start_locust``), on the
configuration's backend, prepared (flushed, reconfigured, counters reset) by ``Runner.prepare`` before every
step. Beside Locust, a sampler reads twice a second: the queue depth (the adapter's ``depth()``), every server
node's CPU time and command count (``INFO cpu`` / ``stats``), the CPU time of the Locust processes and of
the host. Over the measured window (after the warm-up) that gives the depth slope, the busiest server node's
and load process's CPU in cores, which decide "backlog" and "harness-bound".

Results (the contract of ``results/README.md``): ``summary.json`` with ``kind: "capacity-run"``, one
``configurations[]`` entry per configuration holding its capacity line and every step as a cell-like
record, and ``cells[]``: each configuration at its capacity (so ``bench report``/``plot``/``compare`` read it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis
from rich.console import Console
from rich.markup import escape

from taskqueue import TaskQueueError
from taskqueue.settings import parse_nodes, redact_url

from . import adapters, backends
from .capacity import PERCENTILE_KEYS, Criteria, Judged, SearchResult, Step, format_latency, search
from .errors import UsageError
from .metrics import decode
from .options import LoadOptions
from .results import environment_info
from .runner import External, Runner, cell_load_options, combine_cell, end_locust, locust_command, start_locust
from .scenario import Cell, Scenario
from .schedule import merge_coverage
from .stats import summarize
from .target import Target
from .topology import parse_cluster_nodes

SAMPLE_INTERVAL_S = 0.5
STEP_GRACE_S = 60.0  # beyond the step's own duration: Locust's start, stop and results
STARTUP_ALLOWANCE_S = 1.0  # added to Locust's -t: its clock runs while the test starts up
SHORT_WINDOW = 0.8  # a step measured for less than this share of its seconds is run again
MAX_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    start_rate: float = 500.0
    factor: float = 2.0
    resolution: float = 0.05
    max_rate: float = 1_000_000.0
    min_rate: float = 0.0  # 0: start_rate / 16 (four halvings when the first step already fails)
    step_s: float = 10.0
    warmup_s: float = 2.0
    confirm: bool = True
    max_steps: int = 30

    def check(self) -> SearchOptions:
        problems = []
        if not self.start_rate > 0:
            problems.append(f"--start-rate {self.start_rate}: must be > 0")
        if not self.factor > 1:
            problems.append(f"--factor {self.factor}: must be > 1")
        if not 0 < self.resolution < 1:
            problems.append(f"--resolution {self.resolution}: use a share between 0 and 1, e.g. 0.05 for 5 %")
        if not 0 <= self.min_rate <= self.start_rate:
            problems.append(f"--min-rate {self.min_rate}: use 0 (start rate / 16) .. --start-rate")
        if not self.max_rate >= self.start_rate:
            problems.append(f"--max-rate {self.max_rate}: must be >= --start-rate {self.start_rate}")
        if not (self.step_s >= 1 and float(self.step_s).is_integer()):
            problems.append(f"--step-duration {self.step_s}: whole seconds >= 1")
        if not (self.warmup_s >= 0 and float(self.warmup_s).is_integer()):
            problems.append(f"--warmup {self.warmup_s}: whole seconds >= 0")
        if self.max_steps < 2:
            problems.append(f"--max-steps {self.max_steps}: must be >= 2")
        if problems:
            raise UsageError("; ".join(problems))
        return self


@dataclasses.dataclass(frozen=True)
class Workers:
    """Locust workers started elsewhere (``locust --worker --master-host …``): every step's Locust is then a
    master that waits for ``expect`` of them, instead of forking ``--processes`` itself."""

    expect: int
    bind_host: str = "*"
    bind_port: int = 5557
    max_wait_s: int = 120

    def args(self) -> list[str]:
        return [
            "--master",
            "--expect-workers",
            str(self.expect),
            "--master-bind-host",
            self.bind_host,
            "--master-bind-port",
            str(self.bind_port),
            "--expect-workers-max-wait",
            str(self.max_wait_s),
        ]


# -- sampling during a step -----------------------------------------------------------------------------


class StepSampler(threading.Thread):
    """Every ``interval`` s: queue depth, per-node CPU seconds and commands, the load processes' CPU
    seconds (per pid), the host's busy/total CPU seconds."""

    def __init__(
        self, nodes: dict[str, redis.Redis], queue: Any, pids: list[int], interval: float = SAMPLE_INTERVAL_S
    ) -> None:
        super().__init__(name="capacity-sampler", daemon=True)
        self.nodes, self.queue, self.pids, self.interval = nodes, queue, pids, interval
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(self.sample())
            self._halt.wait(self.interval)

    def sample(self) -> dict[str, Any]:
        now = time.time()
        depth: int | None = None
        if self.queue is not None:
            try:
                depth = int(self.queue.depth())
            except (TaskQueueError, redis.RedisError):
                depth = None
        cpu, cmds = {}, {}
        for address, client in self.nodes.items():
            try:
                info = client.info("cpu", "stats")
            except redis.RedisError:
                continue
            cpu[address] = float(info.get("used_cpu_sys", 0)) + float(info.get("used_cpu_user", 0))
            cmds[address] = int(info.get("total_commands_processed", 0))
        generator: dict[int, float] = {}
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        times = proc.cpu_times()
                        generator[proc.pid] = times.user + times.system
                    except psutil.Error:
                        continue
            except psutil.Error:
                continue
        host = psutil.cpu_times()
        idle = host.idle + getattr(host, "iowait", 0.0)
        total = sum(host)
        return {"t": now, "depth": depth, "cpu": cpu, "cmds": cmds, "gen": generator, "host": (total - idle, total)}

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over t (per second); None for fewer than two distinct times."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / var


def _rate(first: dict[Any, float], last: dict[Any, float], seconds: float) -> dict[Any, float]:
    return {k: max(0.0, (last[k] - first[k]) / seconds) for k in last if k in first}


def window_metrics(samples: list[dict[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    """Depth slope and CPU over the samples taken within [t0, t1] (the measured window)."""
    inside = [s for s in samples if t0 <= s["t"] <= t1]
    out: dict[str, Any] = {
        "depth_slope": None,
        "depth_start": None,
        "depth_end": None,
        "server_cpu": None,
        "server_ops": None,
        "generator_cpu": None,
        "generator_cpu_total": None,
        "host_cpu": None,
        "other_cpu": None,
        "samples": len(inside),
    }
    depths = [(s["t"], s["depth"]) for s in inside if s["depth"] is not None]
    if depths:
        out["depth_start"], out["depth_end"] = depths[0][1], depths[-1][1]
        d = slope([(t, float(v)) for t, v in depths])
        out["depth_slope"] = None if d is None else round(d, 2)
    if len(inside) < 2:
        return out
    first, last = inside[0], inside[-1]
    seconds = last["t"] - first["t"]
    if seconds <= 0:
        return out
    cpu = _rate(first["cpu"], last["cpu"], seconds)
    cmds = _rate(first["cmds"], last["cmds"], seconds)
    gen = _rate(first["gen"], last["gen"], seconds)
    out["server_cpu"] = round(max(cpu.values()), 3) if cpu else None
    out["server_ops"] = round(max(cmds.values()), 1) if cmds else None
    out["generator_cpu"] = round(max(gen.values()), 3) if gen else None
    out["generator_cpu_total"] = round(sum(gen.values()), 3) if gen else None
    busy, total = last["host"][0] - first["host"][0], last["host"][1] - first["host"][1]
    out["host_cpu"] = round(busy / total, 3) if total > 0 else None
    if out["host_cpu"] is not None:  # what the rest of the host took: a shared machine's noise, named
        ours = sum(cpu.values()) + sum(gen.values())
        out["other_cpu"] = round(max(0.0, out["host_cpu"] * (psutil.cpu_count() or 1) - ours), 3)
    return out


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
    ) -> None:
        self.scenario, self.out, self.criteria, self.options = scenario, out, criteria, options.check()
        self.external, self.workers = external, workers
        self.console = console or Console()
        for cell in scenario.cells:
            if cell.params["fault"] != "none":
                raise UsageError(
                    f"cell [{cell.id}]: bench capacity measures without faults (fault = {cell.params['fault']!r})"
                )
        # The runner starts, prepares and stops the backends; it writes into this same summary dict.
        self.runner = Runner(scenario, out, server_bin=server_bin, external=external, console=self.console)
        self.summary: dict[str, Any] = {}
        self.results: list[SearchResult] = []

    def run(self) -> dict[str, Any]:
        self.runner.check()
        self.out.mkdir(parents=True, exist_ok=True)
        o = self.options
        self.summary = self.runner.summary = {
            "kind": "capacity-run",
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "source": self.scenario.source,
            "complete": False,
            "started_at": datetime.now(UTC).isoformat(),
            "environment": environment_info(),
            "backend_source": "external" if self.external else "embedded",
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
            try:
                for backend in self.runner.embedded.values():
                    backend.stop()
            finally:
                state_dir = getattr(self.runner, "state_dir", None)
                if state_dir is not None:
                    shutil.rmtree(state_dir, ignore_errors=True)
        return self.summary

    def _write(self) -> None:
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2, default=str))
        tmp.replace(self.out / "summary.json")

    def run_configuration(self, index: int, cell: Cell) -> None:
        slug = f"{index:02d}-{cell.slug}"
        config: dict[str, Any] = {
            "id": cell.id,
            "dir": f"cells/{slug}",
            "params": _public(_config_params(cell.params)),
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
        record["params"] = _public(record["params"])
        record["dir"] = str(step_dir.relative_to(self.out))
        record["window"] = window
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
        backend = self.runner.backend_for(params)
        self.runner.prepare(backend, params)
        rep_dir.mkdir(parents=True, exist_ok=True)
        queue_name = f"cap{index}"
        n = params["processes"] if self.workers is None and params["processes"] >= 2 else 1
        runs = []  # (command, env, results folder)
        for k, share in enumerate(_split(params["users"], n), start=1):
            own = cell.updated(users=share, rate=params["rate"] / n, processes=0) if n > 1 else cell
            out = rep_dir / f"process-{k}" if n > 1 else rep_dir
            out.mkdir(parents=True, exist_ok=True)
            # No audit: nothing is drained between steps (the next step's prepare flushes), and recording
            # every id would cost the load generator CPU that belongs to the load.
            opts = dataclasses.replace(cell_load_options(own, backend.target, queue_name, out), audit=False)
            cmd = locust_command(own.params, opts, out)
            if self.workers is not None:
                cmd = _without_processes(cmd) + self.workers.args()
            runs.append((cmd, {**os.environ, **opts.as_env()}, out))
        nodes = _node_clients(backend)
        depth_queue = _depth_queue(params, backend.target, queue_name)
        procs: list[subprocess.Popen[bytes]] = []
        sampler = None
        try:
            for cmd, env, out in runs:
                with open(out / "locust.log", "w") as log:
                    procs.append(start_locust(cmd, log, env=env))
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
            if not (out / "summary.json").exists() and returncode == 2 and (line := _usage_line(out)):
                raise UsageError(line)
        if n > 1:
            merged = merge_processes([out for _, _, out in runs], params["rate"])
            if merged is not None:
                (rep_dir / "summary.json").write_text(json.dumps(merged, indent=2, default=str))
        return _read_json(rep_dir / "summary.json"), returncode, samples


def _split(users: int, n: int) -> list[int]:
    """``users`` over ``n`` processes, as evenly as possible (each keeps producers and consumers)."""
    return [users // n + (1 if k < users % n else 0) for k in range(n)]


def merge_processes(dirs: list[Path], rate: float) -> dict[str, Any] | None:
    """One summary.json (and histograms.json beside it, in the parent folder) from the Locust runs of
    several independent load processes: percentiles from the merged HDR histograms, ops/s and counts
    summed, errors and counters added up, the open loop's planned/issued added up."""
    loads = [(d, _read_json(d / "summary.json")) for d in dirs]
    present = [(d, load) for d, load in loads if load is not None]
    if not present:
        return None
    hists: dict[str, Any] = {}
    for d, _ in present:
        encoded = (_read_json(d / "histograms.json") or {}).get("histograms") or {}
        for op, text in encoded.items():
            if op in hists:
                hists[op].decode_and_add(text)
            else:
                hists[op] = decode(text)
    measured = min(float(load.get("measured_s") or 0.0) for _, load in present)
    ops = {}
    for op, hist in sorted(hists.items()):
        ops[op] = summarize(hist, measured)
        ops[op]["ops_per_s"] = round(
            sum((load.get("ops") or {}).get(op, {}).get("ops_per_s") or 0 for _, load in present), 1
        )
    errors: dict[str, dict[str, int]] = {}
    counters: dict[str, int] = {}
    for _, load in present:
        for op, kinds in (load.get("errors") or {}).items():
            for kind, count in kinds.items():
                errors.setdefault(op, {})[kind] = errors.get(op, {}).get(kind, 0) + count
        for key, value in (load.get("counters") or {}).items():
            counters[key] = counters.get(key, 0) + int(value or 0)
    elapsed = min(float(load.get("elapsed_s") or 0.0) for _, load in present)
    parts = [
        {
            "planned": (load.get("open_loop") or {}).get("planned"),
            "issued": (load.get("open_loop") or {}).get("issued"),
            "oldest_delay_s": (load.get("open_loop") or {}).get("backlog_oldest_delay_s"),
        }
        for _, load in present
    ]
    first = present[0][1]
    (dirs[0].parent / "histograms.json").write_text(
        json.dumps({"unit": "us", "histograms": {op: h.encode().decode() for op, h in hists.items()}})
    )
    missing = [d.name for d, load in loads if load is None]
    complete = not missing and all(load.get("complete") for _, load in present)
    return {
        **first,
        "complete": complete,
        "incomplete_reason": None if complete else f"load processes without complete results: {missing or 'some'}",
        "started_at": min(load["started_at"] for _, load in present),
        "elapsed_s": elapsed,
        "measured_s": measured,
        "ops": ops,
        "errors": errors,
        "counters": counters,
        "open_loop": merge_coverage(parts, rate, elapsed),
        "load_processes": len(dirs),
        "process_dirs": [d.name for d in dirs],
    }


def _config_params(params: dict[str, Any]) -> dict[str, Any]:
    """A configuration's own parameters: what the search sets per step left out."""
    return {k: v for k, v in params.items() if k not in ("rate", "duration", "warmup", "repeat", "fault_at")}


def _public(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (redact_url(v) if isinstance(v, str) and "://" in v else v) for k, v in params.items()}


def _without_processes(cmd: list[str]) -> list[str]:
    out, skip = [], False
    for arg in cmd:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        out.append(arg)
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _usage_line(rep_dir: Path) -> str | None:
    try:
        lines = (rep_dir / "locust.log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((ln.split("error: ", 1)[1] for ln in lines if "locust: error: " in ln), None)


def _depth_queue(params: dict[str, Any], target: Target, queue_name: str) -> adapters.QueueAdapter | None:
    """The step's queue (same name, engine, partitions) with a small pool, to read its depth."""
    opts = LoadOptions(
        queue_name=queue_name,
        engine=params["engine"],
        queue=params["queue"],
        partitions=params["partitions"],
        visibility_timeout=params["visibility_timeout"],
        pool_size=2,
    )
    try:
        return adapters.build(params["queue"] or adapters.DEFAULT, target, opts)
    except TaskQueueError:
        return None


def _node_clients(backend: backends.Backend | External) -> dict[str, redis.Redis]:
    """A client per server node (replicas included): INFO cpu/stats only, read-only."""
    if not isinstance(backend, External):
        return {s.address: s.client(1.0) for s in backend.servers if s.is_alive()}
    if backend.redis_url:
        client = redis.Redis.from_url(backend.redis_url, socket_timeout=1.0)
        kwargs = client.connection_pool.connection_kwargs
        return {f"{kwargs.get('host')}:{kwargs.get('port')}": client}
    clients: dict[str, redis.Redis] = {}
    for host, port in parse_nodes(backend.cluster_nodes):
        try:
            with redis.Redis(host=host, port=port, socket_timeout=1.0) as seed:
                known = parse_cluster_nodes(backends.raw_text(seed, "CLUSTER NODES"))
        except redis.RedisError:
            continue
        for node in known:
            if "noaddr" not in node.flags:
                h, _, p = node.address.rpartition(":")
                clients[node.address] = redis.Redis(host=h, port=int(p), socket_timeout=1.0)
        break
    return clients


# -- what is printed and stored --------------------------------------------------------------------------


def _measured_summary(judged: Judged) -> dict[str, Any]:
    s = judged.step
    return {
        "step": judged.index,
        "rate": s.rate,
        "achieved_rate": s.achieved_rate,
        "coverage": s.coverage,
        "corrected": s.corrected,
        "service": s.service,
        "depth_slope": s.depth_slope,
        "error_rate": s.error_rate,
        "server_cpu": s.server_cpu,
        "generator_cpu": s.generator_cpu,
        "failed": judged.verdict.failed,
        "reasons": judged.verdict.reasons,
        "harness_bound": judged.verdict.harness_bound,
    }


def capacity_line(result: SearchResult, criteria: Criteria) -> dict[str, Any]:
    """The configuration's answer: highest passing rate, what limited it, the next step up that failed."""
    cap, nxt = result.capacity, result.next_fail
    return {
        "rate": cap.rate if cap else None,
        "achieved_rate": cap.step.achieved_rate if cap else None,
        "limit": result.limit,
        "harness_bound": result.limit == "harness-bound",
        "lower_bound": result.lower_bound,
        "confirmed": result.confirmed,
        "converged": result.converged,
        "slo": ", ".join(map(str, criteria.slos)),
        "steps": len(result.steps),
        "at_capacity": _measured_summary(cap) if cap else None,
        "next_fail": _measured_summary(nxt) if nxt else None,
    }


def _ms(value: float | None) -> str:
    return "–" if value is None else format_latency(value)


def _cores(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def step_line(judged: Judged) -> str:
    s, v = judged.step, judged.verdict
    key = "p99_us"
    bits = [
        f"  step {judged.index:>2} {judged.phase:<7} {s.rate:>9,.0f}/s",
        f"achieved {s.achieved_rate or 0:>9,.0f}/s",
        f"p99 {_ms(s.corrected.get(key)):>9} (service {_ms(s.service.get(key))})",
        f"depth {'–' if s.depth_slope is None else f'{s.depth_slope:+,.0f}/s'}",
        f"errors {s.errors:,}",
        f"server {_cores(s.server_cpu)} / load {_cores(s.generator_cpu)} / others {_cores(s.other_cpu)} cores",
    ]
    verdict = "[green]pass[/]" if v.passed else f"[red]FAIL {', '.join(v.failed)}[/]"
    if v.harness_bound:
        verdict += " [yellow](harness-bound)[/]"
    return " · ".join(bits) + " → " + verdict


def capacity_text(config_id: str, line: dict[str, Any], criteria: Criteria) -> str:
    slo = ", ".join(map(str, criteria.slos))
    if line["rate"] is None:
        lowest = line.get("next_fail") or {}
        text = f"[bold]capacity[/] {escape(f'[{config_id}]')}: no rate passed at {slo}, down to "
        text += f"{lowest.get('rate') or 0:,.0f}/s; limit: [bold]{line['limit']}[/]"
        return text + ("; " + escape("; ".join(lowest["reasons"])) if lowest.get("reasons") else "")
    prefix = "≥ " if line["lower_bound"] else ""
    text = f"[bold]capacity[/] {escape(f'[{config_id}]')}: {prefix}{line['rate']:,.0f} tasks/s at {slo}"
    text += f"; limit: [bold]{line['limit']}[/]"
    nxt = line.get("next_fail")
    if nxt:
        text += f"; next step up {nxt['rate']:,.0f}/s failed: " + escape("; ".join(nxt["reasons"]))
    if not line["confirmed"]:
        text += " (not confirmed by a re-run)"
    return text


# -- the [capacity] table of a scenario file ---------------------------------------------------------------

SETTINGS = {
    "slo": (str, list),
    "start_rate": (int, float),
    "max_rate": (int, float),
    "min_rate": (int, float),
    "factor": (int, float),
    "resolution": (int, float),
    "step_duration": (int, float),
    "warmup": (int, float),
    "max_steps": (int,),
    "max_error_rate": (int, float),
    "max_backlog_growth": (int, float),
}


def scenario_settings(name_or_file: str) -> dict[str, Any]:
    """A scenario's ``[capacity]`` table (SLO and search settings; the command line overrides them)."""
    import tomllib

    from . import scenario

    path = scenario.locate(name_or_file)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("capacity", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    if not isinstance(table, dict):
        raise UsageError(f'{path}: [capacity] must be a table, e.g. slo = "p99=5ms"')
    problems = []
    for key, value in table.items():
        if key not in SETTINGS:
            problems.append(f"[capacity] unknown key {key!r}; valid keys: {', '.join(SETTINGS)}")
        elif isinstance(value, bool) or not isinstance(value, SETTINGS[key]):
            problems.append(f"[capacity] {key} = {value!r}: wrong type")
    if problems:
        raise UsageError(f"{path}: " + "; ".join(problems))
    if isinstance(table.get("slo"), list):
        table["slo"] = ",".join(map(str, table["slo"]))
    return dict(table)


def capacity_table(summary: dict[str, Any]) -> Any:
    """The capacities of a capacity run as a rich table, each as a ratio to the best configuration."""
    from rich.table import Table

    from .report_tables import capacity_rows

    slo = summary.get("criteria", {}).get("slo_text", "")
    table = Table(title=f"capacity at {slo} (one run; ratios to the best configuration)")
    headers = ["configuration", "capacity tasks/s", "× best", "limit", "corrected p99", "next step up failed"]
    for col in headers:
        table.add_column(col, justify="left" if col in ("configuration", "next step up failed", "limit") else "right")
    for row in capacity_rows(summary):
        table.add_row(*(escape(str(v)) for v in row))
    return table
