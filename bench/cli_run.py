"""``bench run``, ``bench demo``, ``bench scenarios``, ``bench options``, ``bench overhead``, ``bench quick``:
running scenarios (and the measurements next to them) on embedded or external servers."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from . import backends
from .backends import BackendSpec
from .cli_common import (
    add_external_options,
    add_load_override,
    add_server_options,
    charts_and_report,
    console,
    external_from,
    sigterm_as_interrupt,
)
from .errors import UsageError
from .ports import free_port
from .servers import find_server_bin
from .tables import demo_table, run_table


def _add_scenarios(sub: Any) -> None:
    scen = sub.add_parser("scenarios", help="list the built-in scenarios")
    scen.add_argument("--show", metavar="NAME", help="print one scenario file (copy it to make your own)")


def _add_options(sub: Any) -> None:
    sub.add_parser("options", help="the options of `locust -f locustfiles/queue.py` (its --help cannot list them)")


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="run a scenario matrix (built-in NAME or FILE.toml)")
    run.add_argument("scenario", metavar="NAME|FILE.toml")
    run.add_argument("--duration", type=float, help="seconds per cell (overrides the scenario)")
    add_load_override(run, "warmup")
    run.add_argument("--repeat", type=int, help="repeats per cell (median reported, spread > 10%% flagged)")
    run.add_argument("--users", type=int, help="Locust users per cell")
    run.add_argument("--processes", type=int, help="Locust --processes per cell")
    run.add_argument("--out", type=Path, help="results folder (default results/<timestamp>-<scenario>)")
    add_external_options(run, flush_when="before every cell", failover=True)
    run.add_argument(
        "--docker",
        action="store_true",
        help="run on the docker-compose cluster (started if needed); faults go through the containers",
    )
    run.add_argument("--no-charts", action="store_true", help="skip charts and report at the end")
    run.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's temporary folder (embedded servers' data and logs) for debugging; its path is printed",
    )
    add_server_options(run)


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser("demo", help="the main job: run the compact `demo` study, charts and report")
    demo.add_argument("--out", type=Path, help="results folder (default results/<timestamp>-demo)")
    demo.add_argument("--duration", type=float, help="seconds per cell (default: the scenario's)")
    add_server_options(demo)


def _add_overhead(sub: Any) -> None:
    overhead = sub.add_parser(
        "overhead", help="Locust TaskQueue.enqueue vs Locust raw LPUSH vs redis-benchmark, one run"
    )
    overhead.add_argument("--users", type=int, default=20)
    overhead.add_argument("--seconds", type=int, default=8)
    overhead.add_argument("--repeats", type=int, default=3)
    overhead.add_argument("--json", type=Path, help="also write the numbers to this file")
    add_server_options(overhead)


def _add_quick(sub: Any) -> None:
    quick = sub.add_parser("quick", help="TaskQueue vs raw redis-py through one client on both backends")
    quick.add_argument("--tasks", type=int, default=3000)
    quick.add_argument("--repeats", type=int, default=3)
    quick.add_argument("--payload-bytes", type=int, default=100)
    add_server_options(quick)


def cmd_run(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in ("duration", "warmup", "repeat", "users", "processes")}
    kw = {k: getattr(args, k) for k in ("redis_url", "cluster_nodes", "docker", "allow_flush", "allow_failover")}
    kw |= {"charts": not args.no_charts, "keep": args.keep, "server_bin": args.server_bin, "argv": args.argv}
    return run_scenario(args.scenario, args.out, overrides, **kw)


def run_scenario(
    name: str,
    out: Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    redis_url: str | None = None,
    cluster_nodes: str | None = None,
    docker: bool = False,
    allow_flush: bool = False,
    allow_failover: bool = False,
    charts: bool = True,
    keep: bool = False,
    server_bin: str | None = None,
    argv: list[str] | None = None,
    optional_delay: bool = False,
    done_line: str | None = None,
) -> int:
    """`bench run` (and `bench demo`) as a function; the keywords are `bench run`'s flags. Exit 0 when
    the run ended (cells may still be incomplete: see summary.json), 130 after Ctrl-C, 143 after
    SIGTERM; both write the results so far and stop Locust and the servers."""
    from datetime import datetime

    from . import clientlib, netns, scenario
    from . import docker as compose
    from .external import External
    from .runner import Runner

    with sigterm_as_interrupt():
        loaded = scenario.load(name, overrides)
        if optional_delay and netns.wanted(loaded.cells, delay=True) and not netns.inside():
            # `bench demo`: where no delay line can run, the rest of the study still does, and says so.
            problems = netns.netns_problems() or delayline_problems()
            if problems:
                left_out = netns.wanted(loaded.cells, delay=True)
                loaded.cells = [c for c in loaded.cells if not netns.delayed(c.params)]
                console.print(
                    f"[yellow]leaving out {len(left_out)} cell(s) with a network round trip "
                    f"({escape(netns.named(left_out))}): this machine lacks {escape(', '.join(problems))}[/]"
                )
        # Each cell's redis-py release, installed now: before any server starts, outside the namespace.
        clientlib.prepare(
            (c.harness["redis_py"] for c in loaded.cells),
            backends.default_state_dir(),
            offline=netns.inside(),
            console=console,
        )
        partitioned = netns.wanted(loaded.cells)
        if partitioned and not netns.inside():  # network faults or delay: the whole run goes on in a private namespace
            other, delayed = bool(redis_url or cluster_nodes), netns.wanted(loaded.cells, delay=True)
            what = netns.purpose(loaded.cells)
            checks = delayline_problems if delayed else None
            return netns.run_inside(
                argv or sys.argv[1:], partitioned, docker=docker, external=other, what=what, extra_problems=checks
            )
        if partitioned:
            netns.setup()
        external = None
        if docker:
            if redis_url or cluster_nodes:
                raise UsageError("--docker runs on the compose cluster: drop --redis-url/--cluster-nodes")
            compose.compose("up", "-d")
            compose.wait_cluster_ok()
            nodes = ",".join(compose.COMPOSE_NODES)
            external = External(cluster_nodes=nodes, allow_flush=True, docker=True, containers=compose.describe())
        else:
            external = external_from(redis_url, cluster_nodes, allow_flush, allow_failover)
        if server_bin or not external:
            find_server_bin(server_bin)
        out = out or Path("results") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{loaded.name}"
        runner = Runner(loaded, out, server_bin=server_bin, external=external, console=console, keep=keep)
        runner.check()
        console.print(f"{escape(scenario.origin(loaded))}: {len(loaded.cells)} cells -> {out}")
        runner.run()
        summary = runner.summary
        console.print(run_table(summary))
        if runner.interrupted is not None:  # stop now; the charts can be made later
            if charts and summary["cells"]:
                console.print(f"charts and report skipped: `bench report {out}` makes them")
        elif charts:
            charts_and_report(out)
        state = "complete" if summary["complete"] else f"INCOMPLETE ({summary.get('incomplete_reason', 'see cells')})"
        console.print(f"results: {out}/summary.json ({state})")
        if done_line:  # by the process that ran the cells (not by one that re-ran itself in a namespace)
            console.print(done_line)
        if runner.interrupted is not None:  # 130 for Ctrl-C, 143 for SIGTERM (128 + signal)
            return int(getattr(runner.interrupted, "exit_code", 130))
        return 0


def delayline_problems() -> list[str]:
    from .delayline import delay_problems

    return delay_problems()


def cmd_demo(args: argparse.Namespace) -> int:
    """`make demo`: the demo scenario end to end, charts and report, every server stopped."""
    from datetime import datetime

    out = args.out or Path("results") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-demo"
    done = f"\n[bold]demo done[/]: open {out / 'report.html'} (or report.md); charts in {out / 'charts'}"
    overrides = {"duration": args.duration}
    return run_scenario(
        "demo", out, overrides, server_bin=args.server_bin, argv=args.argv, optional_delay=True, done_line=done
    )


def cmd_options(args: argparse.Namespace) -> int:
    from .options import format_options

    print(format_options())  # plain text: no wrapping
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from . import scenario

    if args.show:
        sys.stdout.write(scenario.locate(args.show).read_text(encoding="utf-8"))  # verbatim: valid TOML
        return 0
    table = Table(title="built-in scenarios (bench run NAME)")
    for col in ("name", "cells", "description"):
        table.add_column(col)
    for name in scenario.builtin_names():
        s = scenario.load(name)
        table.add_row(name, str(len(s.cells)), s.description)
    console.print(table)
    console.print(f"files: {scenario.BUILTIN_DIR} — copy one, edit it, run `bench run my.toml`")
    return 0


def cmd_overhead(args: argparse.Namespace) -> int:
    import json

    from .overhead import measure

    if args.users < 1 or args.seconds < 2 or args.repeats < 1:
        raise UsageError("--users >= 1, --seconds >= 2, --repeats >= 1")
    result = measure(args.users, args.seconds, args.repeats, args.server_bin)
    table = Table(title=f"one run, {args.repeats} interleaved repeats, {args.users} users, one Locust process")
    for col in ("load", "median ops/s", "repeats"):
        table.add_column(col, justify="right")
    for name, value in result["median_ops_per_s"].items():
        table.add_row(name, f"{value:,.0f}", ", ".join(f"{v:,.0f}" for v in result["samples"][name]))
    console.print(table)
    console.print(
        f"TaskQueue.enqueue / raw LPUSH (both through Locust): {result['enqueue_vs_raw_lpush']:.2f}x · "
        f"raw LPUSH through Locust / redis-benchmark: {result['raw_lpush_vs_redis_benchmark']:.2f}x · "
        f"enqueue / redis-benchmark: {result['enqueue_vs_redis_benchmark']:.2f}x"
    )
    cost = result["harness_us_per_op"]
    console.print("harness per operation: " + ", ".join(f"{k} {v:.2f} µs" for k, v in cost.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def cmd_quick(args: argparse.Namespace) -> int:
    from taskqueue import TaskQueue

    from .quick import measure

    if args.tasks < 1 or args.repeats < 1 or args.payload_bytes < 0:
        raise UsageError("--tasks and --repeats must be >= 1, --payload-bytes >= 0")
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    started: list[backends.Backend] = []
    results = {}
    try:
        for kind in ("standalone", "cluster"):
            port = free_port(span=6, start=21000 if kind == "standalone" else 22000, bus_offset=10000)
            console.print(f"starting embedded {kind} on 127.0.0.1:{port} …")
            backend = backends.start_backend(
                BackendSpec(kind=kind, port=port, server_bin=args.server_bin, state_dir=state_dir)
            )
            started.append(backend)
            with TaskQueue(backend.target.redis_url, backend.target.cluster_nodes, name="demo") as queue:
                console.print(f"  {args.tasks} tasks x {args.repeats} repeats through {kind} …")
                results[kind] = (measure(queue, args.tasks, args.payload_bytes, args.repeats), queue.describe())
    finally:
        for backend in started:
            backend.stop()
    console.print(demo_table(results))
    return 0


PARSERS: dict[str, Callable[[Any], None]] = {
    "scenarios": _add_scenarios,
    "options": _add_options,
    "run": _add_run,
    "demo": _add_demo,
    "overhead": _add_overhead,
    "quick": _add_quick,
}
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "scenarios": cmd_scenarios,
    "options": cmd_options,
    "run": cmd_run,
    "demo": cmd_demo,
    "overhead": cmd_overhead,
    "quick": cmd_quick,
}
