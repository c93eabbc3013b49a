"""Parsing ``CLUSTER NODES`` output. Pure: no Redis import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterNodeInfo:
    id: str
    address: str  # host:port (bus port and hostname stripped)
    flags: frozenset[str]
    master_id: str | None
    link_state: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags or "noaddr" in self.flags

    @property
    def suspected(self) -> bool:
        """PFAIL: the node this view came from cannot reach it (one node's suspicion)."""
        return "fail?" in self.flags

    @property
    def marked_failed(self) -> bool:
        """FAIL: a majority of masters agreed it is down (the cluster's decision)."""
        return "fail" in self.flags

    @property
    def slot_count(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.slots)

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def parse_cluster_nodes(text: str) -> list[ClusterNodeInfo]:
    nodes = []
    for line in text.strip().splitlines():
        cols = line.split()
        if len(cols) < 8:
            continue
        address = cols[1].split("@", 1)[0].split(",", 1)[0]
        slots = []
        for part in cols[8:]:
            if part.startswith("["):  # a slot being imported/migrated: not owned yet
                continue
            lo, _, hi = part.partition("-")
            slots.append((int(lo), int(hi or lo)))
        nodes.append(
            ClusterNodeInfo(
                id=cols[0],
                address=address,
                flags=frozenset(cols[2].split(",")),
                master_id=None if cols[3] == "-" else cols[3],
                link_state=cols[7],
                slots=tuple(slots),
            )
        )
    return nodes
