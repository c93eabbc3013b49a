"""The results folder of one load run: written by the Locust master, read by reports and charts.

Files (the contract, see results/README.md): ``summary.json``, ``timeseries.csv`` (one row per
second and operation), ``hgrm/<operation>.hgrm`` (HDR percentile distributions, µs) and
``histograms.json`` (encoded cumulative HdrHistograms, to merge across repeats).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .metrics import Recorder, decode, release
from .stats import summarize

TIMESERIES_FIELDS = (
    "t_s",
    "operation",
    "count",
    "span_s",
    "ops_per_s",
    "p50_us",
    "p99_us",
    "max_us",
    "errors",
    "warmup",
)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment_info() -> dict[str, Any]:
    """Host and tool versions recorded next to every result (read once per process: a checkpoint
    should not fork ``git`` inside the load process every 30 s)."""
    return dict(_environment())


@functools.cache
def _environment() -> dict[str, Any]:
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "hostname": platform.node(),
        "host_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "locust": _version("locust"),
        "hdrhistogram": _version("hdrhistogram"),
        "git_commit": commit,
    }


def operations_summary(recorder: Recorder, duration_s: float) -> dict[str, dict[str, Any]]:
    return {op: summarize(hist, duration_s) for op, hist in sorted(recorder.cumulative.items())}


def errors_by_class(counter: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (op, kind), n in sorted(counter.items()):
        out.setdefault(op, {})[kind] = n
    return out


def write_load_run(
    out: Path, recorder: Recorder, meta: dict[str, Any], start_epoch: float, checkpoint: bool = False
) -> Path:
    """Write one load run's files into ``out`` (created). Safe to call again: files are replaced. A
    checkpoint runs inside the load process while it loads, so it leaves out the ``.hgrm`` text (about
    1 s of pure Python for a 30-minute run's histograms: a stall in the very latencies being measured);
    ``histograms.json`` holds the same data, and the last write adds them."""
    out.mkdir(parents=True, exist_ok=True)
    duration = float(meta.get("measured_s") or 0.0)
    summary = {
        **meta,
        "ops": operations_summary(recorder, duration),
        "errors": errors_by_class(recorder.errors),
        "errors_including_warmup": errors_by_class(recorder.errors_all),
    }
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str))
    end_epoch = start_epoch + float(meta.get("elapsed_s") or 0.0)
    if isinstance(recorder.sink, IntervalWriter):  # every closed second is on disk already
        recorder.sink.flush()
    else:
        _write_timeseries(out, recorder.rows, start_epoch, end_epoch)
    if not checkpoint:
        (out / "hgrm").mkdir(exist_ok=True)
        for op, hist in recorder.cumulative.items():
            with open(out / "hgrm" / f"{op}.hgrm", "wb") as fh:
                hist.output_percentile_distribution(fh, 1.0)
    encoded = {op: hist.encode().decode() for op, hist in recorder.cumulative.items()}
    _atomic_write(out / "histograms.json", json.dumps({"unit": "us", "histograms": encoded}))
    return out


def _timeseries_row(row: dict[str, Any], start_epoch: float, end_epoch: float) -> dict[str, Any]:
    span = bucket_span(row["epoch_s"], start_epoch, end_epoch)
    return {
        **{k: row[k] for k in TIMESERIES_FIELDS if k in row},
        "t_s": row["epoch_s"] - int(start_epoch),
        "span_s": span,
        "ops_per_s": round(row["count"] / span, 1) if span > 0 else None,
    }


class IntervalWriter:
    """Streams each closed second to disk as it closes: a ``timeseries.csv`` row, and the
    second's histogram as an interval in ``hlog/<operation>.hlog`` (HdrHistogram's interval-log
    format, read by HistogramLogAnalyzer and HdrHistogramVisualizer; values in µs). A soak then
    holds only the open seconds in memory."""

    def __init__(self, out: Path, start_epoch: float) -> None:
        self.out, self.start_epoch = out, start_epoch
        self.end_epoch = math.inf  # the last second is partial: set when the load stops
        self._csv: Any = None
        self._writer: csv.DictWriter[str] | None = None
        self._logs: dict[str, Any] = {}
        self._opened = False
        self._opened_logs: set[str] = set()

    def second(self, row: dict[str, Any], hist: Any) -> None:
        if self._writer is None:
            self.out.mkdir(parents=True, exist_ok=True)
            # "a" after a close: never truncate what an earlier part of this run wrote
            mode = "a" if self._opened else "w"
            self._csv = open(self.out / "timeseries.csv", mode, newline="")  # noqa: SIM115 (open for the run)
            self._opened = True
            self._writer = csv.DictWriter(self._csv, fieldnames=TIMESERIES_FIELDS)
            if mode == "w":
                self._writer.writeheader()
        self._writer.writerow(_timeseries_row(row, self.start_epoch, self.end_epoch))
        if hist is not None and hist.get_total_count():
            self._log(row["operation"]).write(_interval_line(row["epoch_s"], self.start_epoch, self.end_epoch, hist))

    def _log(self, op: str) -> Any:
        log = self._logs.get(op)
        if log is None:
            (self.out / "hlog").mkdir(parents=True, exist_ok=True)
            fresh = op not in self._opened_logs
            log = self._logs[op] = open(self.out / "hlog" / f"{op}.hlog", "w" if fresh else "a")  # noqa: SIM115
            if fresh:
                log.write(hlog_header(op, self.start_epoch))
                self._opened_logs.add(op)
        return log

    def flush(self) -> None:
        for fh in [self._csv, *self._logs.values()]:
            if fh is not None:
                fh.flush()

    def close(self) -> None:
        for fh in [self._csv, *self._logs.values()]:
            if fh is not None:
                fh.close()
        self._csv, self._writer, self._logs = None, None, {}


def hlog_header(op: str, start_epoch: float) -> str:
    stamp = datetime.fromtimestamp(start_epoch, UTC).isoformat()
    return (
        f"#[TaskQueue Bench: {op} latency per second, values in microseconds]\n"
        "#[Histogram log format version 1.2]\n"
        f"#[StartTime: {start_epoch:.3f} (seconds since epoch), {stamp}]\n"
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
    )


def _interval_line(sec: int, start_epoch: float, end_epoch: float, hist: Any) -> str:
    """One interval, timestamps in s since StartTime; the max column in ms, as the Java tools
    show it (µs values / 1000)."""
    begin = max(0.0, sec - start_epoch)
    length = bucket_span(sec, start_epoch, end_epoch)
    return f"{begin:.3f},{length:.3f},{hist.get_max_value() / 1000:.3f},{hist.encode().decode()}\n"


def read_hlog(path: Path) -> list[tuple[float, float, Any]]:
    """(start s, length s, histogram) per interval of a ``.hlog`` file written above."""
    out = []
    for line in path.read_text().splitlines():
        if not line or line.startswith("#") or line.startswith('"'):
            continue
        begin, length, _max, blob = line.split(",", 3)
        out.append((float(begin), float(length), decode(blob)))
    return out


def hlog_percentiles(path: Path, percentiles: tuple[float, ...] = (50.0, 99.0)) -> list[dict[str, float]]:
    """Per interval of a ``.hlog``: its middle (s from the log's start), length, count and the given
    percentiles in µs. Decodes one interval at a time, so a soak's hour of seconds reads in constant memory."""
    out = []
    with open(path) as fh:
        for line in fh:
            if not line.strip() or line.startswith(("#", '"')):
                continue
            begin, length, _max, blob = line.split(",", 3)
            hist = decode(blob.strip())
            row = {"t_s": round(float(begin) + float(length) / 2, 3), "span_s": float(length)}
            row["count"] = hist.get_total_count()
            row.update({f"p{q:g}_us": float(hist.get_value_at_percentile(q)) for q in percentiles})
            out.append(row)
            release(hist)
    return out


def read_intervals(rep_dir: Path, percentiles: tuple[float, ...] = (50.0, 99.0)) -> dict[str, list[dict[str, float]]]:
    """:func:`hlog_percentiles` for every operation's log in a repeat folder (empty without ``hlog/``)."""
    return {path.stem: hlog_percentiles(path, percentiles) for path in sorted((rep_dir / "hlog").glob("*.hlog"))}


def _write_timeseries(out: Path, rows: list[dict[str, Any]], start_epoch: float, end_epoch: float) -> None:
    with open(out / "timeseries.csv.tmp", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TIMESERIES_FIELDS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r["epoch_s"], r["operation"])):
            writer.writerow(_timeseries_row(row, start_epoch, end_epoch))
    os.replace(out / "timeseries.csv.tmp", out / "timeseries.csv")


def bucket_span(sec: int, start_epoch: float, end_epoch: float) -> float:
    """Seconds of the one-second bucket ``sec`` that the run covered: 1.0 but for a partial
    first or last second (ops in a 0.03 s bucket are not a rate of ops per second)."""
    if end_epoch <= start_epoch:  # still running: the run covers the bucket from its start
        end_epoch = sec + 1.0
    return round(max(0.0, min(sec + 1.0, end_epoch) - max(float(sec), start_epoch)), 3)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
