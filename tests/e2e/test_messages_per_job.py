"""How many task messages one job costs in countdown mode, counted on the broker: the
producer's submit, one per poll, and nothing after the job's end (saving its outputs and its
notifications run in the poll that finished it, unless an attempt fails)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess
from imageq.producers.api import ImageQueue
from imageq.worker.domain.job import Delivery, Downloads
from imageq.worker.domain.status import JobStatus
from tests.conftest import DEADLINE_S, wait_for

pytestmark = pytest.mark.e2e


@contextmanager
def publishes(redis_server: RedisServer, needle: str) -> Iterator[Counter[str]]:
    """Count, per queue, the messages pushed onto the broker's queues that name `needle`
    (Redis MONITOR: kombu publishes each message with one LPUSH onto its queue's list). On
    leaving, a marker command is sent and waited for, so every command before it is counted."""
    counts: Counter[str] = Counter()
    marker = f"end-of-count-{needle}"
    client = redis.Redis.from_url(redis_server.url(0))
    watching = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]  # redis-py: untyped
            watching.set()
            while True:
                command = str(monitor.next_command()["command"])
                if marker in command:
                    return
                if command.startswith("LPUSH ") and needle in command:
                    counts[command.split(" ", 2)[1]] += 1

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert watching.wait(timeout=5)
    try:
        yield counts
    finally:
        other = redis.Redis.from_url(redis_server.url(0))
        other.echo(marker)
        watcher.join(timeout=10)
        other.close()
        client.close()
    assert not watcher.is_alive(), "the marker did not come through MONITOR"


def test_a_job_costs_its_submit_and_its_polls(
    worker: WorkerProcess,
    queue: ImageQueue,
    settings: Settings,
    redis_server: RedisServer,
    receiver: WebhookReceiver,
    job_path: Path,
) -> None:
    """With storage on and a webhook: 1 submit + poll_count polls, no download or notify."""
    job_id = f"messages-{job_path.name}"
    with publishes(redis_server, job_id) as counts:
        queue.enqueue(
            "a castle sim:latency=1",
            aspect_ratio="1:1",
            resolution="1K",
            job_id=job_id,
            webhook_url=f"{receiver.base_url}{job_path}",
        )
        done = queue.wait(job_id, timeout_s=DEADLINE_S + 10)
        wait_for(
            lambda: queue.get(job_id).webhook_state == Delivery.SENT, timeout_s=5, what="webhook"
        )
    assert done.status is JobStatus.SUCCEEDED
    assert queue.get(job_id).downloads_state == Downloads.DONE
    worker_queues = settings.worker
    assert dict(counts) == {
        worker_queues.submit_queue: 1,
        worker_queues.poll_queue: done.poll_count,
    }
