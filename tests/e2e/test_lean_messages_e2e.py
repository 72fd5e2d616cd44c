"""Poll messages through a real broker and worker, as imageq publishes them now (no headers at
Celery's defaults, the facts as a list) and as it published them before (Celery's whole
header set, the facts by name): both run the job to its end, once."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict

import pytest
import redis
from celery import Celery

from imageq.config import Settings
from imageq.devenv.worker_process import WorkerProcess
from imageq.producers.api import ImageQueue
from imageq.producers.jobs import build_job
from imageq.worker.app import celery_config
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import POLL_TASK, SchedulePoll, message, shown_arguments
from imageq.worker.runtime import build_runtime
from imageq.worker.steps.submit import submit
from tests.conftest import DEADLINE_S, wait_for

pytestmark = pytest.mark.e2e
SCRATCH_QUEUE = "test.lean-messages.scratch"


def submitted_here(settings: Settings) -> tuple[str, SchedulePoll]:
    """A job submitted by the submit step called here: its first poll is not yet published."""
    rt = build_runtime(settings)
    job = build_job(
        settings,
        "a lean castle sim:latency=1",
        aspect_ratio="1:1",
        resolution="1K",
        now=time.time(),
    )
    assert rt.store.create(job, due_at=time.time())
    (first,) = submit(rt, job.job_id)
    assert isinstance(first, SchedulePoll)
    return job.job_id, first


def test_a_lean_poll_message_runs_the_job(
    worker: WorkerProcess, queue: ImageQueue, broker: redis.Redis, settings: Settings
) -> None:
    job_id, first = submitted_here(settings)
    assert first.facts is not None
    # Published as the worker publishes its polls, to a queue no worker reads, to look at it.
    name, args, options = message(first, settings.worker)
    queue._app.send_task(
        name,
        args=args,
        argsrepr=shown_arguments(args),
        kwargsrepr="{}",
        queue=SCRATCH_QUEUE,
        **options,
    )
    raw = broker.rpop(SCRATCH_QUEUE)
    assert isinstance(raw, bytes)
    payload = json.loads(raw)
    assert set(payload["headers"]) == {"task", "id", "eta", "argsrepr", "kwargsrepr"}
    assert set(payload["properties"]).isdisjoint({"reply_to", "argsrepr", "kwargsrepr"})
    body = json.loads(base64.b64decode(payload["body"]))
    assert body == [[job_id, first.token, first.facts.to_message()], {}, {}]
    payload["properties"]["delivery_info"]["routing_key"] = settings.worker.poll_queue
    broker.lpush(settings.worker.poll_queue, json.dumps(payload))
    done = queue.wait(job_id, timeout_s=DEADLINE_S + 10)
    assert done.status is JobStatus.SUCCEEDED
    assert f"{payload['headers']['id']}] succeeded" in worker.log()


def test_a_poll_message_in_the_old_format_runs_the_job(
    worker: WorkerProcess, queue: ImageQueue, settings: Settings
) -> None:
    job_id, first = submitted_here(settings)
    assert first.facts is not None
    # Celery's own message, as imageq sent it before: every header, the facts by name.
    old = Celery("old-imageq", set_as_current=False)
    old.conf.update(celery_config(settings))
    args = [job_id, first.token, asdict(first.facts)]
    sent = old.send_task(POLL_TASK, args=args, argsrepr=repr(args), kwargsrepr="{}", countdown=0.05)
    done = queue.wait(job_id, timeout_s=DEADLINE_S + 10)
    assert done.status is JobStatus.SUCCEEDED
    assert done.poll_count >= 1
    wait_for(
        lambda: f"{sent.id}] succeeded" in worker.log(), timeout_s=5, what="the old message's run"
    )
