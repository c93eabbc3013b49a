"""Where to connect: one standalone server by URL, or a cluster by its seed nodes. The one value the
harness passes around for it (backends, the load, the drain, adapters, the web UI)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# taskqueue.settings is pure, but importing the taskqueue package imports redis: bench.options and
# bench.scenario (which name a Target) stay free of it, so the parsers are imported where they are used.


@dataclass(frozen=True)
class Target(Mapping[str, str]):
    """Exactly one of ``redis_url`` (``redis://host:port/db``) and ``cluster_nodes`` (``host:port,…``,
    as ``--cluster-nodes`` and ``REDIS_CLUSTER_NODES`` write it); the other is None.

    Read-only, it is also the mapping of the one that is set (``{"redis_url": …}`` or ``{"cluster_nodes": …}``):
    ``dict(target)`` is its JSON form, and an adapter factory written for that dict (``TaskQueue(**connection)``,
    ``connection.get("cluster_nodes")``) keeps working. Typed code reads the attributes."""

    redis_url: str | None = None
    cluster_nodes: str | None = None

    def __post_init__(self) -> None:
        # "" is "not given", as on a command line or in an env var
        object.__setattr__(self, "redis_url", self.redis_url or None)
        object.__setattr__(self, "cluster_nodes", self.cluster_nodes or None)
        if (self.redis_url is None) == (self.cluster_nodes is None):
            raise ValueError("a target is a redis_url or cluster_nodes: give exactly one")

    @classmethod
    def of(cls, redis_url: str | None = None, cluster_nodes: str | None = None) -> Target | None:
        """From options where both may be empty: None when neither is given."""
        return cls(redis_url, cluster_nodes) if redis_url or cluster_nodes else None

    @classmethod
    def cluster(cls, nodes: Iterable[Any]) -> Target:
        """From ``host:port`` strings or ``(host, port)`` pairs (checked)."""
        from taskqueue.settings import parse_nodes

        return cls(cluster_nodes=",".join(f"{h}:{p}" for h, p in parse_nodes(list(nodes))))

    @property
    def kind(self) -> str:
        return "cluster" if self.cluster_nodes else "standalone"

    def nodes(self) -> list[tuple[str, int]]:
        """The cluster's seed nodes as ``(host, port)``; [] for a standalone server."""
        from taskqueue.settings import parse_nodes

        return parse_nodes(self.cluster_nodes) if self.cluster_nodes else []

    def __getitem__(self, key: str) -> str:
        value = {"redis_url": self.redis_url, "cluster_nodes": self.cluster_nodes}.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        yield "cluster_nodes" if self.cluster_nodes else "redis_url"

    def __len__(self) -> int:
        return 1

    def display(self) -> str:
        """URL-like and without any password: Locust's Host field, the web UI, logs."""
        from taskqueue.settings import redact_url

        return f"redis-cluster://{self.cluster_nodes}" if self.cluster_nodes else redact_url(str(self.redis_url))

    def __str__(self) -> str:
        return self.display()

    def __repr__(self) -> str:  # a password never reaches a traceback or a log through repr either
        return f"Target({self.display()!r})"
