"""Session fixtures: a real standalone redis-server and a real 6-node cluster, started through the
same backend code users run, always torn down (and killed by the kernel if pytest dies)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bench.backends import BackendSpec, ClusterBackend, StandaloneBackend, start_backend
from bench.ports import free_port
from bench.servers import RedisServer, find_server_bin
from taskqueue import TaskQueue

T = TypeVar("T")

# A suite started in the background of a non-interactive shell (`cmd &`, some CI launchers) inherits
# SIGINT *ignored*, and so would every bench and Locust it starts: the Ctrl-C tests would send it
# in vain. A handler, unlike "ignore", is reset to the default in each child it execs.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail naming ``what`` once
    ``timeout`` seconds have passed. Instead of a sleep that guesses how long something takes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# Low node timeout so failover tests finish quickly; recorded like any other setting.
TEST_NODE_TIMEOUT_MS = 1000


# The slowest files, slowest first (whole files, seconds on 2 cores, measured with --durations=0): run,
# docker, partitions and load ~70-105 each, then ~30-45. `make test`'s workers take whole files in this
# order (--no-loadscope-reorder), so no long file starts last while the other worker idles.
SLOW_FILES_FIRST = (
    "test_run.py",
    "test_docker.py",
    "test_partitions.py",
    "test_run_network.py",
    "test_load.py",
    "test_engines_adapters.py",
    "test_capacity.py",
    "test_queue.py",
    "test_charts.py",
    "test_harness_faults.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """addopts has ``--benchmark-disable``: plain ``pytest`` runs each benchmark once, as a test.
    ``--benchmark-only`` turns benchmarking back on and autosaves into ``--benchmark-storage``
    (so ``--benchmark-compare`` has a previous run). pytest-benchmark reads these options in its
    own ``pytest_configure`` (trylast), i.e. after this hook."""
    if config.getoption("benchmark_only", default=False):
        from pytest_benchmark.utils import get_tag

        config.option.benchmark_disable = False
        if not config.option.benchmark_autosave:
            # What --benchmark-autosave stores: <commit>_<time>[_uncommitted-changes], the file name.
            config.option.benchmark_autosave = get_tag()


NETNS_LOCK_WAIT_S = 900  # the longest one netns test (a whole partitions run) may make another wait


@pytest.fixture
def netns_exclusive() -> Iterator[None]:
    """One network-namespace test at a time across the xdist workers: a test that checks no namespace was
    left behind would otherwise count another worker's live one as its leak."""
    import fcntl

    with open(Path(tempfile.gettempdir()) / "tqb-netns-tests.lock", "w") as fh:
        deadline = time.monotonic() + NETNS_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another namespace test held the lock for over {NETNS_LOCK_WAIT_S} s")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-state")


@pytest.fixture(scope="session")
def standalone(state_dir: Path) -> Iterator[StandaloneBackend]:
    backend = start_backend(BackendSpec("standalone", port=free_port(start=24000), state_dir=state_dir))
    assert isinstance(backend, StandaloneBackend)
    try:
        yield backend
    finally:
        backend.stop()


SERVER_PASSWORD = "S3cret-pw-9f2c"  # never to be seen in a command line, a page, a result or a log


@pytest.fixture(scope="session")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A standalone server with ``requirepass`` SERVER_PASSWORD, and an ACL user ``pinger`` (same
    password) who may only PING. Set with CONFIG SET after start: ``wait_ready`` pings without one."""
    server = RedisServer(find_server_bin(), free_port(start=26500), tmp_path_factory.mktemp("password-server"))
    try:
        server.start()
        with server.client() as r:
            r.acl_setuser("pinger", enabled=True, passwords=[f"+{SERVER_PASSWORD}"], keys=["*"], commands=["+ping"])
            r.config_set("requirepass", SERVER_PASSWORD)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster(state_dir: Path) -> Iterator[ClusterBackend]:
    port = free_port(span=6, start=19000, bus_offset=10000)  # bus ports 29000+: below the ephemeral range
    backend = start_backend(
        BackendSpec("cluster", port=port, state_dir=state_dir, node_timeout_ms=TEST_NODE_TIMEOUT_MS)
    )
    assert isinstance(backend, ClusterBackend)
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture(params=["standalone", "cluster"])
def backend(request: pytest.FixtureRequest) -> StandaloneBackend | ClusterBackend:
    return request.getfixturevalue(request.param)


@pytest.fixture
def engine() -> str:
    """The queue engine; test modules that cover every engine override this with params."""
    return "list"


@pytest.fixture
def make_queue(backend: StandaloneBackend | ClusterBackend, engine: str) -> Iterator:
    """Factory for queues with a unique name on the current backend; purged and closed after."""
    made: list[TaskQueue] = []

    def make(**kwargs: Any) -> TaskQueue:
        kwargs.setdefault("name", f"t-{uuid.uuid4().hex[:8]}")
        kwargs.setdefault("engine", engine)
        queue = TaskQueue(backend.target.redis_url, backend.target.cluster_nodes, **kwargs)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        try:
            queue.purge()
        finally:
            queue.close()


ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "results" / "samples" / "smoke"  # the committed sample run: charts and report tests read it


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``bench`` CLI as a user runs it, from the repository root."""
    cmd = [sys.executable, "-m", "bench", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    """A writable copy of the committed sample run."""
    dest = tmp_path / "run"
    shutil.copytree(SAMPLE, dest)
    return dest


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """Chart tests keep their figures to read the plotted data; close them after each test."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="module")
def stoppable_cluster() -> Iterator[ClusterBackend]:
    """Three masters of the module's own, no replicas, a long node timeout: a stopped master is not failed
    over. Every server is continued before the cluster stops."""
    with tempfile.TemporaryDirectory(prefix="tq-stop-cluster-") as folder:
        port = free_port(span=3, start=26900, bus_offset=10000)
        spec = BackendSpec("cluster", port=port, replicas=0, node_timeout_ms=60_000, state_dir=Path(folder))
        backend = start_backend(spec)
        assert isinstance(backend, ClusterBackend)
        try:
            yield backend
        finally:
            for server in backend.servers:
                server.signal(signal.SIGCONT)
            backend.stop()
