"""``bench``: start backends, run scenarios, make charts. Bad input: one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import cli_capacity, cli_pool, cli_results, cli_run, cli_servers
from .cli_run import run_scenario
from .errors import UsageError

# run_scenario lives in cli_run; tests and scripts import it from here, as before the split.
__all__ = ["COMMANDS", "build_parser", "main", "run_scenario"]

# `bench --help` lists the commands in this order.
ORDER = (
    "up",
    "status",
    "down",
    "scenarios",
    "options",
    "run",
    "capacity",
    "pool",
    "plot",
    "report",
    "compare",
    "demo",
    "overhead",
    "quick",
)
GROUPS = (cli_servers, cli_run, cli_capacity, cli_pool, cli_results)
COMMANDS = {name: handler for group in GROUPS for name, handler in group.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    adders = {name: add for group in GROUPS for name, add in group.PARSERS.items()}
    for name in ORDER:
        adders[name](sub)
    return parser


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
