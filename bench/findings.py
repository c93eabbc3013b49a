"""The findings: plain-language headlines written from a run's numbers (cluster vs standalone, pool
sizes and sweeps, memory policies, faults, unstable cells), each backed by a number in the report's
tables. ``bench.report`` puts them at the top of report.md."""

from __future__ import annotations

from typing import Any

from .cells import error_count, fault_timeline, fault_windows, is_plain, lost, memory_limited, repeat_count
from .config_diff import differences_note
from .report_tables import counters_note, rate_warning, seconds_without_success, server_counters
from .report_tables import n as _n
from .runs import Run
from .stats import ratio


def _noise(a: dict[str, Any], b: dict[str, Any], op_a: dict[str, Any], op_b: dict[str, Any], key: str) -> str:
    """How sure a ratio of cell ``a`` over cell ``b`` is: with fewer than 3 repeats, unknown;
    else the range from the repeats' extremes (min/max)."""
    reps = min(repeat_count(a), repeat_count(b))
    if reps < 3:
        return f" ({reps} repeat{'s' if reps > 1 else ''}, noise unknown)"
    lo_a, hi_a, lo_b, hi_b = (
        op.get(f"{key}_{m}") for op, m in ((op_a, "min"), (op_a, "max"), (op_b, "min"), (op_b, "max"))
    )
    if lo_a is None or hi_a is None or not lo_b or not hi_b:
        return ""
    return f" (range {lo_a / hi_b:.2f}..{hi_a / lo_b:.2f}× over {reps} repeats)"


def enqueue_stats(cell: dict[str, Any]) -> dict[str, Any]:
    return cell["ops"].get("enqueue") or cell["ops"].get("enqueue_many") or {}


def backend_pairs(plain: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(standalone, cluster) cells that differ only in the backend: per round trip, the pair with the largest
    pool. A run with no such pair: its first standalone and first cluster cell at the same users, as before."""

    def rest(c: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, str(v)) for k, v in c["params"].items() if k != "backend"))

    standalone = [c for c in plain if c["params"]["backend"] == "standalone"]
    clusters = {rest(c): c for c in plain if c["params"]["backend"] == "cluster"}
    best: dict[float, tuple[dict[str, Any], dict[str, Any]]] = {}
    for sa in standalone:
        cl = clusters.get(rest(sa))
        rtt = float(sa["params"].get("rtt_ms") or 0.0)
        if cl is not None and (rtt not in best or sa["params"]["pool_size"] > best[rtt][0]["params"]["pool_size"]):
            best[rtt] = (sa, cl)
    if best:
        return [best[rtt] for rtt in sorted(best)]
    for sa in standalone[:1]:
        same_users = [
            c for c in plain if c["params"]["backend"] == "cluster" and c["params"]["users"] == sa["params"]["users"]
        ]
        return [(sa, cl) for cl in same_users[:1]]
    return []


def findings(run: Run) -> list[str]:
    """Plain-language headlines, each backed by a number in the tables below."""
    out: list[str] = [w for c in run.cells if (w := rate_warning(c))]
    cells, cores = run.cells, run.summary.get("environment", {}).get("host_cores")
    plain = [c for c in cells if is_plain(c)]
    for sa, cl in backend_pairs(plain):
        rtt = float(sa["params"].get("rtt_ms") or 0.0)
        where = f", {rtt:g} ms RTT" if rtt else ""
        for op, name in (("enqueue", "enqueue throughput"), ("ack", "dequeue+ack throughput")):
            o_cl, o_sa = cl["ops"].get(op, {}), sa["ops"].get(op, {})
            r = ratio(o_cl.get("ops_per_s"), o_sa.get("ops_per_s"))
            if r:
                out.append(
                    f"cluster {name} at {sa['params']['users']} users (pool {cl['params']['pool_size']}{where}, "
                    f"same run, one {cores}-core host) is {r:.2f}× standalone"
                    + _noise(cl, sa, o_cl, o_sa, "ops_per_s")
                    + differences_note([sa, cl], ["backend"])
                )
        e_cl, e_sa = enqueue_stats(cl), enqueue_stats(sa)
        r = ratio(e_cl.get("p99_us"), e_sa.get("p99_us"))
        if r:
            out.append(
                f"cluster enqueue p99{where.replace(',', ' at', 1)} is {r:.2f}× standalone"
                f"{_noise(cl, sa, e_cl, e_sa, 'p99_us')}: {_n(e_cl.get('p99_us'))} vs {_n(e_sa.get('p99_us'))} µs"
                + differences_note([sa, cl], ["backend"])
            )
    for c in cells:
        exhausted = error_count(c, "pool_exhausted")
        if exhausted:
            out.append(
                f"pool {c['params']['pool_size']} (non-blocking) at {c['params']['users']} users: "
                f"{exhausted:,} operations failed with PoolExhausted"
            )
    blocking = [c for c in plain if c["params"]["pool_blocking"]]
    for c in blocking:
        peers = [
            p
            for p in plain
            if not p["params"]["pool_blocking"]
            and p["params"]["users"] == c["params"]["users"]
            and not error_count(p, "pool_exhausted")
        ]
        if peers:
            big = max(peers, key=lambda p: p["params"]["pool_size"])
            r = ratio(enqueue_stats(c).get("p99_us"), enqueue_stats(big).get("p99_us"))
            if r:
                out.append(
                    f"a blocking pool of {c['params']['pool_size']} never fails but its enqueue p99 is "
                    f"{r:.1f}× that of pool {big['params']['pool_size']}"
                    f"{_noise(c, big, enqueue_stats(c), enqueue_stats(big), 'p99_us')}, from waiting for a connection"
                    + differences_note([c, big], ["pool_size", "pool_blocking"])
                )
    out += pool_sweeps(plain)
    for c in cells:
        if not memory_limited(c):
            continue
        a, policy, mem = c["audit"], c["params"]["maxmemory_policy"], c["params"]["maxmemory"]
        count, upper = lost(a)
        if count and upper:
            text = (
                f"{policy} lost ≤ {count:,} of {a.get('enqueued_ok', 0):,} acknowledged tasks (upper bound: drain "
                f"timed out with {a.get('still_queued', 0):,} still queued; maxmemory {mem})"
            )
        elif count:
            text = (
                f"{policy} lost {count:,} of {a.get('enqueued_ok', 0):,} acknowledged tasks "
                f"(maxmemory {mem}): never use it for a queue"
            )
        else:
            text = (
                f"{policy} lost 0 tasks and rejected {a.get('rejected', 0):,} enqueues with OOM "
                f"(maxmemory {mem}): producers see QueueFull instead of silent loss"
            )
        others = [m for m in cells if memory_limited(m)]
        out.append(text + _server_text(c) + differences_note(others, ["maxmemory_policy", "maxmemory"]))
    for c in cells:
        if c.get("fault_series"):
            out.append(_repeated_fault_headline(c))
        elif timeline := fault_timeline(c):
            out.append(_fault_headline(timeline, c["audit"]))
    for c in cells:
        if c.get("unstable"):
            out.append(f"cell [{c['id']}] is unstable: repeats spread more than 10 % in {', '.join(c['unstable'])}")
    return out


def pool_sweeps(plain: list[dict[str, Any]]) -> list[str]:
    """One headline per pool-size sweep (cells that differ only in pool size: same backend, users and pool
    kind, at least 3 sizes): where throughput levels off, and what the smallest pool costs."""
    groups: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = {}
    for c in plain:
        p = c["params"]
        key = (p["backend"], p["users"], p["pool_blocking"], float(p.get("rtt_ms") or 0.0))  # one sweep per RTT
        groups.setdefault(key, {})[p["pool_size"]] = c
    out = []
    for (backend, users, blocking, rtt), by_size in groups.items():
        if len(by_size) < 3:
            continue
        sizes = sorted(by_size)
        rates = {s: enqueue_stats(by_size[s]).get("ops_per_s") or 0 for s in sizes}
        best = max(sizes, key=lambda s: rates[s])
        if not rates[best]:
            continue
        enough = next(s for s in sizes if rates[s] >= 0.9 * rates[best])
        small = sizes[0]
        p99_small, p99_best = enqueue_stats(by_size[small]).get("p99_us"), enqueue_stats(by_size[best]).get("p99_us")
        kind = ("blocking" if blocking else "non-blocking") + " pool" + (f", {rtt:g} ms RTT" if rtt else "")
        text = (
            f"pool sweep ({backend}, {users} users, {kind}): enqueue throughput peaks at {_n(rates[best])}/s "
            f"at pool {best}; the smallest pool within 10 % of that is {enough}; pool {small} gives "
            f"{rates[small] / rates[best]:.2f}× the peak"
        )
        if p99_small and p99_best:
            text += f", with enqueue p99 {_n(p99_small)} µs vs {_n(p99_best)} µs"
        text += differences_note([by_size[s] for s in sizes], ["pool_size"])
        exhausted = sum(error_count(by_size[s], "pool_exhausted") for s in sizes)
        out.append(text + (f"; {exhausted:,} PoolExhausted errors in the sweep" if exhausted else ""))
    return out


def _server_text(cell: dict[str, Any]) -> str:
    s = server_counters(cell)
    if s is None:
        return ""
    names = {
        "evicted_keys": "keys evicted",
        "expired_keys": "keys expired",
        "rejected_connections": "connections rejected",
    }
    said = [f"{s[k]:,} {name}" for k, name in names.items() if s.get(k) is not None]
    if not said:
        return ""
    note = counters_note(s)
    return "; server: " + ", ".join(said) + (f" ({note})" if note else "")


def _fault_headline(f: dict[str, Any], a: dict[str, Any]) -> str:
    unavailable, window = fault_windows(f)
    if unavailable is None:  # a run from before issue #9: only the error window was measured
        text = f"{f['kind']} of a master: errors for {window or 0:.1f} s (older run: time without success not measured)"
    else:
        text = (
            f"{f['kind']} of a master: {seconds_without_success(unavailable)} unavailable to clients (no successful "
            f"operation on its partition; errors for {window or 0:.1f} s)"
        )
    if f.get("healthy_unavailable_s"):
        text += f"; healthy masters also unavailable for {f['healthy_unavailable_s']:.1f} s"
    lag_s = f.get("client_recovery_lag_s")
    if lag_s is not None:  # the watcher polls another node every 50 ms: small negatives are gossip delay
        text += (
            f"; clients back {lag_s:.2f} s after the promotion"
            if lag_s >= 0.05
            else "; clients back as soon as the promotion was seen"
        )
    return f"{text}; {_tasks_text(a)}" + ("" if f.get("restore_ok") else " — RESTORE FAILED")


def _tasks_text(a: dict[str, Any]) -> str:
    count, upper = lost(a)
    lost_part = f"≤ {count or 0:,} tasks lost (upper bound: drain timed out)" if upper else f"{count or 0:,} tasks lost"
    return f"{lost_part}, {a.get('duplicates', 0):,} duplicated, {a.get('ambiguous', 0):,} ambiguous"


def _repeated_fault_headline(c: dict[str, Any]) -> str:
    """A fault repeated every N s (the soak): the worst and the median outage over its repeats."""
    series, params = c["fault_series"], c.get("params", {})
    gap = series["unavailable_s"]
    kind = params.get("fault", "fault")
    if not series["count"]:
        return f"{kind} every {_n(params.get('fault_every'))} s: none was injected"
    return (
        f"{series['count']} × {kind} of a master, every {_n(params.get('fault_every'))} s: at worst "
        f"{seconds_without_success(gap['max'], 2)} without a successful operation on its partition (median "
        f"{seconds_without_success(gap['median'], 2)}); {_tasks_text(c['audit'])}"
        + ("" if series["restore_ok"] else " — RESTORE FAILED (series stopped)")
        + (f" — stopped early: {series['stopped']}" if series.get("stopped") and series["restore_ok"] else "")
    )
