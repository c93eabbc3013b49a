"""Locust producers and consumers for TaskQueue on Redis / Redis Cluster.

    locust -f locustfiles/queue.py                                 # web UI on 127.0.0.1:8089
    locust -f locustfiles/queue.py --headless -u 20 -r 20 -t 30s   # then see results/locust-*/
    locust -f locustfiles/queue.py --headless --processes 2 -u 40 -r 40 -t 30s --rate 5000
    locust -f locustfiles/queue.py --headless -u 20 -r 20 -t 30s --tags produce   # producers only

Options: ``bench options`` lists them (Locust's ``--help`` is printed before this file is loaded,
so it cannot): backend, pool, load shape, queue, results; also env vars ``TQB_*`` and fields in
the web UI's start form. Tags: ``produce``, ``consume``, ``raw_lpush``. ``--stop-timeout``
defaults to 10 s here, so operations in flight at the stop complete and are counted. µs latencies
from HdrHistogram go to the results folder and the web UI's "TaskQueue µs" tab; Locust's own
tables are kept for ops/s and errors (queue operations only: e2e is not a request).
"""

from __future__ import annotations

from bench.compat import restore_stdlib_queue

# Locust registers this file as module "queue", hiding the standard library's queue that redis-py needs.
restore_stdlib_queue(__name__)

from locust import User, constant, tag, task  # noqa: E402

from bench import load  # noqa: E402

load.install()


class ProducerUser(User):
    """Enqueues tasks back to back (closed loop) or on the shared open-loop schedule (``--rate``)."""

    wait_time = constant(0)

    @tag("produce")
    @task
    def produce(self) -> None:
        load.produce()


class ConsumerUser(User):
    """Blocking dequeue, simulated processing (``--processing-ms``), ack."""

    wait_time = constant(0)

    @tag("consume")
    @task
    def consume(self) -> None:
        load.consume()


class MixedUser(User):
    """Produces and consumes in turn (enable with ``--mixed-weight``)."""

    wait_time = constant(0)

    @tag("produce")
    @task
    def produce(self) -> None:
        load.produce()

    @tag("consume")
    @task
    def consume(self) -> None:
        load.consume()


class RawLpushUser(User):
    """Baseline, off by default (``--raw-lpush-weight 1``): bare redis-py LPUSH with the same
    timing, HDR recording and Locust event as ProducerUser, to measure what TaskQueue adds."""

    wait_time = constant(0)

    @tag("raw_lpush")
    @task
    def lpush(self) -> None:
        load.raw_lpush()
