"""Building the redis-py client with the pool the user asked for, and reading back what it got.

redis-py 8 quirks handled here: ``RedisCluster(startup_nodes=[{"host":…}])`` raises
AttributeError (it wants ``ClusterNode``), and ``max_connections_per_node`` is silently ignored
(the pool stays at its default). We pass ``max_connections`` (per node) and check it afterwards.

The operation deadline (``operation_timeout``): redis-py's Retry and sockets know nothing of a
deadline, so with one set the client is built from deadline-aware parts that read the running
call's deadline from ``DEADLINE`` (a context variable: per thread and per greenlet):

- ``DeadlineConnection`` caps each attempt's connect, send and read timeout to the time left,
  and fails with ``DeadlineExceeded`` (dropping the connection) once none is left;
- ``DeadlineRetry`` stops retrying when the deadline has passed and never sleeps beyond it;
- ``DeadlineBlockingConnectionPool`` waits for a free connection at most the time left.

Without ``operation_timeout`` the client is built exactly as before: no per-call cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import SENTINEL
from redis.retry import Retry

from .errors import DeadlineExceeded
from .settings import QueueSettings, redact_url

Client = redis.Redis | RedisCluster
T = TypeVar("T")

# The running public call's (deadline on time.monotonic(), operation_timeout); None: unbounded.
DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("taskqueue_deadline", default=None)


def time_left() -> float | None:
    """Seconds left before the running call's deadline (may be <= 0); None outside a bounded call."""
    scope = DEADLINE.get()
    return None if scope is None else scope[0] - time.monotonic()


def _expired(before: str) -> DeadlineExceeded:
    scope = DEADLINE.get()
    limit = f"{scope[1]:g}s" if scope else "?"
    return DeadlineExceeded(f"operation_timeout={limit} ran out before {before}")


if TYPE_CHECKING:  # what the mixin is mixed into, for the type checker; at run time a plain mixin
    _MixedInto = redis.Connection
else:
    _MixedInto = object


class _DeadlineMixin(_MixedInto):
    """Per attempt: socket timeouts capped to the time left; none left, DeadlineExceeded.

    Mixed into redis-py's connection classes (TCP, TLS, unix socket), in front of them in the MRO."""

    def _arm(self, before: str) -> None:
        left = time_left()
        sock = self._sock
        if left is not None and left <= 0:
            if sock is not None:  # a request may be in flight on it: never reuse this connection
                self.disconnect()
            raise _expired(before)
        if sock is None:
            return
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

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sock is None:
            self.connect_check_health(check_health=False)
        self._arm("sending")
        super().send_packed_command(command, check_health)

    def read_response(
        self,
        disable_decoding: bool = False,
        *,
        timeout: Any = SENTINEL,
        disconnect_on_error: bool = True,
        push_request: bool = False,
    ) -> Any:
        self._arm("reading the reply")
        return super().read_response(
            disable_decoding, timeout=timeout, disconnect_on_error=disconnect_on_error, push_request=push_request
        )


@cache
def deadline_connection_class(base: type[redis.Connection]) -> type[redis.Connection]:
    """``base`` (Connection, SSLConnection, UnixDomainSocketConnection …) bounded by the deadline."""
    if issubclass(base, _DeadlineMixin):
        return base
    return type(f"Deadline{base.__name__}", (_DeadlineMixin, base), {})


DeadlineConnection = deadline_connection_class(redis.Connection)


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


def _retry(settings: QueueSettings) -> Retry:
    retry_class = Retry if settings.operation_timeout is None else DeadlineRetry
    return retry_class(ExponentialWithJitterBackoff(base=0.01, cap=0.5), settings.retries)


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
    if settings.operation_timeout is not None:  # the scheme picked the class (TCP, TLS, unix): bound it
        pool.connection_class = deadline_connection_class(pool.connection_class)
    return redis.Redis(connection_pool=pool)


def build_cluster(nodes: list[tuple[str, int]], settings: QueueSettings) -> RedisCluster:
    (host, port), rest = nodes[0], nodes[1:]
    # The url= form is the one path where RedisCluster honours connection_pool_class, which a
    # blocking pool needs; every node then gets a pool of max_connections.
    kwargs: dict[str, Any] = dict(_common(settings))
    if settings.pool_blocking:
        kwargs.update(connection_pool_class=_blocking_pool_class(settings), timeout=settings.pool_timeout)
    extra = dict(settings.extra)
    if settings.operation_timeout is not None:
        kwargs["connection_class"] = deadline_connection_class(extra.pop("connection_class", redis.Connection))
    return RedisCluster(
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
