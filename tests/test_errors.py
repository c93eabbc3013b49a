"""Error translation: every redis-py failure becomes one typed queue error with a stable kind.

The first part is pure (no Redis): one case per redis-py exception class, pinning the kind, the
TaskQueueError subclass and the audit outcome. The second part checks that every public
TaskQueue method goes through the translation point (client methods stubbed to raise). The last
part uses real servers: an unreachable cluster and a password-protected standalone server.
"""

from __future__ import annotations

import errno
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from conftest import SERVER_PASSWORD
from redis import exceptions as rex
from redis.cluster import ClusterNode

from bench.audit import outcome_of
from bench.ports import LOOPBACK
from bench.servers import RedisServer
from taskqueue import AccessDenied, PoolExhausted, QueueFull, QueueUnavailable, Task, TaskQueue, TaskQueueError
from taskqueue import queue as queue_module
from taskqueue.engines import make_engine
from taskqueue.errors import AMBIGUOUS_KINDS, REDIS_ERRORS, DeadlineExceeded, classify, translate

pytestmark = pytest.mark.client  # make test-latest runs this file under the newest redis-py too


def _chained(exc: BaseException, cause: BaseException) -> BaseException:
    """``exc`` as redis-py raises it: ``raise exc from cause``."""
    try:
        raise exc from cause
    except BaseException as raised:
        return raised


UNREACHABLE = "Redis Cluster cannot be connected. Please provide at least one reachable node: "
# redis-py 8.2's subclass of RedisClusterException; under 8.1 its base raises the same shapes (the
# classification reads the cause, not the subclass), so these cases run under both.
UNREACHABLE_ERROR: type[rex.RedisClusterException] = getattr(
    rex, "RedisClusterUnreachableError", rex.RedisClusterException
)
WRITTEN = redis.Connection(host="127.0.0.1", port=1)  # a checked-out connection: the command went out on it
NEVER_CONNECTED = ClusterNode("127.0.0.1", 1)  # redis-py's .connection when it never got one


def _on(exc: BaseException, connection: object) -> BaseException:
    """``exc`` as the cluster client raises it: ``.connection`` names where it failed."""
    exc.connection = connection  # type: ignore[attr-defined]
    return exc


def _unreachable_instead_of(command_error: BaseException) -> BaseException:
    """redis-py 8.2, once a refresh after the command's failure reached no node: the command's error
    is the cause and the context is suppressed (redis.cluster._error_to_raise)."""
    outage = UNREACHABLE_ERROR(UNREACHABLE + "operation_timeout=1s ran out before connecting")
    outage.__cause__ = command_error
    outage.__suppress_context__ = True
    return outage


# (id, exception, kind, typed error class, audit outcome of an enqueue failing this way)
CASES: list[tuple[str, BaseException, str, type[TaskQueueError], str]] = [
    (
        "ConnectionError-ECONNREFUSED-cause",
        _chained(
            rex.ConnectionError("Error connecting to 127.0.0.1:1."), ConnectionRefusedError(errno.ECONNREFUSED, "")
        ),
        "connection_refused",
        QueueUnavailable,
        "rejected",
    ),
    (
        "ConnectionError-refused-message",
        rex.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
        "connection_refused",
        QueueUnavailable,
        "rejected",
    ),
    (
        "ConnectionError-other",
        rex.ConnectionError("Connection closed by server."),
        "connection_lost",
        QueueUnavailable,
        "ambiguous",
    ),
    ("TimeoutError", rex.TimeoutError("Timeout reading from socket"), "timeout", QueueUnavailable, "ambiguous"),
    # socket.timeout is the builtin TimeoutError (asserted below).
    ("builtin-TimeoutError", TimeoutError("timed out"), "timeout", QueueUnavailable, "ambiguous"),
    (
        "AuthenticationError",
        rex.AuthenticationError("invalid username-password pair or user is disabled."),
        "auth",
        AccessDenied,
        "rejected",
    ),
    (
        "AuthenticationError-NOAUTH",
        rex.AuthenticationError("Authentication required."),
        "auth",
        AccessDenied,
        "rejected",
    ),
    (
        "AuthenticationWrongNumberOfArgsError",
        rex.AuthenticationWrongNumberOfArgsError("wrong number of arguments for 'auth' command"),
        "auth",
        AccessDenied,
        "rejected",
    ),
    (
        "AuthorizationError",
        rex.AuthorizationError("you are not authorized to view this ocsp certificate"),
        "auth",
        AccessDenied,
        "rejected",
    ),
    (
        "ExternalAuthProviderError",
        rex.ExternalAuthProviderError("problem with LDAP service"),
        "auth",
        AccessDenied,
        "rejected",
    ),
    (
        "NoPermissionError",
        rex.NoPermissionError("this user has no permissions to run the 'evalsha' command"),
        "auth",
        AccessDenied,
        "rejected",
    ),
    (
        "ResponseError-WRONGPASS",
        rex.ResponseError("WRONGPASS invalid username-password pair or user is disabled."),
        "auth",
        AccessDenied,
        "rejected",
    ),
    ("ResponseError-NOAUTH", rex.ResponseError("NOAUTH Authentication required."), "auth", AccessDenied, "rejected"),
    (
        "ResponseError-NOPERM",
        rex.ResponseError("NOPERM User u has no permissions to run the 'set' command"),
        "auth",
        AccessDenied,
        "rejected",
    ),
    (
        "OutOfMemoryError",
        rex.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        "oom",
        QueueFull,
        "rejected",
    ),
    (
        "ResponseError-OOM",
        rex.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
        "oom",
        QueueFull,
        "rejected",
    ),
    ("ClusterDownError", rex.ClusterDownError("The cluster is down"), "clusterdown", QueueUnavailable, "rejected"),
    (
        "ResponseError-CLUSTERDOWN",
        rex.ResponseError("CLUSTERDOWN Hash slot not served"),
        "clusterdown",
        QueueUnavailable,
        "rejected",
    ),
    ("MasterDownError", rex.MasterDownError("Link with MASTER is down"), "clusterdown", QueueUnavailable, "rejected"),
    ("ClusterError-TTL", rex.ClusterError("TTL exhausted."), "clusterdown", QueueUnavailable, "rejected"),
    (
        "TryAgainError",
        rex.TryAgainError("Multiple keys request during rehashing of slot"),
        "tryagain",
        QueueUnavailable,
        "rejected",
    ),
    ("MovedError", rex.MovedError("3999 127.0.0.1:6381"), "moved", QueueUnavailable, "rejected"),
    ("AskError", rex.AskError("3999 127.0.0.1:6381"), "moved", QueueUnavailable, "rejected"),
    (
        "ReadOnlyError",
        rex.ReadOnlyError("You can't write against a read only replica."),
        "readonly",
        QueueUnavailable,
        "rejected",
    ),
    (
        "RedisClusterException-unreachable",
        _chained(
            rex.RedisClusterException(UNREACHABLE + "Error 111 connecting to 127.0.0.1:1. Connection refused."),
            rex.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
        ),
        "cluster_unreachable",
        QueueUnavailable,
        "rejected",
    ),
    (
        "RedisClusterException-unreachable-no-cause",
        rex.RedisClusterException(UNREACHABLE + "Timeout connecting to server"),
        "cluster_unreachable",
        QueueUnavailable,
        "rejected",
    ),
    (
        "RedisClusterException-not-a-cluster",
        rex.RedisClusterException("Cluster mode is not enabled on this node"),
        "cluster_unreachable",
        QueueUnavailable,
        "rejected",
    ),
    (
        "RedisClusterException-auth-cause",
        _chained(
            rex.RedisClusterException(UNREACHABLE + "invalid username-password pair or user is disabled."),
            rex.AuthenticationError("invalid username-password pair or user is disabled."),
        ),
        "auth",
        AccessDenied,
        "rejected",
    ),
    (
        "RedisClusterException-slots-not-covered",
        rex.RedisClusterException("All slots are not covered after query all startup_nodes. 5461 of 16384 covered..."),
        "clusterdown",
        QueueUnavailable,
        "rejected",
    ),
    (
        "RedisClusterException-misuse",
        rex.RedisClusterException("No way to dispatch this command to Redis Cluster. Missing key."),
        "other",
        TaskQueueError,
        "rejected",
    ),
    (
        "SlotNotCoveredError",
        rex.SlotNotCoveredError('Slot "42" is not covered by the cluster.'),
        "clusterdown",
        QueueUnavailable,
        "rejected",
    ),
    (
        "CrossSlotTransactionError",
        rex.CrossSlotTransactionError("all keys must map to the same key slot"),
        "other",
        TaskQueueError,
        "rejected",
    ),
    (
        "ClusterCrossSlotError",
        rex.ClusterCrossSlotError("Keys in request don't hash to the same slot"),
        "other",
        TaskQueueError,
        "rejected",
    ),
    (
        "MaxConnectionsError",
        rex.MaxConnectionsError("Too many connections"),
        "pool_exhausted",
        PoolExhausted,
        "rejected",
    ),
    (
        "ConnectionError-no-connection-available",
        rex.ConnectionError("No connection available."),
        "pool_exhausted",
        PoolExhausted,
        "rejected",
    ),
    # LOADING is a ConnectionError in redis-py, retried like one: kept as connection_lost
    # (ambiguous), since an earlier attempt of the same call may have been applied.
    (
        "BusyLoadingError",
        rex.BusyLoadingError("Redis is loading the dataset in memory"),
        "connection_lost",
        QueueUnavailable,
        "ambiguous",
    ),
    ("ResponseError-generic", rex.ResponseError("ERR unknown command 'FOO'"), "other", TaskQueueError, "rejected"),
    # The shapes a frozen or killed cluster master gives (seen on real servers, tests/test_sent.py).
    (
        "8.2-unreachable-instead-of-a-timeout-on-a-written-connection",
        _unreachable_instead_of(_on(rex.TimeoutError("Timeout reading from 127.0.0.1:7000"), WRITTEN)),
        "timeout",
        QueueUnavailable,
        "ambiguous",
    ),
    (
        "8.2-unreachable-instead-of-a-lost-connection-on-a-written-connection",
        _unreachable_instead_of(_on(rex.ConnectionError("Connection closed by server."), WRITTEN)),
        "connection_lost",
        QueueUnavailable,
        "ambiguous",
    ),
    (
        "8.2-unreachable-instead-of-a-refused-connect",
        _unreachable_instead_of(
            _on(rex.ConnectionError("Error 111 connecting to 127.0.0.1:7000. Connection refused."), NEVER_CONNECTED)
        ),
        "cluster_unreachable",
        QueueUnavailable,
        "rejected",
    ),
    (
        "8.2-unreachable-instead-of-a-connect-timeout",
        _unreachable_instead_of(_on(rex.TimeoutError("Timeout connecting to server"), NEVER_CONNECTED)),
        "cluster_unreachable",
        QueueUnavailable,
        "rejected",
    ),
    (
        "8.2-unreachable-mapping-the-cluster",
        _chained(
            UNREACHABLE_ERROR(UNREACHABLE + "Error 111 connecting to 127.0.0.1:7000. Connection refused."),
            rex.ConnectionError("Error 111 connecting to 127.0.0.1:7000. Connection refused."),
        ),
        "cluster_unreachable",
        QueueUnavailable,
        "rejected",
    ),
    (
        "8.1-unreachable-after-the-deadline",
        _chained(
            rex.RedisClusterException(UNREACHABLE + "operation_timeout=1s ran out before connecting"),
            _chained(
                DeadlineExceeded("operation_timeout=1s ran out before connecting"),
                _on(rex.TimeoutError("Timeout reading from socket"), WRITTEN),
            ),
        ),
        "timeout",
        QueueUnavailable,
        "ambiguous",
    ),
    (
        # The last attempt never got a connection; an earlier one may have sent the write: kept ambiguous.
        "8.1-and-8.2-timeout-on-a-node-after-retries",
        _on(rex.TimeoutError("Timeout reading from socket"), NEVER_CONNECTED),
        "timeout",
        QueueUnavailable,
        "ambiguous",
    ),
]


@pytest.mark.parametrize(("exc", "kind", "error_class", "outcome"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_translation(exc: BaseException, kind: str, error_class: type[TaskQueueError], outcome: str) -> None:
    assert classify(exc) == kind
    err = translate(exc)
    assert type(err) is error_class
    assert err.kind == kind
    assert err.cause is exc
    assert str(err).startswith(f"{kind}: ")
    assert outcome_of(err.kind) == outcome
    assert translate(err) is err and classify(err) == kind


REDIS_PY_CASES = [c for c in CASES if c[0] not in {"builtin-TimeoutError"}]


@pytest.mark.parametrize("exc", [c[1] for c in REDIS_PY_CASES], ids=[c[0] for c in REDIS_PY_CASES])
def test_the_queue_catches_every_redis_py_error(exc: BaseException) -> None:
    assert isinstance(exc, REDIS_ERRORS)


def test_auth_is_a_rejection_and_new_kinds_are_outages() -> None:
    assert "auth" not in AMBIGUOUS_KINDS and "cluster_unreachable" not in AMBIGUOUS_KINDS
    assert outcome_of(None) == "ok"
    assert not issubclass(rex.RedisClusterException, rex.RedisError)  # why REDIS_ERRORS exists
    assert socket.timeout is TimeoutError


# -- every public method goes through the translation point (no server: client stubbed) ----------

STUBBED = ("execute_command", "pipeline", "script_load", "info", "delete", "scan_iter", "xpending_range", "close")
RAISED = {
    "cluster_unreachable": lambda: _chained(
        rex.RedisClusterException(UNREACHABLE + "Connection refused."), rex.ConnectionError("Connection refused.")
    ),
    "clusterdown": lambda: rex.SlotNotCoveredError('Slot "7" is not covered by the cluster.'),
    "auth": lambda: rex.AuthenticationError("Authentication required."),
}
TASK = Task("t-1", b"x", 0, 1, 0, "1-0")
METHODS: dict[str, Callable[[TaskQueue], Any]] = {
    "enqueue": lambda q: q.enqueue(b"x"),
    "enqueue_many": lambda q: q.enqueue_many([b"x", b"y"]),
    "dequeue": lambda q: q.dequeue(),
    "dequeue_many": lambda q: q.dequeue_many(2, timeout=0.01),
    "ack": lambda q: q.ack(TASK),
    "nack": lambda q: q.nack(TASK),
    "requeue_expired": lambda q: q.requeue_expired(),
    "depth": lambda q: q.depth(),
    "inflight": lambda q: q.inflight(),
    "purge": lambda q: q.purge(),
    "describe": lambda q: q.describe(),
    "close": lambda q: q.close(),
}


def _stub(client: redis.Redis, monkeypatch: pytest.MonkeyPatch, make: Callable[[], BaseException]) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise make()

    for name in STUBBED:
        monkeypatch.setattr(client, name, fail)


@pytest.fixture
def offline_queue() -> Iterator[Callable[..., TaskQueue]]:
    """Queues on a port nothing listens on: the list engine's constructor does no I/O."""

    def make(engine: str = "list", **kwargs: Any) -> TaskQueue:
        q = TaskQueue("redis://127.0.0.1:1/0", **kwargs)
        if engine != "list":
            q.engine = make_engine(engine, q)  # prepare() would talk to Redis
        return q

    yield make


@pytest.mark.parametrize("kind", sorted(RAISED))
@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("engine", ["list", "stream"])
def test_every_method_raises_typed(
    offline_queue: Callable[..., TaskQueue], monkeypatch: pytest.MonkeyPatch, engine: str, method: str, kind: str
) -> None:
    q = offline_queue(engine)
    _stub(q.client, monkeypatch, RAISED[kind])
    with pytest.raises(TaskQueueError) as info:
        METHODS[method](q)
    assert info.value.kind == kind
    assert isinstance(info.value.__cause__, REDIS_ERRORS)


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_replicated_enqueue_raises_typed(
    offline_queue: Callable[..., TaskQueue], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    q = offline_queue(sync_replicas=1)
    _stub(q.client, monkeypatch, RAISED[kind])
    with pytest.raises(TaskQueueError) as info:
        q.enqueue(b"x")
    assert (info.value.kind, info.value.partition) == (kind, 0)


def test_constructor_raises_typed_and_closes_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream engine's constructor creates the consumer groups: its failure comes out typed."""
    built: list[redis.Redis] = []
    closed: list[bool] = []
    real_build = queue_module.build_standalone

    def build(url: str, settings: Any) -> redis.Redis:
        client = real_build(url, settings)
        _stub(client, monkeypatch, RAISED["cluster_unreachable"])
        monkeypatch.setattr(client, "close", lambda: closed.append(True))
        built.append(client)
        return client

    monkeypatch.setattr(queue_module, "build_standalone", build)
    with pytest.raises(QueueUnavailable) as info:
        TaskQueue("redis://127.0.0.1:1/0", engine="stream")
    assert info.value.kind == "cluster_unreachable"
    assert len(built) == 1 and closed == [True]


def test_wrong_url_scheme_stays_a_value_error() -> None:
    with pytest.raises(ValueError, match="scheme"):
        TaskQueue("http://127.0.0.1:1/0")


# -- real servers ---------------------------------------------------------------------------------


def test_unreachable_cluster_raises_queue_unavailable() -> None:
    with pytest.raises(QueueUnavailable) as info:
        TaskQueue(cluster_nodes="127.0.0.1:1")
    assert info.value.kind == "cluster_unreachable"
    assert isinstance(info.value.cause, rex.RedisClusterException)
    assert outcome_of(info.value.kind) == "rejected"


def _url(server: RedisServer, credentials: str) -> str:
    return f"redis://{credentials}{LOOPBACK}:{server.port}/0"


@pytest.mark.parametrize(
    "credentials", [":wrong-pw@", "", "pinger:wrong-pw@"], ids=["wrong-password", "no-password", "wrong-user-password"]
)
def test_bad_credentials_raise_access_denied(password_server: RedisServer, credentials: str) -> None:
    # The list engine's constructor does no I/O: the first command (enqueue) meets the refusal.
    q = TaskQueue(_url(password_server, credentials), name=f"t-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(AccessDenied) as info:
            q.enqueue(b"x")
        assert info.value.kind == "auth"
        assert outcome_of(info.value.kind) == "rejected"
    finally:
        q.close()
    # The stream engine creates its consumer groups in the constructor: it fails there.
    with pytest.raises(AccessDenied):
        TaskQueue(_url(password_server, credentials), engine="stream")


def test_missing_permission_raises_access_denied(password_server: RedisServer) -> None:
    q = TaskQueue(_url(password_server, f"pinger:{SERVER_PASSWORD}@"), name=f"t-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(AccessDenied) as info:
            q.enqueue(b"x")
        assert info.value.kind == "auth"
        assert isinstance(info.value.cause, rex.NoPermissionError)
    finally:
        q.close()


def test_right_password_works(password_server: RedisServer) -> None:
    q = TaskQueue(_url(password_server, f":{SERVER_PASSWORD}@"), name=f"t-{uuid.uuid4().hex[:8]}")
    try:
        task_id = q.enqueue(b"x")
        task = q.dequeue(timeout=0.5)
        assert task is not None and task.id == task_id and q.ack(task)
        q.purge()
    finally:
        q.close()
