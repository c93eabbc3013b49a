"""The load options, defined once: they feed Locust's ``init_command_line_parser`` (with env vars,
shown in the web UI) and the ``bench`` CLI, and are validated into one ``LoadOptions`` dataclass."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .errors import UsageError
from .target import Target

MAX_PAYLOAD = 8 * 1024 * 1024  # well below Redis's 512 MB limit; larger is a mistake in a queue bench


@dataclass(frozen=True)
class Option:
    flag: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    secret: bool = False  # may hold a password: masked in the web UI, passed to children by env var

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "TQB_" + self.dest.upper()


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false)")


OPTIONS: tuple[Option, ...] = (
    Option(
        "--backend",
        str,
        "auto",
        "auto (seed env vars, else `bench up` state, else embedded standalone), "
        "standalone or cluster (the `bench up` one, else an embedded one)",
        ("auto", "standalone", "cluster"),
    ),
    Option("--redis-url", str, "", "external standalone server, e.g. redis://127.0.0.1:6379/0", secret=True),
    Option("--cluster-nodes", str, "", "external cluster, host:port[,host:port...]"),
    Option("--queue-name", str, "bench", "logical queue name"),
    Option("--engine", str, "list", "TaskQueue engine: list or stream", ("list", "stream")),
    Option(
        "--queue", str, "", "queue adapter module:factory (default bench.adapters:taskqueue; e.g. bench.adapters:rq)"
    ),
    Option("--pool-size", int, 50, "connection pool size per process (per node on a cluster)"),
    Option("--pool-blocking", _bool, False, "blocking pool: wait for a free connection instead of failing"),
    Option("--partitions", int, 0, "queue partitions; 0 = one per master (1 on standalone)"),
    Option("--payload-bytes", int, 100, "task payload size in bytes"),
    Option("--batch-size", int, 1, "producers enqueue this many tasks per call (enqueue_many when > 1)"),
    Option("--processing-ms", float, 0.0, "simulated processing time per task in consumers"),
    Option("--rate", float, 0.0, "open loop: total target enqueue rate in tasks/s over all processes; 0 = closed loop"),
    Option("--producer-weight", int, 1, "weight of ProducerUser"),
    Option("--consumer-weight", int, 1, "weight of ConsumerUser"),
    Option("--mixed-weight", int, 0, "weight of MixedUser (produces and consumes)"),
    Option("--raw-lpush-weight", int, 0, "weight of RawLpushUser (bare redis-py LPUSH: the harness baseline)"),
    Option("--visibility-timeout", float, 30.0, "seconds before an un-acked task is redelivered"),
    Option("--dequeue-timeout", float, 0.5, "blocking dequeue timeout in s (below the 5 s socket timeout)"),
    Option("--sync-replicas", int, 0, "enqueue WAITs until this many replicas have the task (cluster)"),
    Option("--warmup", float, 0.0, "seconds at the start excluded from statistics"),
    Option("--audit", _bool, False, "record every task id to count lost and duplicated tasks"),
    Option("--ack-log", _bool, False, "record acknowledged enqueue ids per partition every 20 ms (partition faults)"),
    Option("--results-dir", str, "", "where to write µs results (default results/locust-<timestamp>)"),
    Option("--checkpoint-interval", float, 30.0, "seconds between rewrites of summary.json during a run (soaks)"),
)


# The web UI's start form. Locust lists custom options in one "Custom parameters" box, in the
# order they were added, labelled "<Dest In Title Case> (<help>)"; it has no groups or labels of
# its own. So the options are added group by group, and their help there is a short label that
# starts with the group's name. The full help is in `bench options` and `bench run --help`.
WEB_UI_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Backend",
        (
            ("backend", "auto, standalone or cluster"),
            ("redis_url", "external server, redis://host:port/db"),
            ("cluster_nodes", "external cluster, host:port,…"),
        ),
    ),
    (
        "Pool",
        (
            ("pool_size", "connections per process (per node)"),
            ("pool_blocking", "wait for a free connection"),
        ),
    ),
    (
        "Load shape",
        (
            ("producer_weight", "producer users' share"),
            ("consumer_weight", "consumer users' share"),
            ("mixed_weight", "produce-and-consume users' share"),
            ("raw_lpush_weight", "bare LPUSH baseline users' share"),
            ("rate", "open loop, tasks/s in all; 0 = closed"),
            ("batch_size", "tasks per enqueue call"),
            ("payload_bytes", "bytes per task"),
            ("processing_ms", "simulated work per task, ms"),
            ("warmup", "first seconds left out of the stats"),
        ),
    ),
    (
        "Queue",
        (
            ("queue_name", "logical queue name"),
            ("engine", "list or stream"),
            ("queue", "adapter module:factory (empty = TaskQueue)"),
            ("partitions", "0 = one per master"),
            ("visibility_timeout", "s until an un-acked task returns"),
            ("dequeue_timeout", "blocking dequeue wait, s"),
            ("sync_replicas", "replicas to WAIT for (cluster)"),
        ),
    ),
    (
        "Results",
        (
            ("results_dir", "folder (empty = results/locust-<time>)"),
            ("audit", "track every task id: lost, duplicated"),
            ("ack_log", "acked ids per partition (partition faults)"),
            ("checkpoint_interval", "s between summary.json rewrites"),
        ),
    ),
)


def grouped_options() -> list[tuple[str, Option, str]]:
    """(group, option, web UI label) for every option, in start-form order; an option missing
    from WEB_UI_GROUPS is still added, last, under "Other"."""
    by_dest = {opt.dest: opt for opt in OPTIONS}
    out = [(group, by_dest[dest], label) for group, entries in WEB_UI_GROUPS for dest, label in entries]
    listed = {opt.dest for _, opt, _ in out}
    return out + [("Other", opt, opt.help) for opt in OPTIONS if opt.dest not in listed]


def format_options() -> str:
    """Every load option by group, as `bench options` prints it (plain text: no wrapping)."""
    lines = ["Options of `locust -f locustfiles/queue.py` (also env vars, and fields in the web UI's start form):"]
    current = ""
    for group, opt, _ in grouped_options():
        if group != current:
            current = group
            lines += ["", f"{group}:"]
        default = opt.default if opt.default not in ("", None) else '""'
        kind = {int: " INT", float: " NUMBER", _bool: " true|false"}.get(opt.type, " TEXT")
        choices = f" {{{','.join(opt.choices)}}}" if opt.choices else kind
        lines.append(f"  {opt.flag}{choices}  [env {opt.env}, default {default}]")
        lines.append(f"      {opt.help}")
    lines += [
        "",
        "Locust's own options: `locust --help` (it prints its help before loading the locustfile, so it does not "
        "list these). --stop-timeout defaults to "
        f"{DEFAULT_STOP_TIMEOUT_S:g} s here, so operations in flight at the stop are completed and counted.",
    ]
    return "\n".join(lines)


DEFAULT_STOP_TIMEOUT_S = 10.0  # Locust's --stop-timeout when not given: users finish their operation


def add_load_options(parser: Any, *, locust: bool) -> None:
    """Add every load option to ``parser``: Locust's configargparse parser (``locust=True``: env
    vars and web UI fields, grouped and labelled as above) or a plain argparse parser (env vars
    read for defaults)."""
    # Locust's web-UI flags are only understood by its parser itself, not by argument groups.
    group = parser if locust else parser.add_argument_group("TaskQueue load")
    for group_name, opt, label in grouped_options():
        help_text = f"{group_name}: {label}" if locust else f"{opt.help} [env {opt.env}]"
        kwargs: dict[str, Any] = {"type": opt.type, "help": help_text, "dest": opt.dest}
        if opt.choices:
            kwargs["choices"] = opt.choices
        if locust:
            kwargs |= {"env_var": opt.env, "default": opt.default, "include_in_web_ui": True, "is_secret": opt.secret}
        else:
            kwargs["default"] = opt.type(os.environ[opt.env]) if opt.env in os.environ else opt.default
        group.add_argument(opt.flag, **kwargs)


@dataclass(frozen=True)
class LoadOptions:
    backend: str = "auto"
    redis_url: str = ""
    cluster_nodes: str = ""
    queue_name: str = "bench"
    engine: str = "list"
    queue: str = ""
    pool_size: int = 50
    pool_blocking: bool = False
    partitions: int = 0
    payload_bytes: int = 100
    batch_size: int = 1
    processing_ms: float = 0.0
    rate: float = 0.0
    producer_weight: int = 1
    consumer_weight: int = 1
    mixed_weight: int = 0
    raw_lpush_weight: int = 0
    visibility_timeout: float = 30.0
    dequeue_timeout: float = 0.5
    sync_replicas: int = 0
    warmup: float = 0.0
    audit: bool = False
    ack_log: bool = False
    results_dir: str = ""
    checkpoint_interval: float = 30.0

    @classmethod
    def from_namespace(cls, ns: Any) -> LoadOptions:
        values = {f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)}
        return cls(**values).validated()

    def validated(self) -> LoadOptions:
        problems = []
        if self.backend not in ("auto", "standalone", "cluster"):
            problems.append(f"--backend {self.backend!r}: use auto, standalone or cluster")
        if self.engine not in ("list", "stream"):
            problems.append(f"--engine {self.engine!r}: use list or stream")
        if self.queue:
            from .adapters import resolve

            try:
                resolve(self.queue)
            except UsageError as exc:
                problems.append(str(exc))
        if self.redis_url and self.cluster_nodes:
            problems.append("give --redis-url or --cluster-nodes, not both")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(f"--redis-url {self.redis_url!r}: expected redis://host:port/db")
        if self.cluster_nodes:
            from taskqueue.settings import parse_nodes

            try:
                parse_nodes(self.cluster_nodes)
            except ValueError as exc:
                problems.append(f"--cluster-nodes: {exc}")
        if self.pool_size < 1:
            problems.append(f"--pool-size {self.pool_size}: must be >= 1")
        if not 0 <= self.partitions <= 1024:
            problems.append(f"--partitions {self.partitions}: use 0 (auto) .. 1024")
        if not 0 <= self.payload_bytes <= MAX_PAYLOAD:
            problems.append(f"--payload-bytes {self.payload_bytes}: use 0 .. {MAX_PAYLOAD} (8 MiB)")
        if not 1 <= self.batch_size <= 10_000:
            problems.append(f"--batch-size {self.batch_size}: use 1 .. 10000")
        if self.processing_ms < 0:
            problems.append(f"--processing-ms {self.processing_ms}: must be >= 0")
        if self.rate < 0:
            problems.append(f"--rate {self.rate}: must be >= 0 (0 = closed loop)")
        weights = (self.producer_weight, self.consumer_weight, self.mixed_weight, self.raw_lpush_weight)
        if min(weights) < 0 or not any(weights):
            problems.append("user weights must be >= 0 and not all 0")
        if self.visibility_timeout <= 0:
            problems.append(f"--visibility-timeout {self.visibility_timeout}: must be > 0")
        if not 0 <= self.dequeue_timeout < 5.0:
            problems.append(f"--dequeue-timeout {self.dequeue_timeout}: use 0 .. <5 s (the socket timeout)")
        if not 0 <= self.sync_replicas <= 5:
            problems.append(f"--sync-replicas {self.sync_replicas}: use 0..5")
        if not self.checkpoint_interval > 0:
            problems.append(f"--checkpoint-interval {self.checkpoint_interval}: must be > 0 seconds")
        if self.warmup < 0:
            problems.append(f"--warmup {self.warmup}: must be >= 0")
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
