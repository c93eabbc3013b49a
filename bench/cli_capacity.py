"""``bench capacity``: the highest open-loop rate each configuration sustains at an SLO."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from .servers import find_server_bin


def _add_capacity_parser(sub: Any) -> None:
    cap = sub.add_parser(
        "capacity", help="the highest open-loop rate a configuration sustains at an SLO (rate search per cell)"
    )
    cap.add_argument("scenario", nargs="?", metavar="NAME|FILE.toml", help="search each cell of a scenario")
    cap.add_argument("--backend", choices=("standalone", "cluster"), help="one configuration (default standalone)")
    add_load_override(cap, "pool_size")
    cap.add_argument("--processes", type=int, help="Locust --processes (load processes on this machine)")
    cap.add_argument("--users", type=int, help="Locust users (half producers, half consumers; default 20)")
    for dest in ("engine", "partitions", "payload_bytes"):
        add_load_override(cap, dest)
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
    cap.add_argument(
        "--no-ceiling", action="store_true", help="skip the server-side ceiling (redis-benchmark on the scripts)"
    )
    cap.add_argument("--ceiling-requests", type=int, default=200_000, help="per ceiling run (default 200,000)")
    cap.add_argument("--ceiling-repeats", type=int, default=3, help="ceiling rounds, medians (default 3)")
    add_external_options(cap, flush_when="before every step")
    cap.add_argument(
        "--expect-workers",
        type=int,
        help="each step's Locust is a master waiting for N workers (`locust -f locustfiles/queue.py --worker "
        "--master-host THIS_HOST`, restarted after each step); replaces --processes",
    )
    cap.add_argument("--master-bind-host", default="*", help="with --expect-workers (default all interfaces)")
    cap.add_argument("--master-bind-port", type=int, default=5557, help="with --expect-workers (default 5557)")
    add_server_options(cap)


def cmd_capacity(args: argparse.Namespace) -> int:
    """`bench capacity`: exit 0 when every configuration was searched, 130 after Ctrl-C and 143 after SIGTERM
    (results so far kept, Locust and the servers stopped)."""
    with sigterm_as_interrupt():
        return _capacity(args)


def _capacity(args: argparse.Namespace) -> int:
    from datetime import datetime

    from . import scenario
    from .capacity import Criteria, parse_slo
    from .capacity_ceiling import CeilingOptions
    from .capacity_options import SearchOptions, Workers, scenario_settings
    from .capacity_run import CapacityRun
    from .capacity_text import capacity_table

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
    external = external_from(args.redis_url, args.cluster_nodes, args.allow_flush)
    if args.server_bin or external is None:
        find_server_bin(args.server_bin)
    if args.expect_workers is not None and args.expect_workers < 1:
        raise UsageError("--expect-workers must be >= 1")
    workers = None
    if args.expect_workers:
        workers = Workers(args.expect_workers, args.master_bind_host, args.master_bind_port)
    out = args.out or Path("results") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{loaded.name}"
    ceiling = None if args.no_ceiling else CeilingOptions(args.ceiling_requests, args.ceiling_repeats).check()
    run = CapacityRun(
        loaded,
        out,
        criteria,
        options,
        server_bin=args.server_bin,
        external=external,
        workers=workers,
        console=console,
        ceiling=ceiling,
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
        charts_and_report(out)
    console.print(f"results: {out}/summary.json")
    return 0


def _pick(value: Any, settings: dict[str, Any], key: str, default: Any) -> Any:
    """The command line's value, else the scenario's [capacity] setting, else the default."""
    return value if value is not None else settings.get(key, default)


PARSERS: dict[str, Callable[[Any], None]] = {"capacity": _add_capacity_parser}
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"capacity": cmd_capacity}
