"""Summary math: percentiles from HDR histograms, repeat medians, spread and stability. No Redis."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

PERCENTILES = {"p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p999_us": 99.9, "p9999_us": 99.99}
UNSTABLE_SPREAD = 0.10  # repeats spreading more than 10 % of their median
SPREAD_FIELDS = ("ops_per_s", "p50_us", "p99_us", "p999_us")


def summarize(hist: HdrHistogram, duration_s: float) -> dict[str, Any]:
    """count, ops/s over ``duration_s``, mean, percentiles and max, all latencies in µs."""
    count = hist.get_total_count()
    summary: dict[str, Any] = {
        "count": count,
        "ops_per_s": round(count / duration_s, 1) if duration_s > 0 else 0.0,
        "mean_us": round(hist.get_mean_value(), 1) if count else None,
    }
    for key, pct in PERCENTILES.items():
        summary[key] = hist.get_value_at_percentile(pct) if count else None
    summary["max_us"] = hist.get_max_value() if count else None
    return summary


def spread(values: Sequence[float]) -> float:
    """(max - min) / median; 0 for fewer than two values."""
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return 0.0
    mid = statistics.median(vals)
    return (max(vals) - min(vals)) / mid if mid else 0.0


def combine_repeats(repeats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One operation over N repeats: each field's median, plus min/max/spread of the main fields
    and ``unstable`` when any of them spreads more than 10 %."""
    if not repeats:
        return {}
    out: dict[str, Any] = {}
    for key in repeats[0]:
        vals: list[Any] = [r.get(key) for r in repeats if r.get(key) is not None]
        out[key] = statistics.median(vals) if vals else None
    out["repeats"] = len(repeats)
    unstable = []
    for key in SPREAD_FIELDS:
        vals = [float(r[key]) for r in repeats if r.get(key) is not None]
        if vals:
            out[f"{key}_min"], out[f"{key}_max"] = min(vals), max(vals)
            out[f"{key}_spread"] = round(spread(vals), 4)
            if len(vals) > 1 and spread(vals) > UNSTABLE_SPREAD:
                unstable.append(key)
    out["unstable"] = unstable
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


MIN_REPEATS_FOR_VERDICT = 3


def classify_change(
    a: dict[str, Any],
    b: dict[str, Any],
    key: str,
    higher_is_better: bool,
    repeats: int | None = None,
    strict: bool = False,
) -> str:
    """``regression``/``improvement`` when B moved more than 5 % and outside both runs' spread;
    ``unstable`` when either run spreads more than 10 %; else ``same``. With fewer than 3 ``repeats``
    (the smaller of the two runs) the spread says nothing about noise: such a move is ``changed``,
    unless ``strict`` (``--fail-on-regression``) asks for the verdict anyway."""
    r = ratio(b.get(key), a.get(key))
    if r is None:
        return "n/a"
    noise = max(a.get(f"{key}_spread", 0.0) or 0.0, b.get(f"{key}_spread", 0.0) or 0.0)
    if noise > UNSTABLE_SPREAD:
        return "unstable"
    change = r - 1.0
    if abs(change) <= max(0.05, noise):
        return "same"
    if not strict and repeats is not None and repeats < MIN_REPEATS_FOR_VERDICT:
        return "changed"
    better = change > 0 if higher_is_better else change < 0
    return "improvement" if better else "regression"


def bucket_sub_ms(response_time: float) -> float:
    """Replacement for Locust's ``bucket_response_time``: ~2 significant digits below 100 ms
    (Locust's own rounds anything under 100 ms to a whole ms, so a 180 µs call shows as 0 ms)."""
    if response_time < 1:
        return round(response_time, 2)
    if response_time < 10:
        return round(response_time, 1)
    if response_time < 100:
        return round(response_time)
    return float(round(response_time, -1) if response_time < 1000 else round(response_time, -2))
