"""Read-only checks of the user's own Redis before a run starts anything: one line per problem.

``check_external`` PINGs the server (standalone) or every given node, then reads CLUSTER INFO
and maps the cluster (cluster), with short timeouts and no retries. Nothing is written, flushed
or configured. Errors are classified by ``taskqueue.errors.classify`` and become a UsageError
(exit 2) saying what failed and what to check. Passwords never appear: URLs go through
``redact_url`` and server messages are scrubbed of the password.
"""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from taskqueue.errors import REDIS_ERRORS, classify
from taskqueue.settings import parse_nodes, redact_url

from .backend_kinds import cluster_info
from .errors import UsageError

SCHEMES = ("redis", "rediss", "unix")
URL_FORM = "redis://[[user]:password@]host:port/db, rediss://… (TLS) or unix:///path/to/redis.sock"
DEFAULT_TIMEOUT = 3.0  # seconds for connect and for each reply


def _password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _scrub(text: str, secret: str | None) -> str:
    text = " ".join(text.split())  # one line
    return text.replace(secret, "***") if secret else text


def check_url(url: str) -> None:
    """Only what redis-py can connect to: redis://, rediss://, unix://."""
    shown = redact_url(url)
    scheme, sep, _ = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise UsageError(f"--redis-url {shown}: no scheme; use {URL_FORM}")
    if scheme.lower() not in SCHEMES:
        raise UsageError(f"--redis-url {shown}: scheme {scheme}:// is not supported; use {URL_FORM}")
    try:
        path = urlsplit(url).path
    except ValueError as exc:
        raise UsageError(f"--redis-url {shown}: {exc}; use {URL_FORM}") from None
    if scheme.lower() != "unix" and not re.fullmatch(r"/?(\d+)?", path):
        raise UsageError(f"--redis-url {shown}: database {path[1:]!r} must be a number, e.g. /0; use {URL_FORM}")


def _no_retry() -> dict[str, Any]:
    return {"retry": Retry(NoBackoff(), 0)}


def problem(exc: BaseException, target: str, *, timeout: float, has_password: bool, secret: str | None = None) -> str:
    """The one-line message for a failed read-only check of ``target`` (a redacted URL or host:port)."""
    kind = classify(exc)
    text = _scrub(str(exc), secret)
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, socket.gaierror) or isinstance(cause, socket.gaierror) or "not known" in text:
        return f"cannot reach {target}: unknown host — check the host name"
    if "No such file or directory" in text:
        return f"cannot reach {target}: no such socket file — is the server running? check the path"
    if kind == "connection_refused":
        return f"cannot reach {target}: connection refused — is the server running? check host/port"
    if kind == "timeout":
        return (
            f"cannot reach {target}: no answer within {timeout:g} s (timeout) — is the host up and is it a "
            "Redis server? check host/port and firewalls"
        )
    if kind == "auth":
        if "NOPERM" in text or "no permissions" in text.lower():
            return f"{target}: the user may not run read-only commands ({text}) — check its ACL"
        if has_password:
            return f"{target} refused the credentials ({text}) — check user:password in the URL"
        return f"{target} requires a password ({text}) — give it in the URL: redis://:PASSWORD@host:port/db"
    if kind == "connection_lost":
        return (
            f"cannot reach {target}: the connection was closed ({text}) — is it a Redis server? "
            "a TLS server needs rediss://"
        )
    if kind == "cluster_unreachable":
        return (
            f"cannot reach the cluster at {target}: {text} — every node it announces (CLUSTER NODES) "
            "must be reachable from here"
        )
    return f"{target}: {kind}: {text}"


def check_external(
    redis_url: str | None = None, cluster_nodes: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Raise UsageError (one line) unless the server or cluster answers; read-only."""
    if redis_url:
        _check_standalone(redis_url, timeout)
    if cluster_nodes:
        _check_cluster(cluster_nodes, timeout)


def _check_standalone(url: str, timeout: float) -> None:
    check_url(url)
    shown, secret = redact_url(url), _password(url)
    has_password = secret is not None or "@" in url.partition("://")[2].split("/", 1)[0]
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, **_no_retry())
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--redis-url {shown}: {_scrub(str(exc), secret)}; use {URL_FORM}") from None
    try:
        with client:
            client.ping()
            cluster_enabled = _info_field(client, "cluster", "cluster_enabled")
    except REDIS_ERRORS as exc:
        raise UsageError(problem(exc, shown, timeout=timeout, has_password=has_password, secret=secret)) from None
    if cluster_enabled in (1, "1"):
        raise UsageError(f"{shown} is a Redis Cluster node: use --cluster-nodes host:port instead of --redis-url")


def _info_field(client: redis.Redis, section: str, field: str) -> Any:
    """One INFO field, or None when INFO is not allowed (ACL, renamed command)."""
    try:
        return client.info(section).get(field)
    except redis.ResponseError:
        return None


def _check_cluster(nodes_text: str, timeout: float) -> None:
    try:
        nodes = parse_nodes(nodes_text)
    except ValueError as exc:
        raise UsageError(f"--cluster-nodes: {exc}") from None
    failures: list[tuple[str, BaseException]] = []
    reachable: tuple[str, int] | None = None
    for host, port in nodes:
        client = redis.Redis(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout, **_no_retry()
        )
        try:
            with client:
                client.ping()
                info = cluster_info(client)
        except REDIS_ERRORS as exc:
            if classify(exc) == "auth":  # a configuration problem: the other nodes will say the same
                raise UsageError(_cluster_auth(f"{host}:{port}", exc)) from None
            if "cluster support disabled" in str(exc):
                raise UsageError(
                    f"{host}:{port} is a standalone server (cluster support disabled): use "
                    f"--redis-url redis://{host}:{port}/0 instead of --cluster-nodes"
                ) from None
            failures.append((f"{host}:{port}", exc))
            continue
        reachable = (host, port)
        state = info.get("cluster_state", "?")
        if state != "ok":
            slots = info.get("cluster_slots_ok", "?")
            raise UsageError(
                f"the cluster at {host}:{port} reports cluster_state:{state} ({slots}/16384 slots ok) — wait "
                f"until it is ok (`bench status --cluster-nodes {nodes_text}`) or fix the cluster"
            )
        break
    if reachable is None:
        if len(failures) == 1:
            node, error = failures[0]
            raise UsageError(problem(error, f"cluster node {node}", timeout=timeout, has_password=False))
        listed = ", ".join(f"{node} ({classify(error).replace('_', ' ')})" for node, error in failures)
        raise UsageError(f"cannot reach any cluster node: {listed} — is the cluster running? check --cluster-nodes")
    _check_cluster_map(*reachable, timeout=timeout)


def _cluster_auth(target: str, exc: BaseException) -> str:
    return (
        f"cluster node {target} requires a password ({_scrub(str(exc), None)}) — --cluster-nodes cannot carry "
        "one: use a cluster without requirepass"
    )


def _check_cluster_map(host: str, port: int, *, timeout: float) -> None:
    """The cluster client maps the slots and PINGs every node it announces: a node announced at an
    address this machine cannot reach (a container's internal IP …) is found here, not mid-run."""
    try:
        client = RedisCluster(
            host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout, **_no_retry()
        )
    except REDIS_ERRORS as exc:
        raise UsageError(problem(exc, f"{host}:{port}", timeout=timeout, has_password=False)) from None
    try:
        client.ping(target_nodes=RedisCluster.ALL_NODES)
    except REDIS_ERRORS as exc:
        raise UsageError(problem(exc, f"{host}:{port}", timeout=timeout, has_password=False)) from None
    finally:
        client.close()
