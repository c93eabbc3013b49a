"""Building the redis-py client with the pool the user asked for, and reading back what it got.

redis-py 8 quirks handled here: ``RedisCluster(startup_nodes=[{"host":…}])`` raises
AttributeError (it wants ``ClusterNode``), and ``max_connections_per_node`` is silently ignored
(the pool stays at its default). We pass ``max_connections`` (per node) and check it afterwards.

Every public call runs in a ``CallScope`` (a context variable: per thread and per greenlet), which
its connections use for two things:

- **What was sent.** ``_CallMixin`` (on every connection the queue builds) notes in the scope when
  a command of the call went out and its reply never came (a timeout or a lost connection after
  the send). The translation point then calls the failure ambiguous even when the last attempt's
  error alone looks like a rejection (a retry that found the node refusing connections). The
  connection handshake (HELLO, AUTH, CLIENT SETINFO, READONLY) does not count: it stores nothing.
- **The operation deadline** (``operation_timeout``): redis-py's Retry and sockets know nothing of
  a deadline, so each attempt's connect, send and read timeout is capped to the time left, and
  the call fails with ``DeadlineExceeded`` (dropping the connection) once none is left;
  ``DeadlineRetry`` stops retrying at the deadline and ``DeadlineBackoff`` never sleeps beyond it
  (redis-py 8.2's cluster client sleeps ``retry._backoff`` between its own attempts);
  ``DeadlineBlockingConnectionPool`` waits for a free connection at most the time left.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis import exceptions as rex
from redis.backoff import AbstractBackoff, ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import SENTINEL
from redis.retry import Retry

from .errors import DeadlineExceeded
from .settings import QueueSettings, redact_url

Client = redis.Redis | RedisCluster
T = TypeVar("T")


@dataclass(slots=True)
class CallScope:
    """The running public call: its deadline (on time.monotonic(); None: unbounded), its
    ``operation_timeout``, and whether a command it sent lost its reply (``"timeout"`` or
    ``"connection_lost"``, the first such failure; None while every sent command was answered)."""

    deadline: float | None = None
    timeout: float | None = None
    reply_lost: str | None = None


CALL: ContextVar[CallScope | None] = ContextVar("taskqueue_call", default=None)


def time_left() -> float | None:
    """Seconds left before the running call's deadline (may be <= 0); None outside a bounded call."""
    scope = CALL.get()
    return None if scope is None or scope.deadline is None else scope.deadline - time.monotonic()


def _expired(before: str) -> DeadlineExceeded:
    scope = CALL.get()
    limit = f"{scope.timeout:g}s" if scope is not None and scope.timeout is not None else "?"
    return DeadlineExceeded(f"operation_timeout={limit} ran out before {before}")


# What a send or a read raises when the bytes may have gone out and no reply came back.
_NO_REPLY_ERRORS = (rex.ConnectionError, rex.TimeoutError, OSError)


def _note_reply_lost(error: BaseException) -> None:
    scope = CALL.get()
    if scope is not None and scope.reply_lost is None and not isinstance(error, rex.AuthenticationError):
        timed_out = isinstance(error, rex.TimeoutError | TimeoutError)
        scope.reply_lost = "timeout" if timed_out else "connection_lost"


if TYPE_CHECKING:  # what the mixin is mixed into, for the type checker; at run time a plain mixin
    _MixedInto = redis.Connection
else:
    _MixedInto = object


class _CallMixin(_MixedInto):
    """Per attempt: a lost reply noted in the call's scope. With ``_bounded`` (``operation_timeout``
    set, see ``_DeadlineMixin``) also the deadline, armed before each send and read.

    Mixed into redis-py's connection classes (TCP, TLS, unix socket), in front of them in the MRO.
    A connection not used inside a call (no scope) behaves exactly as redis-py's own. On success it
    costs two Python frames per command: the notes are taken only when a send or a read fails."""

    _in_handshake = False
    _bounded = False

    def _arm(self, before: str) -> None:
        """The deadline's check before a send or a read (``_DeadlineMixin``)."""

    def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        # The handshake (HELLO/AUTH/SETINFO/READONLY) stores nothing: its lost reply is no lost write.
        self._in_handshake = True
        try:
            return super().connect_check_health(*args, **kwargs)
        finally:
            self._in_handshake = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sock is None:  # connect first: a refused connect sent nothing
            self.connect_check_health(check_health=False)
        if self._bounded:
            self._arm("sending")
        try:
            super().send_packed_command(command, check_health)
        except _NO_REPLY_ERRORS as error:
            if not self._in_handshake:
                _note_reply_lost(error)
            raise

    def read_response(
        self,
        disable_decoding: bool = False,
        *,
        timeout: Any = SENTINEL,
        disconnect_on_error: bool = True,
        push_request: bool = False,
    ) -> Any:
        try:
            if self._bounded:
                self._arm("reading the reply")
            return super().read_response(
                disable_decoding, timeout=timeout, disconnect_on_error=disconnect_on_error, push_request=push_request
            )
        except _NO_REPLY_ERRORS as error:  # a reply error (ResponseError) is an answer: not caught here
            if not self._in_handshake:
                _note_reply_lost(error)
            raise


class _DeadlineMixin(_CallMixin):
    """The operation deadline per attempt: connect, send and read timeouts capped to the time left,
    and none left, DeadlineExceeded (dropping the connection)."""

    _bounded = True

    def _arm(self, before: str) -> None:
        left = time_left()
        sock = self._sock
        if left is not None and left <= 0:
            if sock is not None:  # a request may be in flight on it: never reuse this connection
                self.disconnect()
            raise _expired(before)
        if sock is None:
            return
        # Outside a bounded call, the configured timeout again (an earlier bounded call capped it).
        wanted = self.socket_timeout if left is None else min(self.socket_timeout or left, left)
        if sock.gettimeout() != wanted:
            sock.settimeout(wanted)

    def _connect(self) -> Any:
        left = time_left()
        if left is None:
            return super()._connect()
        if left <= 0:
            raise _expired("connecting")
        saved = self.socket_connect_timeout, self.socket_timeout
        self.socket_connect_timeout = min(saved[0] or left, left)
        self.socket_timeout = min(saved[1] or left, left)  # TLS handshake
        try:
            return super()._connect()
        finally:
            self.socket_connect_timeout, self.socket_timeout = saved


@cache
def call_connection_class(base: type[redis.Connection], deadline: bool = False) -> type[redis.Connection]:
    """``base`` (Connection, SSLConnection, UnixDomainSocketConnection …) with the call's scope:
    lost replies noted and, with ``deadline``, the operation deadline kept."""
    mixin = _DeadlineMixin if deadline else _CallMixin
    if issubclass(base, mixin):
        return base
    return type(f"{'Deadline' if deadline else 'Call'}{base.__name__}", (mixin, base), {})


CallConnection = call_connection_class(redis.Connection)


class DeadlineBlockingConnectionPool(redis.BlockingConnectionPool):
    """A blocking pool whose wait for a free connection ends at the deadline too (then the usual
    "No connection available": kind ``pool_exhausted``, nothing was sent on this attempt)."""

    @property
    def timeout(self) -> float | None:
        left = time_left()
        if left is None:
            return self._pool_timeout
        return max(0.0, left if self._pool_timeout is None else min(self._pool_timeout, left))

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._pool_timeout = value


class DeadlineRetry(Retry):
    """redis-py's Retry, but no retry (and no backoff sleep) past the running call's deadline."""

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        self._backoff.reset()
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if self._retries >= 0 and failures > self._retries:
                    raise
                backoff = self._backoff.compute(failures)
                left = time_left()
                if left is not None:
                    if left <= 0 or isinstance(error, DeadlineExceeded):
                        raise
                    backoff = min(backoff, left)
                if backoff > 0:
                    time.sleep(backoff)


class DeadlineBackoff(AbstractBackoff):
    """A backoff whose delay never runs past the running call's deadline. redis-py 8.2's cluster
    client sleeps ``retry._backoff.compute(failures)`` between its attempts itself, outside
    ``Retry.call_with_retry``, so the cap must live in the backoff."""

    def __init__(self, inner: AbstractBackoff) -> None:
        self.inner = inner

    def reset(self) -> None:
        self.inner.reset()

    def compute(self, failures: int) -> float:
        delay = self.inner.compute(failures)
        left = time_left()
        return delay if left is None else max(0.0, min(delay, left))


def _retry(settings: QueueSettings) -> Retry:
    backoff = ExponentialWithJitterBackoff(base=0.01, cap=0.5)
    if settings.operation_timeout is None:
        return Retry(backoff, settings.retries)
    return DeadlineRetry(DeadlineBackoff(backoff), settings.retries)


def _common(settings: QueueSettings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_connect_timeout,
        "max_connections": settings.pool_size,
        "decode_responses": False,
    }


def _blocking_pool_class(settings: QueueSettings) -> type[redis.BlockingConnectionPool]:
    return redis.BlockingConnectionPool if settings.operation_timeout is None else DeadlineBlockingConnectionPool


def build_standalone(url: str, settings: QueueSettings) -> redis.Redis:
    pool_class = _blocking_pool_class(settings) if settings.pool_blocking else redis.ConnectionPool
    extra: dict[str, Any] = {"timeout": settings.pool_timeout} if settings.pool_blocking else {}
    pool = pool_class.from_url(url, retry=_retry(settings), **_common(settings), **extra, **settings.extra)
    # The scheme picked TCP, TLS or unix: that class, with the call's scope.
    pool.connection_class = call_connection_class(pool.connection_class, settings.operation_timeout is not None)
    return redis.Redis(connection_pool=pool)


class _Cluster(RedisCluster):
    """RedisCluster whose default node stays replaced after it failed.

    redis-py 8.2 only *requests* a topology refresh after a timeout and runs it on the next
    attempt; that refresh sets the default node back to the first primary, undoing the
    ``replace_default_node()`` of the failed attempt. A stopped first primary then fails every
    attempt of the constructor's ``COMMAND`` (8.1 connected in about 1 s; 8.2 raised TimeoutError
    after all its retries). So the node that failed as default is avoided while another primary
    is known."""

    _failed_default: str | None = None

    def replace_default_node(self, target_node: ClusterNode = None) -> None:  # type: ignore[assignment]
        failed = self.nodes_manager.default_node
        super().replace_default_node(target_node)
        if target_node is None and failed is not None:
            self._failed_default = failed.name

    def get_default_node(self) -> ClusterNode:
        node = self.nodes_manager.default_node
        if node is not None and node.name == self._failed_default:
            others = [n for n in self.get_primaries() if n.name != self._failed_default]
            if others:
                node = self.nodes_manager.default_node = random.choice(others)
        return node  # type: ignore[return-value]  # None before the first refresh, as in redis-py


def build_cluster(nodes: list[tuple[str, int]], settings: QueueSettings) -> RedisCluster:
    (host, port), rest = nodes[0], nodes[1:]
    # The url= form is the one path where RedisCluster honours connection_pool_class, which a
    # blocking pool needs; every node then gets a pool of max_connections.
    kwargs: dict[str, Any] = dict(_common(settings))
    if settings.pool_blocking:
        kwargs.update(connection_pool_class=_blocking_pool_class(settings), timeout=settings.pool_timeout)
    extra = dict(settings.extra)
    base = extra.pop("connection_class", redis.Connection)
    kwargs["connection_class"] = call_connection_class(base, settings.operation_timeout is not None)
    return _Cluster(
        url=f"redis://{host}:{port}",
        startup_nodes=[ClusterNode(h, p) for h, p in rest],
        retry=_retry(settings),
        require_full_coverage=True,
        **kwargs,
        **extra,
    )


def _redis_py_class(obj: object) -> str:
    """The redis-py class ``obj`` is (our deadline-aware subclasses report their redis-py base)."""
    return next(c.__name__ for c in type(obj).__mro__ if c.__module__.startswith("redis"))


def pool_report(client: Client) -> dict[str, Any]:
    """The pool as the client really has it: class, blocking, max_connections (per node)."""
    if isinstance(client, RedisCluster):
        per_node = {}
        pool_class = None
        blocking = False
        for node in client.get_nodes():
            conn = node.redis_connection
            if conn is None:
                continue
            per_node[node.name] = conn.connection_pool.max_connections
            pool_class = _redis_py_class(conn.connection_pool)
            blocking = isinstance(conn.connection_pool, redis.BlockingConnectionPool)
        sizes = set(per_node.values())
        return {
            "pool_class": pool_class,
            "pool_blocking": blocking,
            "pool_size": sizes.pop() if len(sizes) == 1 else sorted(sizes),
            "pool_size_per_node": per_node,
        }
    pool = client.connection_pool
    return {
        "pool_class": _redis_py_class(pool),
        "pool_blocking": isinstance(pool, redis.BlockingConnectionPool),
        "pool_size": pool.max_connections,
    }


def endpoint_report(client: Client) -> dict[str, Any]:
    if isinstance(client, RedisCluster):
        return {"backend": "cluster", "nodes": sorted(n.name for n in client.get_nodes())}
    kwargs = client.connection_pool.connection_kwargs
    url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    return {"backend": "standalone", "url": redact_url(url)}


def server_version(info: Mapping[str, Any]) -> str | None:
    """The server's own version from its INFO (server section): the one way to read it. Valkey also
    reports a Redis-compatible ``redis_version`` (7.2.4), so its ``valkey_version`` wins when present."""
    found = info.get("valkey_version") or info.get("redis_version")
    return None if found is None else str(found)


def server_report(info: Mapping[str, Any]) -> dict[str, Any]:
    """``server_version`` and ``server_name`` (redis, valkey) of an INFO reply, as results record them."""
    return {"server_version": server_version(info), "server_name": info.get("server_name") or "redis"}
