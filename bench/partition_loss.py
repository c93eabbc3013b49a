"""Loss explained: which acknowledged tasks a network partition lost, and when they were acknowledged.
Pure: no Redis.

The audit (``audit-ids.json.gz``) says which tasks were enqueued ok and never delivered after the
drain: *lost*. The clients' ack log (``acked-ids.json.gz``, :mod:`bench.acklog`) says which ids each
queue partition acknowledged, every 20 ms. For a ``partition-master`` cell the window is from the
partition to the moment the isolated master stopped taking writes (its own log: cluster_state
turned fail; the heal if that line is missing): what the isolated master acknowledged in there
lived only on it, and it discarded it when it rejoined as a replica. Every lost id should lie in
that set; :func:`explain` counts both, their overlap, and where in time the lost ones were acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyroaring import BitMap

from .acklog import AckLog
from .audit import AuditLog
from .cells import fault_timeline


def _size(bitmaps: dict[str, BitMap]) -> int:
    return sum(len(b) for b in bitmaps.values())


def _overlap(a: dict[str, BitMap], b: dict[str, BitMap]) -> int:
    return sum(bm.intersection_cardinality(b[prefix]) for prefix, bm in a.items() if prefix in b)


def explain(
    audit: AuditLog,
    acks: AckLog,
    partitions: Iterable[int],
    window: tuple[float, float],
    start_epoch: float,
    window_end_source: str = "",
) -> dict[str, Any]:
    """Lost vs acknowledged by ``partitions`` in ``window`` (epoch s; buckets overlapping it count)."""
    faulted = sorted(set(partitions))
    start, end = window
    lost, lost_other = audit.lost_ids()
    in_window = acks.acked(faulted, start, end)
    in_window_other = acks.acked_other(faulted, start, end)
    acked_anywhere = acks.acked(acks.partitions)
    lost_n = _size(lost) + len(lost_other)
    lost_in = _overlap(lost, in_window) + len(lost_other & in_window_other)
    acked_n = _size(in_window) + len(in_window_other)
    unlocated = lost_n - _overlap(lost, acked_anywhere) - len(lost_other & acks.acked_other(acks.partitions))
    by_time: list[list[float | int]] = []
    for p in acks.partitions:
        for bucket, prefixes in sorted(acks.buckets.get(p, {}).items()):
            n = sum(lost[prefix].intersection_cardinality(bm) for prefix, bm in prefixes.items() if prefix in lost)
            if n:
                by_time.append([round(bucket * acks.bucket_s - start_epoch, 3), p, n])
    return {
        "partitions": faulted,
        "window_start_s": round(start - start_epoch, 3),
        "window_end_s": round(end - start_epoch, 3),
        "window_end_source": window_end_source,
        "bucket_s": acks.bucket_s,
        "acked_in_window": acked_n,
        "lost": lost_n,
        "lost_in_window": lost_in,
        "lost_outside_window": lost_n - lost_in,
        "lost_not_in_ack_log": unlocated,
        "lost_share_of_acked_in_window": round(lost_in / acked_n, 4) if acked_n else None,
        "lost_by_time": by_time,  # [s from load start (bucket start), partition, lost ids acknowledged then]
    }


def headline(loss: dict[str, Any]) -> str:
    """One line for the console and the report."""
    share = loss.get("lost_share_of_acked_in_window")
    lines = (
        f"lost {loss['lost']:,} acknowledged tasks; the isolated master acknowledged {loss['acked_in_window']:,} "
        f"in the window {loss['window_start_s']:.2f}–{loss['window_end_s']:.2f} s"
    )
    if loss["lost"]:
        lines += f"; {loss['lost_in_window']:,} of the lost inside it"
        if share is not None:
            lines += f" ({100 * share:.1f}% of what it acknowledged there)"
        if loss["lost_outside_window"]:
            lines += f", {loss['lost_outside_window']:,} OUTSIDE it"
    return lines


def before_fault(rep_dir: Path, until_s: float, ops: Iterable[str] = ("enqueue", "dequeue")) -> dict[str, Any]:
    """Each operation's rate and latency over the whole seconds before the fault (its per-second
    HdrHistogram intervals, ``hlog/<op>.hlog``, merged): what a protection costs when nothing is wrong."""
    from .metrics import new_histogram
    from .results import read_hlog

    out: dict[str, Any] = {}
    for op in ops:
        path = rep_dir / "hlog" / f"{op}.hlog"
        if not path.exists():
            continue
        merged, seconds = new_histogram(op), 0.0
        for begin, length, hist in read_hlog(path):
            if begin + length <= until_s + 1e-6:
                merged.add(hist)
                seconds += length
        count = merged.get_total_count()
        if count and seconds > 0:
            out[op] = {
                "seconds": round(seconds, 3),
                "count": count,
                "ops_per_s": round(count / seconds, 1),
                "p50_us": merged.get_value_at_percentile(50),
                "p99_us": merged.get_value_at_percentile(99),
            }
    return out


def report_section(cells: list[dict[str, Any]]) -> list[str]:
    """Markdown for the report: per network-fault cell, lost next to what the cut-off master
    acknowledged in the window, rejected/ambiguous, and the cost before the fault."""
    rows = [c for c in cells if (fault_timeline(c) or {}).get("loss")]
    if not rows:
        return []
    out = [
        "## Partitions: where acknowledged tasks are lost",
        "",
        "Acked in window: enqueues the faulted partitions acknowledged to the clients from the partition to the "
        "moment the isolated master stopped taking writes (its own log: cluster_state fail; for a client partition, "
        "the heal), from the clients' own record in 20 ms buckets (a bucket overlapping the window counts). Every "
        "lost task should lie in that set. Before the fault: the whole seconds before the partition, i.e. what the "
        "protection costs when nothing is wrong (one repeat: noise unknown).",
        "",
        "| cell | fault | lost | acked in window | lost inside | lost outside | rejected | ambiguous | window s "
        "| enqueue/s before | enqueue p99 before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for c in rows:
        f, loss, audit = c["fault"], c["fault"]["loss"], c.get("audit") or {}
        before = (f.get("before") or {}).get("enqueue") or {}
        rate = f"{before['ops_per_s']:,.0f}" if before else "–"
        p99 = f"{before['p99_us'] / 1000:.2f} ms" if before else "–"
        out.append(
            f"| {c['id']} | {f['kind']} | {loss['lost']:,} | {loss['acked_in_window']:,} | {loss['lost_in_window']:,} "
            f"| {loss['lost_outside_window']:,} | {audit.get('rejected', 0):,} | {audit.get('ambiguous', 0):,} "
            f"| {loss['window_start_s']:.2f}–{loss['window_end_s']:.2f} | {rate} | {p99} |"
        )
    return [*out, ""]
