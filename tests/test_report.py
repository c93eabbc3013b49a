"""Report, CLI tables and `bench compare`: on synthetic summaries of the issue #9 results contract, and on
the committed sample. No Redis."""

from __future__ import annotations

import copy
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE, bench
from rich.console import Console

from bench import cli, report
from bench.runs import Run
from bench.tables import run_table


def op(ops_per_s: float, p99: float, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {
        "count": 1000,
        "ops_per_s": ops_per_s,
        "p50_us": p99 / 2,
        "p99_us": p99,
        "p999_us": p99 * 2,
        "ops_per_s_min": ops_per_s if lo is None else lo,
        "ops_per_s_max": ops_per_s if hi is None else hi,
        "ops_per_s_spread": 0.01,
        "p99_us_min": p99,
        "p99_us_max": p99,
        "p99_us_spread": 0.01,
    }


def cell(
    cid: str,
    backend: str = "standalone",
    repeats: int = 1,
    enqueue: dict[str, Any] | None = None,
    audit: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    version: str = "7.0.15",
    **extra: Any,
) -> dict[str, Any]:
    params = {
        "backend": backend,
        "users": 4,
        "pool_size": 10,
        "pool_blocking": False,
        "maxmemory": "0",
        "maxmemory_policy": "noeviction",
        "fault": "none",
        "repeat": repeats,
        "rate": 0.0,
    }
    params.update(extra.pop("params", {}))
    return {
        "id": cid,
        "params": params,
        "complete": True,
        "unstable": [],
        "ops": {"enqueue": enqueue or op(1000.0, 500.0), "ack": op(500.0, 400.0)},
        "errors": {},
        "audit": {"enqueued_ok": 1000, "rejected": 0, "ambiguous": 0, "duplicates": 0, "lost": 0, **(audit or {})},
        "effective": {"servers": {"nodes": {"127.0.0.1:7000": {"server_version": version}}}},
        "repeats": [{"complete": True, **({"server": server} if server else {})} for _ in range(repeats)],
        **extra,
    }


def run_of(tmp_path: Path, cells: list[dict[str, Any]], hostname: str = "alpha", name: str = "run") -> Run:
    summary = {
        "kind": "scenario-run",
        "scenario": "synthetic",
        "complete": True,
        "environment": {"hostname": hostname, "host_cores": 2, "python": "3.11.7", "redis_py": "8.1.0"},
        "cells": cells,
    }
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return Run(path, summary)


FAULT = {
    "kind": "failover-force",
    "target": "127.0.0.1:7001",
    "injected_at_s": 2.0,
    "suspected_at_s": 2.1,
    "node_failed_at_s": 3.2,
    "promoted_at_s": 3.9,
    "client_saw_new_master_at_s": 6.3,
    "outage_start_s": 2.0,
    "outage_end_s": 6.3,
    "unavailable_s": 4.3,
    "error_window_s": 1.6,
    "healthy_unavailable_s": 0.7,
    "client_recovery_lag_s": 2.4,
    "timeline_source": {"node_failed": "server-log", "promoted": "poll"},
    "restore_ok": True,
    "partitions": {
        "0": {"faulted": True, "unavailable_s": 4.3, "error_window_s": 1.6, "errors": 41},
        "1": {"faulted": False, "unavailable_s": 0.7, "error_window_s": 0.2, "errors": 3},
    },
}


def faulted_cell(**fault: Any) -> dict[str, Any]:
    return cell(
        "kill",
        "cluster",
        audit={"duplicates": 2, "ambiguous": 5},
        fault={**FAULT, **fault},
        params={"fault": "failover-force"},
    )


def headline(run: Run) -> str:
    return next(f for f in report.findings(run) if "of a master" in f)


def test_fault_headline_is_the_success_gap_not_the_error_window(tmp_path: Path) -> None:
    run = run_of(tmp_path, [faulted_cell()])
    text = headline(run)
    assert text.startswith(
        "failover-force of a master: 4.3 s unavailable to clients "
        "(no successful operation on its partition; errors for 1.6 s); healthy masters also unavailable for 0.7 s"
    )
    assert "1.6 s unavailable" not in text and "0 tasks lost, 2 duplicated, 5 ambiguous" in text
    md = report.markdown(run)
    assert "| kill | failover-force | 2.00 | 2.10 | 3.20 | 3.90 | 6.30 | 2.00 | 6.30 | 4.30 | 1.60 | 0.70 | ok |" in md
    assert "kill: node failed: server-log, promoted: poll" in md
    assert "| kill | 0 | yes | 4.30 |" in md and "| kill | 1 | no | 0.70 |" in md  # per-partition table
    no_healthy = headline(run_of(tmp_path, [faulted_cell(healthy_unavailable_s=0.0)], name="b"))
    assert "healthy masters" not in no_healthy


def test_old_fault_summary_is_read_as_an_error_window(tmp_path: Path) -> None:
    old = {k: FAULT[k] for k in ("kind", "target", "injected_at_s", "promoted_at_s", "restore_ok")}
    run = run_of(tmp_path, [faulted_cell() | {"fault": old | {"unavailable_s": 1.6}}])
    assert "errors for 1.6 s (older run" in headline(run) and "1.6 s unavailable" not in headline(run)


def test_lost_upper_bound_is_printed_as_at_most(tmp_path: Path) -> None:
    timed_out = {"lost_upper_bound": 12, "lost_ambiguous_upper_bound": 2, "still_queued": 12}
    c = faulted_cell()
    c["audit"] = {k: v for k, v in c["audit"].items() if k != "lost"} | timed_out
    old = cell("old", audit={"lost": 3, "lost_is_upper_bound": 1})
    run = run_of(tmp_path, [c, old])
    assert "≤ 12 tasks lost (upper bound: drain timed out)" in headline(run)
    md = report.markdown(run)
    assert "| ≤ 12 | ≤ 2 |" in md and "| ≤ 3 | – |" in md
    text = render(run_table(run.summary))
    assert "≤ 12" in text and "drain timed out (lost ≤)" in text


def test_memory_finding_with_upper_bound_and_server_counters(tmp_path: Path) -> None:
    server = {
        "peak_used_memory": 4_000_000,
        "evicted_keys": 60,
        "expired_keys": 1,
        "rejected_connections": 0,
        "stats_reset": True,
    }
    c = cell(
        "lru",
        repeats=2,
        audit={"lost_upper_bound": 40, "still_queued": 7},
        server=server,
        params={"maxmemory": "4mb", "maxmemory_policy": "allkeys-lru"},
    )
    del c["audit"]["lost"]
    run = run_of(tmp_path, [c])
    assert report.findings(run) == [
        "allkeys-lru lost ≤ 40 of 1,000 acknowledged tasks (upper bound: drain timed out with 7 still queued; "
        "maxmemory 4mb); server: 120 keys evicted, 2 keys expired, 0 connections rejected "
        "(counters reset at cell start)"
    ]
    assert "| lru | 4,000,000 | 120 | 2 | 0 | counters reset at cell start |" in report.markdown(run)


OPEN_LOOP = {"rate": 5000, "planned": 20000, "issued": 12400, "backlog": 7600, "achieved_rate": 3100.0}


def test_rate_not_reached_warns_at_the_top(tmp_path: Path) -> None:
    short = cell("open 5k", open_loop=OPEN_LOOP | {"coverage": 0.62, "rate_reached": False})
    fine = cell("open 1k", open_loop=OPEN_LOOP | {"rate": 1000, "coverage": 1.0, "rate_reached": True})
    run = run_of(tmp_path, [short, fine])
    warning = (
        "cell open 5k: offered 5,000/s but only 62.0% of the sends were made (harness- or server-bound); "
        "its latency percentiles are not the latency at that rate"
    )
    md = report.markdown(run)
    assert f"> **WARNING: {warning}.**" in md
    assert md.index(warning) < md.index("## Findings")
    assert report.findings(run)[0] == warning and "cell open 1k: offered" not in md
    assert "| open 5k | 5,000 | 20,000 | 12,400 | 7,600 | 3,100.0 | 62.0 | **NO** |" in md
    assert "| open 1k | 1,000 | 20,000 | 12,400 | 7,600 | 3,100.0 | 100.0 | yes |" in md
    rows = [line for line in md.splitlines() if line.startswith("| open 5k | 1,000 |")]  # throughput table
    assert rows and rows[0].endswith("| rate NOT reached |")
    assert "<strong>WARNING: cell open 5k" in report.to_html(md, tmp_path)
    assert "rate NOT reached" in render(run_table(run.summary))
    # a repeat that fell short counts even if the cell-level block is missing
    only_repeat = cell("rep")
    only_repeat["repeats"][0]["open_loop"] = OPEN_LOOP | {"coverage": 0.5, "rate_reached": False}
    assert "cell rep: offered 5,000/s but only 50.0%" in report.findings(run_of(tmp_path, [only_repeat], name="r"))[0]


def ratio_findings(tmp_path: Path, repeats: int, name: str) -> list[str]:
    sa = cell("sa", repeats=repeats, enqueue=op(1000.0, 500.0, 950.0, 1050.0))
    cl = cell("cl", "cluster", repeats=repeats, enqueue=op(900.0, 750.0, 850.0, 950.0))
    return [f for f in report.findings(run_of(tmp_path, [sa, cl], name=name)) if "× standalone" in f]


def test_ratio_findings_say_how_sure_they_are(tmp_path: Path) -> None:
    one = ratio_findings(tmp_path, 1, "one")
    assert one[0] == (
        "cluster enqueue throughput at 4 users (pool 10, same run, one 2-core host) is 0.90× standalone "
        "(1 repeat, noise unknown)"
    )
    assert len(one) == 3 and all("(1 repeat, noise unknown)" in f for f in one)
    assert all("(2 repeats, noise unknown)" in f for f in ratio_findings(tmp_path, 2, "two"))
    three = ratio_findings(tmp_path, 3, "three")
    assert not any("noise unknown" in f for f in three)
    assert three[0].endswith("is 0.90× standalone (range 0.81..1.00× over 3 repeats)")  # 850/1050 .. 950/950


def compare_runs(tmp_path: Path, repeats: int) -> tuple[Run, Run]:
    a = run_of(tmp_path, [cell("sa", repeats=repeats)], hostname="alpha", name=f"a{repeats}")
    b = run_of(
        tmp_path,
        [cell("sa", repeats=repeats, enqueue=op(700.0, 500.0), version="7.2.4")],
        hostname="beta",
        name=f"b{repeats}",
    )
    return a, b


def verdict(rows: list[dict[str, Any]]) -> str:
    return next(r["verdict"] for r in rows if r["operation"] == "enqueue" and r["metric"] == "ops_per_s")


def test_compare_environment_and_few_repeat_verdicts(tmp_path: Path) -> None:
    a, b = compare_runs(tmp_path, 1)
    assert report.environment_differences(a, b) == ["hostname: A=alpha, B=beta", "server version: A=7.0.15, B=7.2.4"]
    assert report.environment_differences(a, a) == []
    assert verdict(report.compare(a, b)) == "changed"
    assert verdict(report.compare(a, b, strict=True)) == "regression"
    a3, b3 = compare_runs(tmp_path, 3)
    assert verdict(report.compare(a3, b3)) == "regression"


def test_compare_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = compare_runs(tmp_path, 1)
    assert cli.main(["compare", str(a.path), str(b.path)]) == 0
    out = capsys.readouterr().out
    assert "hostname: A=alpha, B=beta" in out and "server version: A=7.0.15, B=7.2.4" in out
    table = out.split("regression/improvement:")[0]
    assert "changed" in table and "regression" not in table and "0.70x" in table
    assert cli.main(["compare", str(a.path), str(b.path), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "regression" in out.split("regression/improvement:")[0] and "1 regression(s)" in out
    assert cli.main(["compare", str(a.path), str(a.path)]) == 0
    assert "environment" not in capsys.readouterr().out


def render(table: Any) -> str:
    console = Console(record=True, width=300, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_run_table_unavailable_is_the_success_gap(tmp_path: Path) -> None:
    text = render(run_table(run_of(tmp_path, [faulted_cell()]).summary))
    assert "4.30" in text and "1.60" not in text


class Tags(HTMLParser):
    """Every element opened and closed, in order: a report whose tags do not balance is not valid HTML."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.problems: list[str] = []
        self.title = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)  # <img ... />: a void element, valid in HTML5
        if tag not in self.VOID:
            self.problems.append(f"<{tag}/> is not a void element")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "title":
            self.title += data


def test_report_html_is_valid_markup_from_markdown_it(tmp_path: Path) -> None:
    pool = [
        cell(f"pool {n}", enqueue=op(100.0 * n, 5000.0 / n), params={"users": 20, "pool_size": n}) for n in (1, 2, 20)
    ]
    run = run_of(tmp_path, [*pool, cell("mem", params={"maxmemory": "6mb"})], name="html")
    (run.path / "charts").mkdir()
    (run.path / "charts" / "throughput.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    report.write_report(run.path)
    page = (run.path / "report.html").read_text()
    tags = Tags()
    tags.feed(page)
    tags.close()
    assert tags.problems == [] and tags.stack == [], (tags.problems, tags.stack)
    assert tags.title == "synthetic: TaskQueue benchmark report"
    assert {"html", "head", "body", "h1", "ul", "li", "table", "thead", "tbody", "th", "td", "img"} <= set(tags.seen)
    assert "<li>pool sweep (standalone, 20 users, non-blocking pool): enqueue throughput peaks at 2,000/s" in page
    assert 'src="data:image/png;base64,' in page and 'src="charts/' not in page
    md = "Some **bold**, `code` and *emphasis* <script>alert(1)</script>\n\n- one\n- two\n"
    body = report.to_html(md, tmp_path, "t <x>")
    assert "<strong>bold</strong>" in body and "<code>code</code>" in body and "<em>emphasis</em>" in body
    assert "<script>" not in body and "<title>t &lt;x&gt;</title>" in body
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in body


def test_a_locust_run_summary_reads_as_one_cell(tmp_path: Path) -> None:
    """The wrapping in bench.runs.load_run alone (the real Locust folder is in test_charts)."""
    from bench.runs import load_run

    load = {
        "kind": "load-run",
        "complete": True,
        "started_at": "2026-01-01T10:00:00+00:00",
        "elapsed_s": 4.0,
        "warmup_s": 1.0,
        "options": {"backend": "auto", "pool_size": 8, "pool_blocking": True, "batch_size": 1, "payload_bytes": 100},
        "locust": {"users": 6, "workers": 0, "run_time_s": 4},
        "effective": {"queue": {"backend": "cluster"}, "servers": {"nodes": {"a": {"maxmemory": 0}}}},
        "audit_during_load": {"enqueued_ok": 10, "undelivered": 3},
        "ops": {"enqueue": op(1000.0, 500.0)},
        "errors": {},
    }
    folder = tmp_path / "locust-x"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(load))
    run = load_run(folder)
    (c,) = run.cells
    assert run.is_load_run and run.repeat_dirs(c) == [folder]
    assert c["id"] == "locust cluster, 6 users, pool 8, blocking"
    assert c["params"]["backend"] == "cluster" and c["params"]["warmup"] == 1.0 and c["params"]["maxmemory"] == "0"
    md = report.markdown(run)
    assert "## Task audit during the load" in md and "| 10 |" in md and "LOST" not in md


# -- report.findings, branch by branch: the exact headlines, and none where none is due ------------------------------


def pooled(cid: str, size: int, rate: float, p99: float, blocking: bool = False, **extra: Any) -> dict[str, Any]:
    return cell(cid, enqueue=op(rate, p99), params={"pool_size": size, "pool_blocking": blocking}, **extra)


def exhausted(c: dict[str, Any], enqueue: int, ack: int = 0) -> dict[str, Any]:
    c["errors"] = {"enqueue": {"pool_exhausted": enqueue, "timeout": 1}, "ack": {"pool_exhausted": ack}}
    return c


def memory(policy: str, audit: dict[str, Any], server: dict[str, Any] | None = None) -> dict[str, Any]:
    return cell(policy, audit=audit, server=server, params={"maxmemory": "4mb", "maxmemory_policy": policy})


def unstable(c: dict[str, Any], ops: list[str]) -> dict[str, Any]:
    c["unstable"] = ops
    return c


SA_CL = "at 4 users (pool 10, same run, one 2-core host) is"
NOISE = "(1 repeat, noise unknown)"
SERVER = {"evicted_keys": 5, "expired_keys": 0, "rejected_connections": 0}
FAULT_TEXT = (
    "failover-force of a master: 4.3 s unavailable to clients (no successful operation on its partition; errors for "
    "1.6 s); healthy masters also unavailable for 0.7 s"
)
FINDINGS = {
    "nothing to compare": ([cell("sa")], []),
    "cluster vs standalone": (
        [cell("sa"), cell("cl", "cluster", enqueue=op(800.0, 1000.0)) | {"ops": {"enqueue": op(800.0, 1000.0)}}],
        [
            f"cluster enqueue throughput {SA_CL} 0.80× standalone {NOISE}",
            f"cluster enqueue p99 is 2.00× standalone {NOISE}: 1,000 vs 500 µs",
        ],
    ),
    "cluster vs standalone, dequeue+ack too": (
        [cell("sa"), cell("cl", "cluster", enqueue=op(2000.0, 250.0))],
        [
            f"cluster enqueue throughput {SA_CL} 2.00× standalone {NOISE}",
            f"cluster dequeue+ack throughput {SA_CL} 1.00× standalone {NOISE}",
            f"cluster enqueue p99 is 0.50× standalone {NOISE}: 250 vs 500 µs",
        ],
    ),
    "cluster at other users: no ratio": ([cell("sa"), cell("cl", "cluster", params={"users": 8})], []),
    "cluster that did nothing: no ratio": (
        [cell("sa"), cell("cl", "cluster", enqueue=op(0.0, 0.0)) | {"ops": {"enqueue": op(0.0, 0.0)}}],
        [],
    ),
    "memory-limited cells are not compared": (
        [cell("sa"), cell("cl", "cluster", params={"maxmemory": "4mb"}, audit={"rejected": 3})],
        [
            "noeviction lost 0 tasks and rejected 3 enqueues with OOM (maxmemory 4mb): producers see QueueFull instead "
            "of silent loss"
        ],
    ),
    "pool exhausted": (
        [exhausted(pooled("p2", 2, 900.0, 500.0), 7, 3)],
        ["pool 2 (non-blocking) at 4 users: 10 operations failed with PoolExhausted"],
    ),
    "blocking pool vs the largest non-blocking one": (
        [pooled("b2", 2, 900.0, 3000.0, True), pooled("n5", 5, 900.0, 1000.0), pooled("n20", 20, 950.0, 500.0)],
        [
            f"a blocking pool of 2 never fails but its enqueue p99 is 6.0× that of pool 20 {NOISE}, from waiting for a "
            "connection"
        ],
    ),
    "blocking pool: an exhausted peer is no peer": (
        [
            pooled("b2", 2, 900.0, 3000.0, True),
            pooled("n5", 5, 900.0, 1000.0),
            exhausted(pooled("n20", 20, 950.0, 500.0), 4),
        ],
        [
            "pool 20 (non-blocking) at 4 users: 4 operations failed with PoolExhausted",
            f"a blocking pool of 2 never fails but its enqueue p99 is 3.0× that of pool 5 {NOISE}, from waiting for a "
            "connection",
        ],
    ),
    "blocking pool without a peer": ([pooled("b2", 2, 900.0, 3000.0, True)], []),
    "pool sweep": (
        [pooled(f"n{s}", s, r, p) for s, r, p in ((1, 400.0, 4000.0), (2, 800.0, 900.0), (5, 950.0, 600.0))]
        + [pooled("n20", 20, 1000.0, 500.0)],
        [
            "pool sweep (standalone, 4 users, non-blocking pool): enqueue throughput peaks at 1,000/s at pool 20; the "
            "smallest pool within 10 % of that is 5; pool 1 gives 0.40× the peak, with enqueue p99 4,000 µs vs 500 µs"
        ],
    ),
    "pool sweep with exhaustion": (
        [exhausted(pooled("n1", 1, 400.0, 4000.0), 5), pooled("n2", 2, 800.0, 900.0), pooled("n5", 5, 1000.0, 0.0)],
        [
            "pool 1 (non-blocking) at 4 users: 5 operations failed with PoolExhausted",
            "pool sweep (standalone, 4 users, non-blocking pool): enqueue throughput peaks at 1,000/s at pool 5; the "
            "smallest pool within 10 % of that is 5; pool 1 gives 0.40× the peak; 5 PoolExhausted errors in the sweep",
        ],
    ),
    "two pool sizes are no sweep": ([pooled("n1", 1, 400.0, 4000.0), pooled("n2", 2, 800.0, 900.0)], []),
    "evicting policy lost tasks": (
        [memory("allkeys-lru", {"lost": 30})],
        ["allkeys-lru lost 30 of 1,000 acknowledged tasks (maxmemory 4mb): never use it for a queue"],
    ),
    "noeviction rejected, counters not reset": (
        [memory("noeviction", {"rejected": 250}, SERVER | {"stats_reset": False})],
        [
            "noeviction lost 0 tasks and rejected 250 enqueues with OOM (maxmemory 4mb): producers see QueueFull "
            "instead of silent loss; server: 5 keys evicted, 0 keys expired, 0 connections rejected (counters since "
            "server start (not reset))"
        ],
    ),
    "server counters without any counter": (
        [memory("noeviction", {}, {"peak_used_memory": 1, "stats_reset": None})],
        [
            "noeviction lost 0 tasks and rejected 0 enqueues with OOM (maxmemory 4mb): producers see QueueFull instead "
            "of silent loss"
        ],
    ),
    "fault, clients back after the promotion": (
        [faulted_cell()],
        [f"{FAULT_TEXT}; clients back 2.40 s after the promotion; 0 tasks lost, 2 duplicated, 5 ambiguous"],
    ),
    "fault, clients back at once, restore failed": (
        [faulted_cell(client_recovery_lag_s=0.02, restore_ok=False, healthy_unavailable_s=0)],
        [
            "failover-force of a master: 4.3 s unavailable to clients (no successful operation on its partition; "
            "errors for 1.6 s); clients back as soon as the promotion was seen; 0 tasks lost, 2 duplicated, "
            "5 ambiguous — RESTORE FAILED"
        ],
    ),
    "fault without a recovery lag": (
        [faulted_cell(client_recovery_lag_s=None, error_window_s=None)],
        [
            "failover-force of a master: 4.3 s unavailable to clients (no successful operation on its partition; "
            "errors for 0.0 s); healthy masters also unavailable for 0.7 s; 0 tasks lost, 2 duplicated, 5 ambiguous"
        ],
    ),
    "unstable cell": (
        [unstable(cell("sa"), ["enqueue", "ack"])],
        ["cell [sa] is unstable: repeats spread more than 10 % in enqueue, ack"],
    ),
}


@pytest.mark.parametrize(("cells", "expected"), list(FINDINGS.values()), ids=list(FINDINGS))
def test_findings(tmp_path: Path, cells: list[dict[str, Any]], expected: list[str]) -> None:
    assert report.findings(run_of(tmp_path, cells)) == expected


# -- `bench report` and `bench compare` on the committed sample, as users run them --------------------------------


def test_report_mentions_every_cell_and_inlines_charts(run_copy: Path) -> None:
    done = bench("report", str(run_copy))
    assert done.returncode == 0, done.stderr
    md = (run_copy / "report.md").read_text()
    summary = json.loads((run_copy / "summary.json").read_text())
    for cell in summary["cells"]:
        assert cell["id"] in md
    assert "## Findings" in md and "lost 0 tasks and rejected" in md and "× standalone" in md
    assert "![throughput](charts/throughput.png)" in md
    html = (run_copy / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html and 'src="charts/' not in html


def synthetic(base: Path, dest: Path, factor: float) -> Path:
    """A copy of the sample with every enqueue throughput scaled by ``factor``."""
    shutil.copytree(base, dest)
    summary = json.loads((dest / "summary.json").read_text())
    changed = copy.deepcopy(summary)
    for cell in changed["cells"]:
        enq = cell["ops"]["enqueue"]
        for key in ("ops_per_s", "ops_per_s_min", "ops_per_s_max"):
            if enq.get(key) is not None:
                enq[key] = enq[key] * factor
        enq["ops_per_s_spread"] = 0.01
    (dest / "summary.json").write_text(json.dumps(changed))
    return dest


def test_compare_flags_a_known_regression(tmp_path: Path) -> None:
    a = synthetic(SAMPLE, tmp_path / "a", 1.0)
    b = synthetic(SAMPLE, tmp_path / "b", 0.7)
    done = bench("compare", str(a), str(b), "--fail-on-regression")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "regression" in done.stdout and "0.70x" in done.stdout
    assert bench("compare", str(a), str(b)).returncode == 0  # reported, not fatal, unless asked
    same = bench("compare", str(a), str(a), "--fail-on-regression")
    assert same.returncode == 0 and "regression" not in same.stdout.split("regression/improvement")[0]
