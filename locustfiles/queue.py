"""Locust producers and consumers for TaskQueue on Redis / Redis Cluster.

    locust -f locustfiles/queue.py                                 # web UI on 127.0.0.1:8089
    locust -f locustfiles/queue.py --headless -u 20 -r 20 -t 30s   # then see results/locust-*/
    locust -f locustfiles/queue.py --headless --processes 2 -u 40 -r 40 -t 30s --rate 5000

Options (``--help`` lists them under "TaskQueue load"): backend, pool size, partitions, payload,
batch size, processing time, open-loop rate, user mix, results folder. µs latencies from
HdrHistogram are written to the results folder; Locust's own tables are kept for ops/s and errors.
"""

from __future__ import annotations

from bench.compat import restore_stdlib_queue

# Locust registers this file as module "queue", hiding the standard library's queue that redis-py needs.
restore_stdlib_queue(__name__)

from locust import User, constant, task  # noqa: E402

from bench import load  # noqa: E402

load.install()


class ProducerUser(User):
    """Enqueues tasks back to back (closed loop) or on the shared open-loop schedule (``--rate``)."""

    wait_time = constant(0)

    @task
    def produce(self) -> None:
        load.produce()


class ConsumerUser(User):
    """Blocking dequeue, simulated processing (``--processing-ms``), ack."""

    wait_time = constant(0)

    @task
    def consume(self) -> None:
        load.consume()


class MixedUser(User):
    """Produces and consumes in turn (enable with ``--mixed-weight``)."""

    wait_time = constant(0)

    @task
    def produce(self) -> None:
        load.produce()

    @task
    def consume(self) -> None:
        load.consume()


class RawLpushUser(User):
    """Baseline, off by default (``--raw-lpush-weight 1``): bare redis-py LPUSH with the same
    timing, HDR recording and Locust event as ProducerUser, to measure what TaskQueue adds."""

    wait_time = constant(0)

    @task
    def lpush(self) -> None:
        load.raw_lpush()
