"""``bench capacity``'s second side: after a configuration's search, the queue's own ceiling on the same
backend (bench.ceiling: redis-benchmark driving the queue's scripts), next to the harness-bound rate the
search found, and the load processes the measured client CPU per task says it takes to reach it."""

from __future__ import annotations

import dataclasses
from typing import Any

import redis
from rich.console import Console
from rich.markup import escape

from . import ceiling, ceiling_calc
from .backend_pool import BackendPool
from .cost import processes_needed
from .errors import UsageError


@dataclasses.dataclass(frozen=True)
class CeilingOptions:
    requests: int = 200_000  # per enqueue and dequeue run (ack: half); without pipelining a quarter
    repeats: int = 3

    def check(self) -> CeilingOptions:
        if not 1000 <= self.requests <= 10_000_000:
            raise UsageError(f"--ceiling-requests {self.requests}: use 1000 .. 10,000,000")
        if not 1 <= self.repeats <= 20:
            raise UsageError(f"--ceiling-repeats {self.repeats}: use 1 .. 20")
        return self


def cheapest_step(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The step whose load spent the least CPU per task (usually the fastest: fewer empty dequeues per task)."""
    costed = [s for s in steps if ((s.get("cost") or {}).get("client_us_per_task") or 0) > 0]
    return min(costed, key=lambda s: s["cost"]["client_us_per_task"], default=None)


def for_configuration(
    pool: BackendPool,
    params: dict[str, Any],
    config: dict[str, Any],
    at_capacity: dict[str, Any] | None,
    options: CeilingOptions,
    console: Console,
    config_id: str,
) -> dict[str, Any]:
    """The configuration's ceiling (``skipped`` with why when it cannot be measured) with its ``sides``;
    ``at_capacity``: the step record at the capacity, whose ``cost`` gives the load's µs per task."""
    cost = (at_capacity or {}).get("cost") or {}
    backend = pool.backend_for(params)
    result: dict[str, Any]
    if not backend.servers:
        result = {"skipped": "an external backend: its nodes are not reached one by one"}
    else:
        pool.prepare(backend, params)  # flushed, configured and reset as for a step
        try:
            result = ceiling.measure(
                backend,
                params,
                requests=options.requests,
                repeats=options.repeats,
                load_us_per_task=cost.get("server_us_per_task"),
                client_us_per_task=cost.get("client_us_per_task"),
                load_calls_per_dequeue=((cost.get("per_op") or {}).get("dequeue") or {}).get("calls_per_op"),
                say=lambda text: console.print(f"  {escape(text)}"),
            )
        except (RuntimeError, ValueError, redis.RedisError) as exc:
            result = {"skipped": f"failed: {exc}"}
        finally:
            pool.prepare(backend, params)  # what redis-benchmark left (its keys, its counters) is gone
    result["sides"] = ceiling_calc.sides(config.get("capacity"), result)
    cheapest = cheapest_step(config.get("steps") or [])
    if cheapest is not None:
        client_us = cheapest["cost"]["client_us_per_task"]
        result["sides"]["cheapest_step"] = {
            "rate": (cheapest.get("params") or {}).get("rate"),
            "client_us_per_task": client_us,
            "load_processes_needed": processes_needed(result.get("tasks_per_s"), client_us),
        }
    for line in ceiling_calc.sides_text(config_id, result["sides"], result):
        console.print(escape(line))
    return result
