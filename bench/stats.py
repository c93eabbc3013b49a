"""Summary math: percentiles from HDR histograms, repeat medians, spread and stability. No Redis."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from .metrics import HIGHEST_US, clamped

PERCENTILES = {"p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p999_us": 99.9, "p9999_us": 99.99}
UNSTABLE_SPREAD = 0.10  # repeats spreading more than 10 % of their median
SPREAD_FIELDS = ("ops_per_s", "p50_us", "p99_us", "p999_us")


def summarize(hist: HdrHistogram, duration_s: float) -> dict[str, Any]:
    """count, ops/s over ``duration_s``, mean, percentiles and max, all latencies in µs."""
    count = hist.get_total_count()
    summary: dict[str, Any] = {
        "count": count,
        "ops_per_s": round(count / duration_s, 1) if duration_s > 0 else 0.0,
        "mean_us": round(mean_us(hist), 1) if count else None,
    }
    values = hist.get_percentile_to_value_dict(list(PERCENTILES.values())) if count else {}
    for key, pct in PERCENTILES.items():
        summary[key] = values.get(pct) if count else None
    summary["max_us"] = hist.get_max_value() if count else None
    # a percentile at or above the range's top is a bound: tables print "≥ <range> (N clamped)"
    summary["clamped"] = clamped(hist)
    summary["highest_trackable_us"] = hist.highest_trackable_value
    return summary


def at_top(stats: dict[str, Any] | None, key: str) -> bool:
    """``stats[key]`` (a percentile or max, µs) lies at the top of its histogram's range: values
    slower than the range were clamped there, so it is a lower bound, not a measurement. Stats
    written before ``highest_trackable_us`` existed had a 60 s range for every operation."""
    value = (stats or {}).get(key)
    top = (stats or {}).get("highest_trackable_us") or HIGHEST_US
    return value is not None and value >= top


def range_text(us: float) -> str:
    """86_400_000_000 -> "24 h", 60_000_000 -> "60 s"."""
    for scale, unit in ((3_600e6, "h"), (1e6, "s"), (1e3, "ms")):
        if us >= scale:
            return f"{us / scale:g} {unit}"
    return f"{us:g} µs"


def clamped_text(stats: dict[str, Any]) -> str:
    """Text such as "≥ 24 h (3,120 clamped)": what a cell at the top of the range prints instead of a number."""
    top = stats.get("highest_trackable_us") or HIGHEST_US
    n = stats.get("clamped")
    return f"≥ {range_text(top)} ({n:,.0f} clamped)" if n else f"≥ {range_text(top)} (clamped)"


def latency_cell(stats: dict[str, Any] | None, key: str, plain: Callable[[Any], str]) -> str:
    """``plain(stats[key])``, unless the value is at the top of the range (``clamped_text``)."""
    return clamped_text(stats or {}) if at_top(stats, key) else plain((stats or {}).get(key))


def mean_us(hist: HdrHistogram) -> float:
    """``hist.get_mean_value()``, the same number, vectorised: hdrh walks every recorded value in
    Python (0.3 s for six whole-run histograms of a 30-minute soak), and a checkpoint written that
    slowly stalls the load process it runs in."""
    if not hist.total_count:
        return 0.0
    counts = np.ctypeslib.as_array(hist.counts, shape=(hist.counts_len,))
    index = np.flatnonzero(counts)
    bucket = (index >> hist.sub_bucket_half_count_magnitude) - 1
    sub_bucket = (index & (hist.sub_bucket_half_count - 1)) + hist.sub_bucket_half_count
    first = bucket < 0
    sub_bucket[first] -= hist.sub_bucket_half_count
    bucket[first] = 0
    shift = bucket + hist.unit_magnitude
    # the middle of each count's equivalent range: its lowest value + half the range (hdrh's "median equivalent")
    middle = (sub_bucket << shift) + ((1 << shift) >> 1)
    total = sum(c * m for c, m in zip(counts[index].tolist(), middle.tolist(), strict=True))  # exact, as hdrh
    return float(total) / hist.total_count


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
