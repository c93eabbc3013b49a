"""The report's network section: per delayed cell, the round trip asked and the one measured through the
delay line (client -> masters, replica -> master), and what the delay line itself cost. Results contract
only: reads summary.json cells (``network``, ``cost``)."""

from __future__ import annotations

from typing import Any

from .report_tables import table


def _ms(us: Any) -> str:
    return "–" if us is None else f"{us / 1000:.2f}"


def _asked(ms: float | None, jitter: float | None) -> str:
    if not ms:
        return "loopback"
    return f"{ms:g}" + (f" ± {jitter:g}" if jitter else "")


def network_section(cells: list[dict[str, Any]]) -> list[str]:
    delayed = [c for c in cells if c.get("network")]
    if not delayed:
        return []
    rows = []
    for c in delayed:
        net = c["network"]
        conf, measured, line = net.get("configured", {}), net.get("measured", {}), net.get("delay_line", {})
        client, node = measured.get("client_rtt") or {}, measured.get("node_rtt") or {}
        loaded = measured.get("client_rtt_under_load") or {}
        late = line.get("release_lateness_us") or {}
        load_cores = (c.get("cost") or {}).get("client_cores")
        with_cores = [r["server"]["cores"] for r in c.get("repeats") or [] if (r.get("server") or {}).get("cores")]
        servers: dict[str, Any] = with_cores[0] if with_cores else {}
        rows.append(
            [
                c["id"],
                _asked(conf.get("rtt_ms"), conf.get("jitter_ms")),
                f"{_ms(client.get('p50_us'))} / {_ms(client.get('p99_us'))}",
                "not measured: " + loaded["error"][:60]
                if loaded.get("error")
                else f"{_ms(loaded.get('p50_us'))} / {_ms(loaded.get('p99_us'))}",
                _asked(conf.get("node_rtt_ms"), conf.get("jitter_ms")),
                f"{_ms(node.get('p50_us'))} / {_ms(node.get('p99_us'))}" if node else "–",
                "–" if line.get("cores") is None else f"{line['cores']:.2f}",
                "–" if load_cores is None else f"{load_cores:.2f}",
                f"{servers['busiest']:.2f} / {servers['total']:.2f}" if servers else "–",
                "–" if line.get("cpu_us_per_packet") is None else f"{line['cpu_us_per_packet']:.1f}",
                f"{late['late_p50_us']} / {late['late_p99_us']}" if "late_p99_us" in late else "–",
                "**OFF: " + "; ".join(net.get("problems", [])) + "**" if net.get("flagged") else "as configured",
            ]
        )
    headers = [
        "cell",
        "client RTT asked (ms)",
        "idle p50 / p99",
        "under load p50 / p99",
        "node RTT asked (ms)",
        "measured p50 / p99",
        "delay line (cores)",
        "load (cores)",
        "servers (cores: busiest / all)",
        "µs per packet",
        "release late p50 / p99 (µs)",
        "measured vs asked (±20 %)",
    ]
    return [
        "## Network round trip (the delay line in the run's private namespace)",
        "",
        "PING (ms) through the delay before the load (idle): client -> every master, and replica -> master where "
        "nodes are delayed; and client -> masters again halfway through the load (before a fault), what the load "
        "saw, CPU contention included. A cell off its asked round trip by more than 20 % is flagged: read its "
        "figures for the measured network. The delay line is a process of its own on the same cores as the load "
        "and the servers: its CPU and how late it released packets during the load are beside it.",
        "",
        table(headers, rows),
        "",
    ]
