"""``bench``: start backends, run scenarios, make charts. Bad input: one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import backends, docker, validate
from .backends import BackendSpec
from .errors import UsageError
from .servers import find_server_bin, free_port
from .tables import demo_table, external_table, num, run_table, status_table

# Wide when piped (logs, CI), so tables are not cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server-bin", help="redis-server/valkey-server binary (default: $REDIS_SERVER_BIN, PATH)")
    p.add_argument("--state-dir", type=Path, default=None, help="where pids, logs and data live (default .bench/)")


def _add_capacity_parser(sub: Any) -> None:
    cap = sub.add_parser(
        "capacity", help="the highest open-loop rate a configuration sustains at an SLO (rate search per cell)"
    )
    cap.add_argument("scenario", nargs="?", metavar="NAME|FILE.toml", help="search each cell of a scenario")
    cap.add_argument("--backend", choices=("standalone", "cluster"), help="one configuration (default standalone)")
    cap.add_argument("--pool-size", type=int, help="connection pool per process (per node on a cluster)")
    cap.add_argument("--processes", type=int, help="Locust --processes (load processes on this machine)")
    cap.add_argument("--users", type=int, help="Locust users (half producers, half consumers; default 20)")
    cap.add_argument("--engine", choices=("list", "stream"))
    cap.add_argument("--partitions", type=int)
    cap.add_argument("--payload-bytes", type=int)
    cap.add_argument(
        "--slo", action="append", metavar="PCT=LIMIT", help="e.g. p99=5ms (repeatable; p50, p90, p99, p99.9, p99.99)"
    )
    cap.add_argument("--max-error-rate", type=float, help="failed share of operations a step may have (default 0)")
    cap.add_argument(
        "--max-backlog-growth", type=float, help="queue depth growth per s, as a share of the rate (default 0.02)"
    )
    cap.add_argument("--start-rate", type=float, help="first offered rate, tasks/s (default 500)")
    cap.add_argument("--max-rate", type=float, help="stop searching up here (default 1,000,000)")
    cap.add_argument("--min-rate", type=float, help="stop searching down here (default start rate / 16)")
    cap.add_argument("--factor", type=float, help="geometric step up (default 2)")
    cap.add_argument("--resolution", type=float, help="bisect until pass and fail are this close (default 0.05)")
    cap.add_argument("--step-duration", type=float, help="measured seconds per step (default 10)")
    cap.add_argument("--warmup", type=float, help="seconds before each step's measurement (default 2)")
    cap.add_argument("--max-steps", type=int, help="steps per configuration at most (default 30)")
    cap.add_argument("--no-confirm", action="store_true", help="do not re-run the capacity step to confirm it")
    cap.add_argument("--out", type=Path, help="results folder (default results/<timestamp>-capacity-<name>)")
    cap.add_argument("--no-charts", action="store_true", help="skip the chart and report at the end")
    cap.add_argument("--redis-url", help="your own standalone server (needs --allow-flush)")
    cap.add_argument("--cluster-nodes", help="your own cluster (needs --allow-flush)")
    cap.add_argument("--allow-flush", action="store_true", help="allow FLUSHALL and CONFIG SET before every step")
    cap.add_argument(
        "--expect-workers",
        type=int,
        help="each step's Locust is a master waiting for N workers (`locust -f locustfiles/queue.py --worker "
        "--master-host THIS_HOST`, restarted after each step); replaces --processes",
    )
    cap.add_argument("--master-bind-host", default="*", help="with --expect-workers (default all interfaces)")
    cap.add_argument("--master-bind-port", type=int, default=5557, help="with --expect-workers (default 5557)")
    _add_server_options(cap)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start an embedded backend (stays up until `bench down`)")
    up_sub = up.add_subparsers(dest="backend", required=True, metavar="BACKEND")
    sa = up_sub.add_parser("standalone", help="one redis-server on 127.0.0.1")
    sa.add_argument("--port", type=int, default=6379)
    cl = up_sub.add_parser("cluster", help="a Redis Cluster of redis-server processes (default 3 masters + 3 replicas)")
    cl.add_argument("--base-port", type=int, default=7000)
    cl.add_argument("--node-timeout", type=int, default=backends.DEFAULT_NODE_TIMEOUT_MS, metavar="MS")
    cl.add_argument("--masters", type=int, default=3)
    cl.add_argument("--replicas", type=int, default=1, help="replicas per master")
    cl.add_argument("--docker", action="store_true", help="use docker-compose.redis-cluster.yml instead")
    for p in (sa, cl):
        p.add_argument("--maxmemory", help="e.g. 64mb")
        p.add_argument("--maxmemory-policy", choices=validate.POLICIES, metavar="POLICY")
        _add_server_options(p)

    status = sub.add_parser("status", help="nodes, roles, slots, memory, policy and state of running backends")
    _add_server_options(status)
    status.add_argument("--redis-url", help="also show an external standalone server (read-only)")
    status.add_argument("--cluster-nodes", help="also show an external cluster, host:port[,host:port…] (read-only)")
    down = sub.add_parser("down", help="stop everything `bench up` started and delete its data (idempotent)")
    _add_server_options(down)
    down.add_argument("--docker", action="store_true", help="also `docker compose down -v` the compose cluster")

    scen = sub.add_parser("scenarios", help="list the built-in scenarios")
    scen.add_argument("--show", metavar="NAME", help="print one scenario file (copy it to make your own)")
    sub.add_parser("options", help="the options of `locust -f locustfiles/queue.py` (its --help cannot list them)")

    run = sub.add_parser("run", help="run a scenario matrix (built-in NAME or FILE.toml)")
    run.add_argument("scenario", metavar="NAME|FILE.toml")
    run.add_argument("--duration", type=float, help="seconds per cell (overrides the scenario)")
    run.add_argument("--warmup", type=float, help="seconds excluded from statistics at the start of each cell")
    run.add_argument("--repeat", type=int, help="repeats per cell (median reported, spread > 10%% flagged)")
    run.add_argument("--users", type=int, help="Locust users per cell")
    run.add_argument("--processes", type=int, help="Locust --processes per cell")
    run.add_argument("--out", type=Path, help="results folder (default results/<timestamp>-<scenario>)")
    run.add_argument("--redis-url", help="run on your own standalone server instead of an embedded one")
    run.add_argument("--cluster-nodes", help="run on your own cluster instead of an embedded one")
    run.add_argument("--allow-flush", action="store_true", help="allow FLUSHALL and CONFIG SET on your own server")
    run.add_argument(
        "--allow-failover",
        action="store_true",
        help="allow CLUSTER FAILOVER (failover, failover-force cells) on your own cluster",
    )
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
    _add_server_options(run)

    _add_capacity_parser(sub)

    plot = sub.add_parser("plot", help="charts (PNG + SVG) from one or more run folders")
    plot.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    plot.add_argument("--only", action="append", metavar="CHART", help="only this chart (repeatable)")
    plot.add_argument("--out", type=Path, help="charts folder (default: FIRST_RUN/charts)")
    plot.add_argument(
        "--benchmarks",
        metavar="FILE|latest",
        help="also chart pytest-benchmark results: a JSON file, or 'latest' (newest under results/benchmarks)",
    )
    report = sub.add_parser("report", help="report.md and self-contained report.html for a run folder")
    report.add_argument("run", type=Path, metavar="RUN_DIR")
    compare = sub.add_parser("compare", help="B/A ratios per cell and operation, regressions flagged")
    compare.add_argument("run_a", type=Path, metavar="RUN_A")
    compare.add_argument("run_b", type=Path, metavar="RUN_B")
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when any metric regressed (also judges cells with < 3 repeats instead of saying 'changed')",
    )

    demo = sub.add_parser("demo", help="the main job: run the compact `demo` study, charts and report")
    demo.add_argument("--out", type=Path, help="results folder (default results/<timestamp>-demo)")
    demo.add_argument("--duration", type=float, help="seconds per cell (default: the scenario's)")
    _add_server_options(demo)

    overhead = sub.add_parser(
        "overhead", help="Locust TaskQueue.enqueue vs Locust raw LPUSH vs redis-benchmark, one run"
    )
    overhead.add_argument("--users", type=int, default=20)
    overhead.add_argument("--seconds", type=int, default=8)
    overhead.add_argument("--repeats", type=int, default=3)
    overhead.add_argument("--json", type=Path, help="also write the numbers to this file")
    _add_server_options(overhead)

    quick = sub.add_parser("quick", help="TaskQueue vs raw redis-py through one client on both backends")
    quick.add_argument("--tasks", type=int, default=3000)
    quick.add_argument("--repeats", type=int, default=3)
    quick.add_argument("--payload-bytes", type=int, default=100)
    _add_server_options(quick)
    return parser


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or backends.default_state_dir()
    if args.maxmemory:
        validate.maxmemory_bytes(args.maxmemory)
    if args.backend == "cluster" and args.docker:
        docker.compose("up", "-d")
        docker.wait_cluster_ok()
        console.print(f"compose cluster up: {','.join(docker.COMPOSE_NODES)}")
        return 0
    if backends.attach(state_dir, args.backend) is not None:
        raise UsageError(f"a {args.backend} backend is already recorded in {state_dir}; run `bench down` first")
    spec = BackendSpec(
        kind=args.backend,
        port=args.port if args.backend == "standalone" else args.base_port,
        masters=getattr(args, "masters", 3),
        replicas=getattr(args, "replicas", 1),
        node_timeout_ms=getattr(args, "node_timeout", backends.DEFAULT_NODE_TIMEOUT_MS),
        maxmemory=args.maxmemory,
        maxmemory_policy=args.maxmemory_policy,
        server_bin=args.server_bin,
        state_dir=state_dir,
        owned=False,
    )
    backend = backends.start_backend(spec)
    backends.save_backend(state_dir, backend, find_server_bin(args.server_bin))
    if isinstance(backend, backends.StandaloneBackend):
        console.print(f"standalone up: REDIS_URL={backend.url}")
    else:
        console.print(f"cluster up: REDIS_CLUSTER_ENABLED=true REDIS_CLUSTER_NODES={','.join(backend.nodes)}")
    if args.maxmemory_policy and args.maxmemory_policy != "noeviction":
        console.print(f"[yellow]warning: maxmemory-policy {args.maxmemory_policy} can delete queued tasks[/]")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or backends.default_state_dir()
    found = False
    if args.redis_url or args.cluster_nodes:
        console.print(external_table(args.redis_url, args.cluster_nodes))
        found = True
    for kind in ("standalone", "cluster"):
        backend = backends.attach(state_dir, kind)
        if backend is None:
            continue
        found = True
        console.print(status_table(backend))
    if not found:
        console.print(f"no backend recorded in {state_dir} (start one with `bench up standalone|cluster`)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or backends.default_state_dir()
    stopped = backends.down(state_dir)
    if args.docker:
        removed = docker.down()
        if removed:
            stopped.append(f"compose cluster ({len(removed)} containers; its network and volumes removed)")
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
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
) -> int:
    """`bench run` (and `bench demo`) as a function; the keywords are `bench run`'s flags. Exit 0 when
    the run ended (cells may still be incomplete: see summary.json), 130 after Ctrl-C, 143 after
    SIGTERM; both write the results so far and stop Locust and the servers."""
    from datetime import datetime

    from . import docker as compose
    from . import netns, preflight, scenario
    from .runner import External, Runner, Terminated

    raised = False

    def on_sigterm(signum: int, frame: object) -> None:
        """Raise Terminated (a KeyboardInterrupt) once, so SIGTERM is handled like Ctrl-C; a repeated
        SIGTERM during that clean-up is ignored (SIGKILL still works: the kernel kills every child)."""
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        loaded = scenario.load(name, overrides)
        partitioned = netns.wanted(loaded.cells)
        if partitioned and not netns.inside():  # network faults: the whole run goes on in a private namespace
            other = bool(redis_url or cluster_nodes)
            return netns.run_inside(argv or sys.argv[1:], partitioned, docker=docker, external=other)
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
        elif redis_url or cluster_nodes:
            if redis_url and cluster_nodes:
                raise UsageError("give --redis-url or --cluster-nodes, not both")
            if cluster_nodes:
                from taskqueue.settings import parse_nodes

                try:
                    parse_nodes(cluster_nodes)
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
            external = External(redis_url or "", cluster_nodes or "", allow_flush, allow_failover)
            preflight.check_external(redis_url=redis_url, cluster_nodes=cluster_nodes)  # read-only
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
            _charts_and_report(out)
        state = "complete" if summary["complete"] else f"INCOMPLETE ({summary.get('incomplete_reason', 'see cells')})"
        console.print(f"results: {out}/summary.json ({state})")
        if runner.interrupted is not None:  # 130 for Ctrl-C, 143 for SIGTERM (128 + signal)
            return int(getattr(runner.interrupted, "exit_code", 130))
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _charts_and_report(out: Path) -> None:
    from . import plots, report

    charts = plots.plot_runs([out])  # micro-benchmarks only when asked: bench plot --benchmarks
    report.write_report(out)
    console.print(f"charts: {len(charts)} in {out / 'charts'}; report: {out / 'report.md'}")


def cmd_demo(args: argparse.Namespace) -> int:
    """`make demo`: the demo scenario end to end, charts and report, every server stopped."""
    from datetime import datetime

    out = args.out or Path("results") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-demo"
    code = run_scenario("demo", out, {"duration": args.duration}, server_bin=args.server_bin, argv=args.argv)
    console.print(f"\n[bold]demo done[/]: open {out / 'report.html'} (or report.md); charts in {out / 'charts'}")
    return code


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plots

    bench_json = plots.benchmark_json_arg(args.benchmarks)
    written = plots.plot_runs(args.runs, only=args.only, out=args.out, benchmark_json=bench_json)
    for path in written:
        console.print(f"{path} (+ .svg)")
    if not written:
        console.print("no chart had data in these runs")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import plots, report

    run_dir = args.run
    if not (run_dir / "charts").is_dir():
        plots.plot_runs([run_dir])
    path = report.write_report(run_dir)
    console.print(f"{path}\n{path.with_suffix('.html')}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from . import report
    from .runs import load_run

    run_a, run_b = load_run(args.run_a), load_run(args.run_b)
    rows = report.compare(run_a, run_b, strict=args.fail_on_regression)
    if not rows:
        raise UsageError(f"no cells in common between {args.run_a} and {args.run_b} (cells are matched by id)")
    differences = report.environment_differences(run_a, run_b)
    if differences:
        console.print("[yellow]warning: the two runs come from different environments; ratios mix both effects:[/]")
        for line in differences:
            console.print(f"[yellow]  {escape(line)}[/]")
    table = Table(title=f"B/A: {args.run_b} vs {args.run_a} (repeat medians)")
    for col in ("cell", "operation", "metric", "A", "B", "B/A", "repeats", "verdict"):
        table.add_column(col, justify="right")
    colors = {"regression": "red", "improvement": "green", "unstable": "yellow", "changed": "magenta"}
    for r in rows:
        verdict = r["verdict"]
        table.add_row(
            escape(r["cell"]),
            r["operation"],
            r["metric"],
            num(r["a"]),
            num(r["b"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            str(r["repeats"]),
            f"[{colors[verdict]}]{verdict}[/]" if verdict in colors else verdict,
        )
    console.print(table)
    console.print(
        "regression/improvement: changed > 5 % and beyond both runs' repeat spread; unstable: spread > 10 %; "
        "changed: moved > 5 % but a cell has < 3 repeats, so its noise is unknown "
        "(--fail-on-regression judges it anyway)"
    )
    regressions = [r for r in rows if r["verdict"] == "regression"]
    if regressions and args.fail_on_regression:
        console.print(f"[red]{len(regressions)} regression(s)[/]")
        return 1
    return 0


def cmd_capacity(args: argparse.Namespace) -> int:
    """`bench capacity`: exit 0 when every configuration was searched, 130 after Ctrl-C and 143 after SIGTERM
    (results so far kept, Locust and the servers stopped)."""
    from .runner import Terminated

    raised = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal raised
        if not raised:  # once: a repeated SIGTERM during the clean-up is ignored
            raised = True
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _capacity(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _capacity(args: argparse.Namespace) -> int:
    from datetime import datetime

    from . import scenario
    from .capacity import Criteria, parse_slo
    from .capacity_options import SearchOptions, Workers, scenario_settings
    from .capacity_run import CapacityRun
    from .capacity_text import capacity_table
    from .runner import External

    flags = {
        "backend": args.backend,
        "pool_size": args.pool_size,
        "processes": args.processes,
        "users": args.users,
        "engine": args.engine,
        "partitions": args.partitions,
        "payload_bytes": args.payload_bytes,
    }
    if args.scenario:
        loaded = scenario.load(args.scenario, flags)
        settings = scenario_settings(args.scenario)
    else:
        given = {k: v for k, v in flags.items() if v is not None}
        params = {"backend": "standalone", "pool_size": 50, "users": 20} | given
        label = ", ".join(f"{k}={v}" if k != "backend" else str(v) for k, v in params.items())
        data = {"name": f"capacity-{params['backend']}", "cells": [{"label": label, **params}]}
        loaded = scenario.parse(data, source="command line")
        settings = {}
    slo = ",".join(args.slo) if args.slo else settings.get("slo", "p99=5ms")
    criteria = Criteria(
        slos=tuple(parse_slo(slo)),
        max_error_rate=_pick(args.max_error_rate, settings, "max_error_rate", 0.0),
        max_backlog_growth=_pick(args.max_backlog_growth, settings, "max_backlog_growth", 0.02),
    )
    options = SearchOptions(
        start_rate=_pick(args.start_rate, settings, "start_rate", 500.0),
        max_rate=_pick(args.max_rate, settings, "max_rate", 1_000_000.0),
        min_rate=_pick(args.min_rate, settings, "min_rate", 0.0),
        factor=_pick(args.factor, settings, "factor", 2.0),
        resolution=_pick(args.resolution, settings, "resolution", 0.05),
        step_s=_pick(args.step_duration, settings, "step_duration", 10.0),
        warmup_s=_pick(args.warmup, settings, "warmup", 2.0),
        max_steps=int(_pick(args.max_steps, settings, "max_steps", 30)),
        confirm=not args.no_confirm,
    )
    external = None
    if args.redis_url or args.cluster_nodes:
        if args.redis_url and args.cluster_nodes:
            raise UsageError("give --redis-url or --cluster-nodes, not both")
        external = External(args.redis_url or "", args.cluster_nodes or "", args.allow_flush)
    if args.server_bin or external is None:
        find_server_bin(args.server_bin)
    if args.expect_workers is not None and args.expect_workers < 1:
        raise UsageError("--expect-workers must be >= 1")
    workers = None
    if args.expect_workers:
        workers = Workers(args.expect_workers, args.master_bind_host, args.master_bind_port)
    out = args.out or Path("results") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{loaded.name}"
    run = CapacityRun(
        loaded, out, criteria, options, server_bin=args.server_bin, external=external, workers=workers, console=console
    )
    console.print(
        f"capacity search {loaded.name}: {len(loaded.cells)} configuration(s) at {', '.join(map(str, criteria.slos))},"
        f" steps of {options.step_s:g} s after {options.warmup_s:g} s warm-up -> {out}"
    )
    try:
        summary = run.run()
    except KeyboardInterrupt as exc:
        console.print(f"[yellow]{getattr(exc, 'reason', 'interrupted')}: results so far in {out}/summary.json[/]")
        raise
    console.print(capacity_table(summary))
    if not args.no_charts:
        _charts_and_report(out)
    console.print(f"results: {out}/summary.json")
    return 0


def _pick(value: Any, settings: dict[str, Any], key: str, default: Any) -> Any:
    """The command line's value, else the scenario's [capacity] setting, else the default."""
    return value if value is not None else settings.get(key, default)


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


COMMANDS = {
    "up": cmd_up,
    "status": cmd_status,
    "down": cmd_down,
    "demo": cmd_demo,
    "scenarios": cmd_scenarios,
    "options": cmd_options,
    "run": cmd_run,
    "plot": cmd_plot,
    "report": cmd_report,
    "compare": cmd_compare,
    "quick": cmd_quick,
    "overhead": cmd_overhead,
    "capacity": cmd_capacity,
}


def main(argv: Sequence[str] | None = None) -> int:
    from .secrets import hide_from_ps

    hide_from_ps()  # a password in --redis-url stays out of `ps`
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # bench run re-executes itself for partitions
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C: 130; bench run's SIGTERM (runner.Terminated): 143
        code = int(getattr(exc, "exit_code", 130))
        print("bench: terminated (SIGTERM)" if code == 143 else "bench: interrupted", file=sys.stderr)
        return code
