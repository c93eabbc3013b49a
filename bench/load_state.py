"""One Locust process's state for the run, shared by the event listeners (``bench.load``), the
timed operations (``bench.load_ops``) and the results writer (``bench.load_results``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from taskqueue.codec import IdFactory

from . import adapters, backends
from .acklog import AckLog
from .audit import AuditLog
from .metrics import PartitionTimeline, Recorder
from .options import LoadOptions
from .results import IntervalWriter
from .schedule import Schedule
from .target import Target


class LoadState:
    """Everything one Locust process holds for the run."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.opts = LoadOptions()
        self.recorder = Recorder()
        self.queue: adapters.QueueAdapter | None = None
        self.schedule: Schedule | None = None
        self.rate_share: tuple[int, int] = (0, 0)  # a worker's (senders here, senders in all) behind its rate
        self.embedded: backends.Backend | None = None
        self.target: Target | None = None
        self.payload = b""
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.counters: dict[str, int] = {"empty_dequeues": 0, "lease_lost_acks": 0}
        self.greenlets: list[Any] = []
        self.effective: dict[str, Any] = {}
        self.results_dir: Path | None = None
        self.workers = 0
        self.used_results_dirs: set[Path] = set()
        self.sink: IntervalWriter | None = None  # this test's per-second files
        self.audit: AuditLog | None = None
        self.acks: AckLog | None = None  # --ack-log: acknowledged ids per partition (bench.acklog)
        self.timeline = PartitionTimeline()
        self.worker_timelines: dict[str, dict[str, Any]] = {}
        self.worker_successes: dict[str, dict[str, Any]] = {}
        self.coverage_warned = False
        self.open_loop: dict[str, float] | None = None  # this process: planned/issued, set at test stop
        self.worker_open_loop: dict[str, dict[str, float]] = {}
        self.fallback_ids = IdFactory()  # task ids for enqueues attempted while no queue could be built
        self.logged_results: dict[Path, tuple[Any, ...]] = {}  # results folder -> counts last logged

    @property
    def is_master(self) -> bool:
        return isinstance(self.environment and self.environment.runner, MasterRunner)

    @property
    def is_worker(self) -> bool:
        return isinstance(self.environment and self.environment.runner, WorkerRunner)


STATE = LoadState()
