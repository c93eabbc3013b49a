"""The load options, declared once, as ``LoadOptions`` field metadata: flag, env var, help, web UI
group and label, choices, bounds, default, and whether a scenario file may set it. Locust's parser
(``add_load_options``), the validation, the argv handed to Locust (``as_args``), the scenario
files' load keys (``bench.scenario``) and ``bench options`` are all generated from it."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import UsageError
from .target import Target

MAX_PAYLOAD = 8 * 1024 * 1024  # well below Redis's 512 MB limit; larger is a mistake in a queue bench
DEFAULT_STOP_TIMEOUT_S = 10.0  # Locust's --stop-timeout when not given: users finish their operation
WEIGHTS = ("producer_weight", "consumer_weight", "mixed_weight", "raw_lpush_weight")  # not all 0


@dataclass(frozen=True)
class Option:
    """One load option, read from a ``LoadOptions`` field: its name, default and ``_opt`` metadata."""

    dest: str
    default: Any
    group: str  # the web UI's start form lists options group by group (see WEB_UI_GROUPS)
    label: str  # short help in the web UI, after "<group>: "; at most 45 characters
    help: str  # full help: `bench options`
    choices: tuple[str, ...] | None = None
    ge: float | None = None  # bounds: >=, >, <=, <
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    unit: str = ""
    check: Callable[[Any], bool] | None = None  # a further test; ``valid_text`` is its message
    valid_text: str = ""
    secret: bool = False  # may hold a password: masked in the web UI, passed to children by env var
    scenario: bool = True  # a scenario file may set it; False: the harness sets it for each cell
    cluster_only: bool = False  # in a scenario, a value other than the default needs backend = "cluster"

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def env(self) -> str:
        return "TQB_" + self.dest.upper()

    @property
    def kind(self) -> type:
        return type(self.default)

    @property
    def type(self) -> Callable[[str], Any]:
        """What turns the command-line or env var text into the value."""
        return _bool if self.kind is bool else self.kind

    @property
    def bounds(self) -> str:
        """``1..10000``, ``>= 0``, ``> 0``, ``0..<5``; empty without bounds."""
        low = (">=", self.ge) if self.ge is not None else (">", self.gt) if self.gt is not None else None
        high = ("<=", self.le) if self.le is not None else ("<", self.lt) if self.lt is not None else None
        if low and high and low[0] == ">=":
            return f"{_num(low[1])}..{'' if high[0] == '<=' else '<'}{_num(high[1])}"
        return " and ".join(f"{b[0]} {_num(b[1])}" for b in (low, high) if b)

    @property
    def valid(self) -> str:
        """How a valid value looks, for messages and docs."""
        if self.valid_text:
            return self.valid_text
        if self.choices:
            return _words(self.choices)
        if self.kind is bool:
            return "true or false"
        return " ".join(x for x in (self.unit, self.bounds) if x) or "any text"

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (already of the right type), or None."""
        if self.choices and value not in self.choices:
            return f"use {_words(self.choices)}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.kind in (int, float) and not all(
            (
                self.ge is None or value >= self.ge,
                self.gt is None or value > self.gt,
                self.le is None or value <= self.le,
                self.lt is None or value < self.lt,
            )
        ):
            return f"must be {self.bounds}" + (f" ({self.unit})" if self.unit else "")
        if self.check is not None and not self.check(value):
            return self.valid_text
        return None


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _words(items: tuple[str, ...]) -> str:
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false)")


SCHEMA = "bench.option"


def _opt(default: Any, group: str, label: str, help: str, **spec: Any) -> Any:
    """A ``LoadOptions`` field: its default, and everything else about the option as metadata."""
    return field(default=default, metadata={SCHEMA: {"group": group, "label": label, "help": help, **spec}})


def _url_scheme(url: str) -> bool:
    return not url or url.startswith(("redis://", "rediss://", "unix://"))


def _adapter_form(spec: str) -> bool:
    return not spec or ":" in spec


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """Every load option, in web UI order. To add one: a field here, then its use (bench.load_ops,
    bench.adapters …); parser, validation, argv, scenario key and `bench options` follow."""

    backend: str = _opt(
        "auto",
        "Backend",
        "auto, standalone or cluster",
        "auto (seed env vars, else `bench up` state, else embedded standalone), "
        "standalone or cluster (the `bench up` one, else an embedded one)",
        choices=("auto", "standalone", "cluster"),
        scenario=False,  # a scenario's own `backend` key picks the embedded backend per cell
    )
    redis_url: str = _opt(
        "",
        "Backend",
        "external server, redis://host:port/db",
        "external standalone server, e.g. redis://127.0.0.1:6379/0",
        check=_url_scheme,
        valid_text="expected redis://host:port/db (or rediss://, unix://)",
        secret=True,
        scenario=False,
    )
    cluster_nodes: str = _opt(
        "", "Backend", "external cluster, host:port,…", "external cluster, host:port[,host:port...]", scenario=False
    )
    pool_size: int = _opt(
        50,
        "Pool",
        "connections per process (per node)",
        "connection pool size per process (per node on a cluster)",
        ge=1,
    )
    pool_blocking: bool = _opt(
        False, "Pool", "wait for a free connection", "blocking pool: wait for a free connection instead of failing"
    )
    producer_weight: int = _opt(1, "Load shape", "producer users' share", "weight of ProducerUser", ge=0)
    consumer_weight: int = _opt(1, "Load shape", "consumer users' share", "weight of ConsumerUser", ge=0)
    mixed_weight: int = _opt(
        0, "Load shape", "produce-and-consume users' share", "weight of MixedUser (produces and consumes)", ge=0
    )
    raw_lpush_weight: int = _opt(
        0,
        "Load shape",
        "bare LPUSH baseline users' share",
        "weight of RawLpushUser (bare redis-py LPUSH: the harness baseline)",
        ge=0,
    )
    rate: float = _opt(
        0.0,
        "Load shape",
        "open loop, tasks/s in all; 0 = closed",
        "open loop: total target enqueue rate in tasks/s over all processes; 0 = closed loop",
        ge=0,
        unit="tasks/s",
    )
    batch_size: int = _opt(
        1,
        "Load shape",
        "tasks per enqueue call",
        "producers enqueue this many tasks per call (enqueue_many when > 1)",
        ge=1,
        le=10_000,
    )
    payload_bytes: int = _opt(
        100, "Load shape", "bytes per task", "task payload size in bytes", ge=0, le=MAX_PAYLOAD, unit="bytes"
    )
    processing_ms: float = _opt(
        0.0,
        "Load shape",
        "simulated work per task, ms",
        "simulated processing time per task in consumers",
        ge=0,
        unit="ms",
    )
    warmup: float = _opt(
        0.0,
        "Load shape",
        "first seconds left out of the stats",
        "seconds at the start excluded from statistics",
        ge=0,
        unit="seconds",
    )
    queue_name: str = _opt("bench", "Queue", "logical queue name", "logical queue name", scenario=False)
    engine: str = _opt(
        "list", "Queue", "list or stream", "TaskQueue engine: list or stream", choices=("list", "stream")
    )
    queue: str = _opt(
        "",
        "Queue",
        "adapter module:factory (empty = TaskQueue)",
        "queue adapter module:factory (default bench.adapters:taskqueue; e.g. bench.adapters:rq)",
        check=_adapter_form,
        valid_text="expected module:factory, e.g. bench.adapters:rq ('' = TaskQueue)",
    )
    partitions: int = _opt(
        0,
        "Queue",
        "0 = one per master",
        "queue partitions; 0 = one per master (1 on standalone)",
        ge=0,
        le=1024,
    )
    visibility_timeout: float = _opt(
        30.0,
        "Queue",
        "s until an un-acked task returns",
        "seconds before an un-acked task is redelivered",
        gt=0,
        unit="seconds",
    )
    dequeue_timeout: float = _opt(
        0.5,
        "Queue",
        "blocking dequeue wait, s",
        "blocking dequeue timeout in s (below the 5 s socket timeout)",
        ge=0,
        lt=5.0,
        unit="seconds",
    )
    sync_replicas: int = _opt(
        0,
        "Queue",
        "replicas to WAIT for (cluster)",
        "enqueue WAITs until this many replicas have the task (cluster)",
        ge=0,
        le=5,
        cluster_only=True,
    )
    results_dir: str = _opt(
        "",
        "Results",
        "folder (empty = results/locust-<time>)",
        "where to write µs results (default results/locust-<timestamp>)",
        scenario=False,
    )
    audit: bool = _opt(
        False,
        "Results",
        "track every task id: lost, duplicated",
        "record every task id to count lost and duplicated tasks",
        scenario=False,  # bench run audits every cell
    )
    ack_log: bool = _opt(
        False,
        "Results",
        "acked ids per partition (partition faults)",
        "record acknowledged enqueue ids per partition every 20 ms (partition faults)",
        scenario=False,  # bench run turns it on for cells with a network fault
    )
    checkpoint_interval: float = _opt(
        30.0,
        "Results",
        "s between summary.json rewrites",
        "seconds between rewrites of summary.json during a run (soaks)",
        gt=0,
        unit="seconds",
    )

    @classmethod
    def from_namespace(cls, ns: Any) -> LoadOptions:
        values = {f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)}
        return cls(**values).validated()

    def validated(self) -> LoadOptions:
        """Itself, or a UsageError naming every bad value (one line)."""
        problems = []
        for opt in OPTIONS:
            value = getattr(self, opt.dest)
            if (wrong := opt.problem(value)) is not None:
                problems.append(f"{opt.flag} {repr(value) if isinstance(value, str) else value}: {wrong}")
        if self.queue and _adapter_form(self.queue):
            from .adapters import resolve

            try:
                resolve(self.queue)
            except UsageError as exc:
                problems.append(str(exc))
        if self.redis_url and self.cluster_nodes:
            problems.append("give --redis-url or --cluster-nodes, not both")
        if self.cluster_nodes:
            from taskqueue.settings import parse_nodes

            try:
                parse_nodes(self.cluster_nodes)
            except ValueError as exc:
                problems.append(f"--cluster-nodes: {exc}")
        if not any(getattr(self, w) for w in WEIGHTS) and all(getattr(self, w) >= 0 for w in WEIGHTS):
            problems.append("user weights must not all be 0")
        if problems:
            raise UsageError("; ".join(problems))
        return self

    def target(self) -> Target | None:
        """The external target these options name, if any."""
        return Target.of(self.redis_url, self.cluster_nodes)

    def as_args(self) -> list[str]:
        """Command-line form, for starting ``locust`` from ``bench run``; secret options are
        left out (every local user can read a command line): they travel in ``as_env()``."""
        args = []
        for opt in OPTIONS:
            value = getattr(self, opt.dest)
            if value != opt.default and not opt.secret:
                args += [opt.flag, str(value).lower() if isinstance(value, bool) else str(value)]
        return args

    def as_env(self) -> dict[str, str]:
        """The secret options as the env vars Locust's parser reads them from."""
        return {opt.env: str(getattr(self, opt.dest)) for opt in OPTIONS if opt.secret and getattr(self, opt.dest)}


OPTIONS: tuple[Option, ...] = tuple(Option(f.name, f.default, **f.metadata[SCHEMA]) for f in fields(LoadOptions))

# The web UI's start form. Locust lists custom options in one "Custom parameters" box, in the
# order they were added, labelled "<Dest In Title Case> (<help>)"; it has no groups or labels of
# its own. So the options are added group by group (LoadOptions' field order), and their help
# there is the short label, after the group's name. The full help is in `bench options`.
WEB_UI_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = tuple(
    (group, tuple((o.dest, o.label) for o in OPTIONS if o.group == group))
    for group in dict.fromkeys(o.group for o in OPTIONS)
)


def grouped_options() -> list[tuple[str, Option, str]]:
    """(group, option, web UI label) for every option, in start-form order."""
    return [(o.group, o, o.label) for group, _ in WEB_UI_GROUPS for o in OPTIONS if o.group == group]


def format_options() -> str:
    """Every load option by group, as `bench options` prints it (plain text: no wrapping)."""
    lines = ["Options of `locust -f locustfiles/queue.py` (also env vars, and fields in the web UI's start form):"]
    current = ""
    for group, opt, _ in grouped_options():
        if group != current:
            current = group
            lines += ["", f"{group}:"]
        default = opt.default if opt.default not in ("", None) else '""'
        kind = {int: " INT", float: " NUMBER", bool: " true|false"}.get(opt.kind, " TEXT")
        choices = f" {{{','.join(opt.choices)}}}" if opt.choices else kind
        valid = f", {opt.bounds}" if opt.bounds else ""
        lines.append(f"  {opt.flag}{choices}  [env {opt.env}, default {default}{valid}]")
        lines.append(f"      {opt.help}")
    lines += [
        "",
        "Locust's own options: `locust --help` (it prints its help before loading the locustfile, so it does not "
        "list these). --stop-timeout defaults to "
        f"{DEFAULT_STOP_TIMEOUT_S:g} s here, so operations in flight at the stop are completed and counted.",
    ]
    return "\n".join(lines)


def add_load_options(parser: Any) -> None:
    """Add every load option to Locust's parser (configargparse: env vars, web UI fields), grouped
    and labelled for the web UI's start form. Locust's web-UI flags are only understood by its
    parser itself, not by argument groups."""
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"type": opt.type, "help": f"{opt.group}: {opt.label}", "dest": opt.dest}
        if opt.choices:
            kwargs["choices"] = opt.choices
        kwargs |= {"env_var": opt.env, "default": opt.default, "include_in_web_ui": True, "is_secret": opt.secret}
        parser.add_argument(opt.flag, **kwargs)
