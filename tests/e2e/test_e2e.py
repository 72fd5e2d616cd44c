"""End to end: a real Redis, a real worker process and the simulator on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import signature
from standardwebhooks import Webhook

from imageq.config import Settings, WorkerSettings
from imageq.devenv.webhook_receiver import Received, WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.worker.domain.job import Delivery
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import InvalidParams, JobConflict
from imageq.worker.messages import SchedulePoll, message
from imageq.worker.steps.poll import poll_facts
from tests.conftest import (
    API_KEY,
    CALLBACK_QUEUE,
    DEADLINE_S,
    WEBHOOK_SECRET,
    callback_payloads,
    wait_for,
)

pytestmark = pytest.mark.e2e
WAIT_S = DEADLINE_S + 10


def callback() -> dict[str, object]:
    return dict(signature("imageq.test_callback", queue=CALLBACK_QUEUE))


def notifications(
    queue: ImageQueue, receiver: WebhookReceiver, broker: redis.Redis, job_id: str, path: Path
) -> tuple[list[Received], list[dict[str, Any]]]:
    """Wait until the job's webhook and callback are out; return what arrived of each."""
    wait_for(lambda: queue.get(job_id).webhook_state == Delivery.SENT, timeout_s=5, what="webhook")
    wait_for(lambda: callback_payloads(broker, job_id), timeout_s=5, what="callback")
    return receiver.for_path(str(path)), callback_payloads(broker, job_id)


def submits(simulator: SimulatorServer, job_id: str) -> int:
    return int(simulator.stats()["submits_by_out_task_id"].get(job_id, 0))


def test_job_succeeds_and_notifies_once(
    worker: WorkerProcess,
    queue: ImageQueue,
    simulator: SimulatorServer,
    receiver: WebhookReceiver,
    broker: redis.Redis,
    job_path: Path,
) -> None:
    """A job reaches `succeeded`; its callback and its signed webhook arrive exactly once."""
    job_id = queue.enqueue(
        "Ancient castle under the starry sky",
        aspect_ratio="16:9",
        resolution="4K",
        webhook_url=f"{receiver.base_url}{job_path}",
        callback=callback(),
        metadata={"order": 42},
    )
    job = queue.wait(job_id, timeout_s=WAIT_S)
    assert job.status is JobStatus.SUCCEEDED
    assert job.outputs
    assert job.outputs[0]["width"] == 3840
    assert job.outputs[0]["height"] == 2160
    assert job.outputs[0]["url"].startswith(simulator.base_url)
    hooks, callbacks = notifications(queue, receiver, broker, job_id, job_path)
    assert submits(simulator, job_id) == 1
    assert len(hooks) == 1
    delivered = Webhook(WEBHOOK_SECRET).verify(hooks[0].body, hooks[0].headers)
    assert delivered["job_id"] == job_id
    assert delivered["status"] == "succeeded"
    assert delivered["metadata"] == {"order": 42}
    assert callbacks == [delivered]
    assert queue.get(job_id).callback_state == Delivery.SENT


@pytest.mark.parametrize(
    ("marker", "error_type", "message"),
    [
        ("sim:fail", "JobError", "simulated generation failure"),
        ("sim:unsafe", "SafetyRejected", "safety"),
    ],
)
def test_remote_failure_and_safety_rejection_fail_with_reason(
    worker: WorkerProcess,
    queue: ImageQueue,
    simulator: SimulatorServer,
    receiver: WebhookReceiver,
    job_path: Path,
    marker: str,
    error_type: str,
    message: str,
) -> None:
    """A failed generation and a refused prompt end `failed`, the reason recorded and sent."""
    job_id = queue.enqueue(
        f"a castle {marker}",
        aspect_ratio="1:1",
        resolution="1K",
        webhook_url=f"{receiver.base_url}{job_path}",
    )
    job = queue.wait(job_id, timeout_s=WAIT_S)
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error["type"] == error_type
    assert message in job.error["message"]
    assert job.error["retryable"] is False
    assert submits(simulator, job_id) == 1
    hooks = wait_for(lambda: receiver.for_path(str(job_path)), timeout_s=5, what="webhook")
    assert json.loads(hooks[0].body)["error"]["message"] == job.error["message"]


@pytest.mark.parametrize("marker", ["sim:submit429=1", "sim:poll429=2", "sim:submit503=2"])
def test_transient_errors_then_success(
    worker: WorkerProcess, queue: ImageQueue, simulator: SimulatorServer, marker: str
) -> None:
    """429s (with Retry-After) and 5xx are retried; the job then completes."""
    job_id = queue.enqueue(f"a castle {marker}", aspect_ratio="3:2", resolution="2K")
    job = queue.wait(job_id, timeout_s=WAIT_S)
    assert job.status is JobStatus.SUCCEEDED
    expected_attempts = {"sim:submit429=1": 2, "sim:poll429=2": 1, "sim:submit503=2": 3}[marker]
    assert job.submit_attempts == expected_attempts
    assert submits(simulator, job_id) == expected_attempts


def test_ambiguous_submit_is_looked_up_not_resubmitted(
    worker: WorkerProcess, queue: ImageQueue, simulator: SimulatorServer
) -> None:
    """The API takes the job but the connection drops: imageq adopts it, never POSTs twice."""
    job_id = queue.enqueue("a castle sim:submitdrop=1", aspect_ratio="1:1", resolution="1K")
    job = queue.wait(job_id, timeout_s=WAIT_S)
    assert job.status is JobStatus.SUCCEEDED
    assert job.submit_attempts == 2
    assert submits(simulator, job_id) == 1


def test_deadline_times_out_and_notifies_once(
    worker: WorkerProcess,
    queue: ImageQueue,
    receiver: WebhookReceiver,
    broker: redis.Redis,
    job_path: Path,
) -> None:
    """A job the API does not finish by the deadline ends `timed_out`, notified once."""
    job_id = queue.enqueue(
        "a castle sim:latency=60",
        aspect_ratio="1:1",
        resolution="1K",
        webhook_url=f"{receiver.base_url}{job_path}",
        callback=callback(),
    )
    job = queue.wait(job_id, timeout_s=WAIT_S)
    assert job.status is JobStatus.TIMED_OUT
    assert job.submitted_at is not None
    assert job.finished_at is not None
    assert DEADLINE_S <= job.finished_at - job.submitted_at < DEADLINE_S + 2
    hooks, callbacks = notifications(queue, receiver, broker, job_id, job_path)
    assert (len(hooks), len(callbacks)) == (1, 1)


def test_duplicate_poll_message_notifies_once(
    worker: WorkerProcess,
    queue: ImageQueue,
    simulator: SimulatorServer,
    receiver: WebhookReceiver,
    broker: redis.Redis,
    job_path: Path,
) -> None:
    """A poll message delivered twice forks no second chain and notifies once."""
    job_id = queue.enqueue(
        "a castle sim:latency=2",
        aspect_ratio="1:1",
        resolution="1K",
        webhook_url=f"{receiver.base_url}{job_path}",
        callback=callback(),
    )
    wait_for(lambda: queue.get(job_id).poll_count >= 1, timeout_s=5, what="first poll")
    job = queue.get(job_id)
    # The message the worker sends (with the job's facts), delivered twice more.
    resend = SchedulePoll(job_id, job.poll_token, 0.0, poll_facts(job))
    name, args, _ = message(resend, WorkerSettings())
    duplicates = [queue._app.send_task(name, args=args).id for _ in range(2)]
    done = queue.wait(job_id, timeout_s=WAIT_S)
    assert done.status is JobStatus.SUCCEEDED
    wait_for(
        lambda: all(f"{task_id}] succeeded" in worker.log() for task_id in duplicates),
        timeout_s=5,
        what="the duplicates to have run",
    )
    hooks, callbacks = notifications(queue, receiver, broker, job_id, job_path)
    assert (len(hooks), len(callbacks)) == (1, 1)
    queries = simulator.stats()["queries_by_task_id"][done.remote_task_id]
    # One chain: the queries are the chain's polls plus at most the duplicates' own reads.
    assert done.poll_count <= queries <= done.poll_count + 2


def test_invalid_combination_queues_nothing(settings_values: dict[str, Any]) -> None:
    """1:1 at 4K is refused at enqueue, naming the 4K ratios; no record, no message."""
    server = settings_values["redis"]["broker_url"].rsplit("/", 1)[0]
    redis_values = {"broker_url": f"{server}/5", "store_url": f"{server}/6"}
    isolated = Settings(_env_file=None, **{**settings_values, "redis": redis_values})
    queue = ImageQueue(isolated)
    broker = redis.Redis.from_url(isolated.redis.broker_url)
    store = redis.Redis.from_url(isolated.redis.store_url)
    queue.enqueue("fine", aspect_ratio="1:1", resolution="2K", job_id="valid-one")
    assert broker.llen(isolated.worker.submit_queue) == 1
    with pytest.raises(InvalidParams, match="16:9, 9:16, 2:1, 1:2, 21:9, 9:21"):
        queue.enqueue("refused", aspect_ratio="1:1", resolution="4K", job_id="refused-one")
    assert broker.llen(isolated.worker.submit_queue) == 1
    assert store.exists("imageq:job:refused-one") == 0
    assert store.exists("imageq:job:valid-one") == 1


def test_enqueue_existing_id_submits_nothing(
    worker: WorkerProcess, queue: ImageQueue, simulator: SimulatorServer
) -> None:
    """Enqueueing a job id again with the same request returns it, already known, and submits
    nothing new; with another request it is a JobConflict."""
    job_id = queue.enqueue("a castle", aspect_ratio="4:5", resolution="2K", job_id="same-id-1")
    again = queue.enqueue_job("a castle", aspect_ratio="4:5", resolution="2k", job_id=job_id)
    assert (again.job_id, again.already_known) == (job_id, True)
    with pytest.raises(JobConflict, match="different prompt, aspect_ratio, resolution;"):
        queue.enqueue("other", aspect_ratio="1:1", resolution="1K", job_id=job_id)
    job = queue.wait(job_id, timeout_s=WAIT_S)
    assert job.status is JobStatus.SUCCEEDED
    assert job.params["prompt"] == "a castle"
    assert submits(simulator, job_id) == 1


def test_api_key_never_written(
    worker: WorkerProcess, queue: ImageQueue, store_redis: redis.Redis, broker: redis.Redis
) -> None:
    """After every scenario above, the key is in no log line, job record or message."""
    job_id = queue.enqueue("a castle sim:poll503=1", aspect_ratio="1:1", resolution="1K")
    queue.wait(job_id, timeout_s=WAIT_S)
    log = worker.log()
    assert "succeeded" in log  # the log is really being read
    assert API_KEY not in log
    assert WEBHOOK_SECRET not in log
    for db in (store_redis, broker):
        for key in db.scan_iter():
            value = db.dump(key) or b""
            assert API_KEY.encode() not in value, key
