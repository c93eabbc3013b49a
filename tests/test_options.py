"""The one load-option schema (bench.options): every field survives argv -> Locust's parser ->
options, every scenario load key is a schema field, and the harness hands each one to Locust."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import scenario
from bench.errors import UsageError
from bench.options import OPTIONS, LoadOptions, Option
from bench.target import Target

ROOT = Path(__file__).resolve().parent.parent

# Locust's real parser, built as the locustfile builds it (bench.load._on_parser), in a child:
# importing Locust monkey-patches the whole process with gevent.
PARSE = """
import dataclasses, json, os, sys
from locust.argument_parser import get_parser
from bench.load import _on_parser
from bench.options import LoadOptions
out = []
for argv, env in json.load(sys.stdin):
    os.environ.update(env)
    parser = get_parser()
    _on_parser(parser)
    out.append(dataclasses.asdict(LoadOptions.from_namespace(parser.parse_args(argv))))
    for key in env:
        del os.environ[key]
print(json.dumps(out))
"""

SPECIAL = {  # values a plain rule cannot make up
    "redis_url": "redis://user:secret@127.0.0.1:6390/1",
    "cluster_nodes": "127.0.0.1:7000,127.0.0.1:7001",
    "queue": "bench.adapters:taskqueue",
}


def other_value(opt: Option) -> Any:
    """A valid value different from the option's default."""
    if opt.dest in SPECIAL:
        return SPECIAL[opt.dest]
    if opt.choices:
        return next(c for c in opt.choices if c != opt.default)
    if opt.kind is bool:
        return not opt.default
    if opt.kind is int:
        return opt.default + 1
    if opt.kind is float:
        return opt.default + (0.25 if opt.lt is None else (opt.lt - opt.default) / 2)
    return f"x-{opt.dest}"


def test_every_field_round_trips_through_argv_parser_and_options() -> None:
    cases = [LoadOptions(**{opt.dest: other_value(opt)}) for opt in OPTIONS]
    together = {o.dest: other_value(o) for o in OPTIONS if o.dest != "cluster_nodes"}  # not both targets
    cases += [LoadOptions(), LoadOptions(**together)]
    for opts in cases:
        assert opts.validated() is opts
    payload = json.dumps([(opts.as_args(), opts.as_env()) for opts in cases])
    done = subprocess.run(
        [sys.executable, "-c", PARSE], input=payload, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = json.loads(done.stdout.splitlines()[-1])
    for opts, back in zip(cases, parsed, strict=True):
        assert LoadOptions(**back) == opts
    assert "secret" not in " ".join(cases[-1].as_args())  # the password travels by env var only


def test_every_scenario_load_key_is_a_schema_field_with_its_rules() -> None:
    fields = {f.name for f in dataclasses.fields(LoadOptions)}
    assert set(scenario.LOAD_KEYS) <= fields
    assert not set(scenario.HARNESS) & set(scenario.LOAD_KEYS)  # a key is harness or load, never both
    assert set(scenario.PARAMS) == set(scenario.HARNESS) | set(scenario.LOAD_KEYS)
    by_dest = {opt.dest: opt for opt in OPTIONS}
    for key in scenario.LOAD_KEYS:
        opt, param = by_dest[key], scenario.PARAMS[key]
        assert (param.type, param.valid, param.cluster_only) == (opt.kind, opt.valid, opt.cluster_only), key
    for key, default in scenario.LOAD_DEFAULTS.items():  # the overlay only holds real differences
        assert key in scenario.LOAD_KEYS and default != by_dest[key].default
        assert scenario.PARAMS[key].default == default
    for name in scenario.builtin_names():
        for cell in scenario.load(name).cells:
            assert {k: getattr(cell.load, k) for k in scenario.LOAD_KEYS} == {
                k: v for k, v in cell.params.items() if k in scenario.LOAD_KEYS
            }
            assert not set(cell.harness) & fields - {"backend"}  # scenario's backend: standalone|cluster
            cell.load.validated()


@pytest.mark.parametrize("opt", [o for o in OPTIONS if o.scenario and (o.ge is not None or o.gt is not None)])
def test_a_scenario_refuses_what_the_schema_refuses(opt: Option) -> None:
    low = opt.ge if opt.ge is not None else opt.gt
    assert low is not None
    bad = opt.kind(low - 1)
    with pytest.raises(UsageError, match=re.escape(f"{opt.dest} = {bad!r}: valid is {opt.valid}")):
        scenario.parse({"params": {opt.dest: bad}})
    with pytest.raises(UsageError, match=re.escape(f"{opt.flag} {bad}: must be")):
        LoadOptions(**{opt.dest: bad}).validated()


def test_the_harness_hands_every_load_key_of_a_cell_to_locust(tmp_path: Path) -> None:
    from bench.locust_cmd import cell_load_options, locust_command

    base = scenario.parse({"params": {"backend": "cluster"}}).cells[0]
    changed = {o.dest: other_value(o) for o in OPTIONS if o.scenario}
    cell = base.updated(**changed)
    opts = cell_load_options(cell, Target(cluster_nodes="127.0.0.1:7000"), "cell0", tmp_path)
    assert {k: getattr(opts, k) for k in changed} == changed
    argv = locust_command(cell.params, opts, tmp_path)
    for key in changed:
        assert argv[argv.index("--" + key.replace("_", "-")) + 1].lower() == str(changed[key]).lower()


def test_bad_values_are_one_line_naming_each_flag() -> None:
    with pytest.raises(UsageError) as info:
        LoadOptions(pool_size=0, rate=float("nan"), engine="heap", producer_weight=0, consumer_weight=0).validated()
    message = str(info.value)
    assert "\n" not in message
    for needle in ("--pool-size 0: must be >= 1", "--rate nan: must be a finite number", "--engine 'heap': use list"):
        assert needle in message
    assert "user weights must not all be 0" in message


def test_every_bench_run_flag_reaches_run_scenario() -> None:
    """`bench demo` calls run_scenario(...): a new `bench run` flag is one of its keywords or a
    scenario override, never a field of a hand-built Namespace."""
    from bench.cli import build_parser, run_scenario

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = commands.choices["run"]
    dests = {a.dest for a in run._actions} - {"help"}
    keywords = set(inspect.signature(run_scenario).parameters)
    overrides = {"duration", "warmup", "repeat", "users", "processes"}
    assert dests - keywords - overrides == {"scenario", "no_charts", "state_dir"}


def test_the_readme_names_every_option() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [opt.flag for opt in OPTIONS if opt.flag not in readme] == []


def test_pure_modules_import_no_redis() -> None:
    code = "import sys, bench.options, bench.scenario; print(sorted({'redis', 'locust'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
