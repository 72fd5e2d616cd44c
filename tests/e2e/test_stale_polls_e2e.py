"""Stale poll messages through a real broker and worker: a poll that goes on reads nothing
before asking the API when its message is its token's first delivery, on time; a message the
broker handed out again, or one that comes long after it was due (the sweeper's copy may
have overtaken it), checks its token first, so an old token reaches neither the job nor the
API."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from imageq.config import Settings
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import SchedulePoll, message
from imageq.worker.steps.poll import poll_facts
from tests.conftest import DEADLINE_S, wait_for

pytestmark = pytest.mark.e2e
SCRATCH_QUEUE = "test.stale-polls.scratch"


def redelivered(
    queue: ImageQueue, broker: redis.Redis, settings: Settings, resend: SchedulePoll
) -> str:
    """Publish `resend` as the broker hands out a message again after a worker was lost: kombu's
    restore marks it `redelivered` and pushes it back onto its queue. Its countdown is short,
    so it is on time. Returns its task id."""
    name, args, _ = message(resend, settings.worker)
    queue._app.send_task(name, args=args, countdown=0.05, queue=SCRATCH_QUEUE)
    raw = broker.rpop(SCRATCH_QUEUE)
    assert isinstance(raw, bytes)
    payload = json.loads(raw)
    payload["headers"]["redelivered"] = True
    payload["properties"]["delivery_info"]["redelivered"] = True
    payload["properties"]["delivery_info"]["routing_key"] = settings.worker.poll_queue
    broker.lpush(settings.worker.poll_queue, json.dumps(payload))
    return str(payload["headers"]["id"])


def late(queue: ImageQueue, settings: Settings, resend: SchedulePoll) -> str:
    """Publish `resend` due well past the sweeper's grace ago, as an original message that the
    sweeper's copy overtook turns up. Returns its task id."""
    name, args, _ = message(resend, settings.worker)
    due = datetime.now(UTC) - timedelta(seconds=settings.sweep.grace_s)
    return str(queue._app.send_task(name, args=args, eta=due).id)


def test_old_tokens_redelivered_or_late_reach_neither_job_nor_api(
    worker: WorkerProcess,
    queue: ImageQueue,
    simulator: SimulatorServer,
    receiver: WebhookReceiver,
    broker: redis.Redis,
    settings: Settings,
    job_path: Path,
) -> None:
    """Old-token copies, run while the job is still being polled: the API is asked exactly as
    many times as the job was polled, and the job is notified once."""
    latency_s = DEADLINE_S - 1
    job_id = queue.enqueue(
        f"a castle sim:latency={latency_s}",
        aspect_ratio="1:1",
        resolution="1K",
        webhook_url=f"{receiver.base_url}{job_path}",
    )
    wait_for(lambda: queue.get(job_id).poll_count >= 1, timeout_s=5, what="first poll")
    started = time.monotonic()
    job = queue.get(job_id)
    old = SchedulePoll(job_id, job.poll_token - 1, 0.0, poll_facts(job))
    copies = [redelivered(queue, broker, settings, old), late(queue, settings, old)]
    wait_for(
        lambda: all(f"{task_id}] succeeded" in worker.log() for task_id in copies),
        timeout_s=5,
        what="the old-token copies to have run",
    )
    in_flight = queue.get(job_id)
    # They ran while the job was still being polled, so a copy that got past its check would
    # have asked the API (its write would then have been refused).
    assert in_flight.status is JobStatus.SUBMITTED, time.monotonic() - started
    done = queue.wait(job_id, timeout_s=DEADLINE_S + 10)
    assert done.status is JobStatus.SUCCEEDED
    assert done.remote_task_id is not None
    assert simulator.stats()["queries_by_task_id"][done.remote_task_id] == done.poll_count
    wait_for(lambda: receiver.for_path(str(job_path)), timeout_s=5, what="the webhook")
    assert len(receiver.for_path(str(job_path))) == 1


def test_a_first_delivery_on_time_reads_nothing_before_the_api(
    worker: WorkerProcess, queue: ImageQueue, settings: Settings, store_redis: redis.Redis
) -> None:
    """The job's own chain: the store's command counts show no HMGET per poll (the token
    check), only the poll's own script and the finishing poll's read of the record."""
    before = _calls(store_redis, "hmget")
    job_id = queue.enqueue("a castle sim:latency=1.5", aspect_ratio="1:1", resolution="1K")
    done = queue.wait(job_id, timeout_s=DEADLINE_S + 10)
    assert done.status is JobStatus.SUCCEEDED
    assert done.poll_count >= 3
    # Other tests' jobs may run beside it; none of this job's polls checked its token.
    assert _calls(store_redis, "hmget") - before < done.poll_count


def _calls(client: redis.Redis, command: str) -> int:
    stats: Any = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
