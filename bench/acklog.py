"""Which enqueues each partition acknowledged, and when: the clients' own record. Pure: no Redis.

A master cut off from the rest of its cluster keeps acknowledging writes until it notices, and those
writes vanish when it rejoins as a replica. To say *which* acknowledged tasks a partition lost, the
load records, only for cells that ask for it (``--ack-log``), every acknowledged enqueue id per queue
partition in buckets of ``BUCKET_S`` seconds (by the client's clock when the reply arrived). Like the
audit, ids ``<prefix>-<hex counter>`` go into Roaring bitmaps per prefix, so a bucket of consecutive
counters costs a few bytes; ids of any other form are kept as strings.

Written as ``acked-ids.json.gz`` beside ``audit-ids.json.gz``; :mod:`bench.partition_loss` compares
the two.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pyroaring import BitMap

from .audit import split_id

BUCKET_S = 0.02  # 20 ms: the window a lost task is placed in, and the resolution of per-partition throughput
FLUSH_AT = 4096


class AckLog:
    def __init__(self, bucket_s: float = BUCKET_S) -> None:
        self.bucket_s = bucket_s
        # partition -> bucket -> prefix -> counters; ids of other forms under prefix "" as strings
        self.buckets: dict[int, dict[int, dict[str, BitMap]]] = {}
        self.other: dict[int, dict[int, list[str]]] = {}
        self._pending: list[tuple[int, float, list[str]]] = []

    # -- hot path -------------------------------------------------------------------------------

    def record(self, partition: int, at: float, ids: list[str]) -> None:
        """``ids`` acknowledged by ``partition`` at epoch ``at`` (s)."""
        self._pending.append((partition, at, ids))
        if len(self._pending) >= FLUSH_AT:
            self._flush()

    def record_ids(self, partition_for: Callable[[str], int], ids: list[str], at: float) -> None:
        """A successful enqueue (or batch) of ``ids``: each under the partition it went to."""
        if len(ids) == 1:
            self.record(partition_for(ids[0]), at, ids)
            return
        groups: dict[int, list[str]] = {}
        for task_id in ids:
            groups.setdefault(partition_for(task_id), []).append(task_id)
        for partition, group in groups.items():
            self.record(partition, at, group)

    # -- bulk -----------------------------------------------------------------------------------

    def bucket_of(self, at: float) -> int:
        return math.floor(at / self.bucket_s)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for partition, at, ids in pending:
            bucket = self.bucket_of(at)
            for task_id in ids:
                parts = split_id(task_id)
                if parts is None:
                    self.other.setdefault(partition, {}).setdefault(bucket, []).append(task_id)
                    continue
                prefixes = self.buckets.setdefault(partition, {}).setdefault(bucket, {})
                bitmap = prefixes.get(parts[0])
                if bitmap is None:
                    bitmap = prefixes[parts[0]] = BitMap()
                bitmap.add(parts[1])

    def encode(self) -> dict[str, Any]:
        self._flush()
        return {
            "format": "acked-v1",
            "bucket_s": self.bucket_s,
            "partitions": {
                str(p): {
                    str(b): {prefix: bytes(bm.serialize()) for prefix, bm in prefixes.items()}
                    for b, prefixes in buckets.items()
                }
                for p, buckets in self.buckets.items()
            },
            "other": {str(p): {str(b): ids for b, ids in buckets.items()} for p, buckets in self.other.items()},
        }

    def drain(self) -> dict[str, Any]:
        """What was recorded since the last drain (then forgotten here): a worker's report."""
        report = self.encode()
        self.buckets, self.other = {}, {}
        return report

    def merge(self, report: dict[str, Any]) -> None:
        self._flush()
        if float(report.get("bucket_s", self.bucket_s)) != self.bucket_s:
            raise ValueError(f"ack logs with different buckets: {report.get('bucket_s')} vs {self.bucket_s}")
        for p, buckets in (report.get("partitions") or {}).items():
            for b, prefixes in buckets.items():
                mine = self.buckets.setdefault(int(p), {}).setdefault(int(b), {})
                for prefix, data in prefixes.items():
                    bitmap = BitMap.deserialize(data if isinstance(data, bytes) else base64.b64decode(data))
                    if prefix in mine:
                        mine[prefix] |= bitmap
                    else:
                        mine[prefix] = bitmap
        for p, buckets in (report.get("other") or {}).items():
            for b, ids in buckets.items():
                self.other.setdefault(int(p), {}).setdefault(int(b), []).extend(ids)

    def save(self, path: Path) -> None:
        data = self.encode()
        for buckets in data["partitions"].values():
            for prefixes in buckets.values():
                for prefix in prefixes:
                    prefixes[prefix] = base64.b64encode(prefixes[prefix]).decode()
        with gzip.open(path, "wt") as fh:
            json.dump(data, fh)

    @classmethod
    def load(cls, path: Path) -> AckLog:
        with gzip.open(path, "rt") as fh:
            data = json.load(fh)
        log = cls(float(data.get("bucket_s", BUCKET_S)))
        log.merge(data)
        return log

    # -- questions ------------------------------------------------------------------------------

    def bucket_range(self, start: float, end: float) -> range:
        """Buckets overlapping [start, end] (epoch s): a bucket counts when any part of it does."""
        return range(self.bucket_of(start), self.bucket_of(end) + 1)

    def acked(self, partitions: Iterable[int], start: float = -math.inf, end: float = math.inf) -> dict[str, BitMap]:
        """Per prefix, the counters of ids ``partitions`` acknowledged in buckets overlapping [start, end]."""
        self._flush()
        out: dict[str, BitMap] = {}
        lo = -math.inf if start == -math.inf else self.bucket_of(start)
        hi = math.inf if end == math.inf else self.bucket_of(end)
        for p in partitions:
            for b, prefixes in self.buckets.get(p, {}).items():
                if lo <= b <= hi:
                    for prefix, bm in prefixes.items():
                        out[prefix] = out[prefix] | bm if prefix in out else BitMap(bm)
        return out

    def acked_other(self, partitions: Iterable[int], start: float = -math.inf, end: float = math.inf) -> set[str]:
        self._flush()
        lo = -math.inf if start == -math.inf else self.bucket_of(start)
        hi = math.inf if end == math.inf else self.bucket_of(end)
        return {i for p in partitions for b, ids in self.other.get(p, {}).items() if lo <= b <= hi for i in ids}

    def counts(self, partition: int) -> dict[int, int]:
        """Acknowledged enqueues per bucket of one partition (its throughput)."""
        self._flush()
        out = {b: sum(len(bm) for bm in prefixes.values()) for b, prefixes in self.buckets.get(partition, {}).items()}
        for b, ids in self.other.get(partition, {}).items():
            out[b] = out.get(b, 0) + len(ids)
        return out

    @property
    def partitions(self) -> list[int]:
        self._flush()
        return sorted(set(self.buckets) | set(self.other))
