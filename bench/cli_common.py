"""What the ``bench`` command modules share: the console, the server options, your own servers
(``bench run`` and ``bench capacity``), SIGTERM handling, charts at the end."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from . import children
from .errors import UsageError

if TYPE_CHECKING:  # the runner imports Locust's machinery: only when a command runs
    from .external import External

# Wide when piped (logs, CI), so tables are not cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


def add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server-bin", help="redis-server/valkey-server binary (default: $REDIS_SERVER_BIN, PATH)")
    p.add_argument("--state-dir", type=Path, default=None, help="where pids, logs and data live (default .bench/)")


def add_load_override(p: argparse.ArgumentParser, dest: str, help: str | None = None) -> None:
    """A sub-command flag that overrides one load option for every cell: its flag, type, choices and
    help come from the option's one declaration (``bench.options``); unset (None) keeps the scenario's
    value, and the scenario's validation applies the option's rules."""
    from .options import OPTIONS

    opt = next(o for o in OPTIONS if o.dest == dest)
    p.add_argument(opt.flag, type=opt.type, choices=opt.choices, default=None, help=help or opt.help)


def charts_and_report(out: Path) -> None:
    from . import plots, report

    charts = plots.plot_runs([out])  # micro-benchmarks only when asked: bench plot --benchmarks
    report.write_report(out)
    console.print(f"charts: {len(charts)} in {out / 'charts'}; report: {out / 'report.md'}")


def add_external_options(p: argparse.ArgumentParser, *, flush_when: str, failover: bool = False) -> None:
    """--redis-url/--cluster-nodes/--allow-flush (and --allow-failover) of a command that loads your own servers."""
    p.add_argument("--redis-url", help="your own standalone server instead of an embedded one (needs --allow-flush)")
    p.add_argument("--cluster-nodes", help="your own cluster instead of an embedded one (needs --allow-flush)")
    p.add_argument("--allow-flush", action="store_true", help=f"allow FLUSHALL and CONFIG SET {flush_when}")
    if failover:
        p.add_argument(
            "--allow-failover",
            action="store_true",
            help="allow CLUSTER FAILOVER (failover, failover-force cells) on your own cluster",
        )


def external_from(
    redis_url: str | None, cluster_nodes: str | None, allow_flush: bool, allow_failover: bool = False
) -> External | None:
    """Your own server(s) from --redis-url/--cluster-nodes, checked before anything starts (a bad node list,
    an unreachable server: UsageError, one line); None for embedded servers."""
    from . import preflight
    from .external import External

    if not (redis_url or cluster_nodes):
        return None
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
    return external


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises Terminated (a KeyboardInterrupt, exit 143) once, so it is handled like Ctrl-C: results
    so far written, Locust and the servers stopped. A repeated SIGTERM during that clean-up is ignored
    (SIGKILL still works: the kernel kills every child). Both go through ``children.deliver``, which
    holds them while a child is forked, where Python would drop them."""
    from .runner import Terminated

    raised = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal raised
        if not raised:
            raised = True
            children.deliver(Terminated())

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    own_sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not if ignored (background job)
    if own_sigint:
        signal.signal(signal.SIGINT, children.interrupt_as_exception)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if own_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
