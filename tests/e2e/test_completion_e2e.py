"""Completion delivery end to end: webhook retries, dead letters and replay, saved outputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image
from standardwebhooks import Webhook

from imageq.config import Settings
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.ops.webhook_replays import WebhookReplays
from imageq.producers.api import ImageQueue
from imageq.worker.domain.job import Delivery, Downloads
from imageq.worker.domain.payload import load_schema
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import InvalidParams
from imageq.worker.webhooks.signing import webhook_id
from tests.conftest import DEADLINE_S, WEBHOOK_ATTEMPTS, WEBHOOK_SECRET, wait_for

pytestmark = pytest.mark.e2e
WAIT_S = DEADLINE_S + 10


def enqueue_with_hook(queue: ImageQueue, receiver: WebhookReceiver, path: Path, prompt: str) -> str:
    return queue.enqueue(
        prompt, aspect_ratio="16:9", resolution="1K", webhook_url=f"{receiver.base_url}{path}"
    )


def test_receiver_failing_three_times_gets_it_on_the_fourth(
    worker: WorkerProcess,
    queue: ImageQueue,
    receiver: WebhookReceiver,
    job_path: Path,
    settings: Settings,
) -> None:
    """Three 500s, then a 2xx: delivered once accepted, 4 attempts recorded on the job."""
    receiver.fail_first[str(job_path)] = 3
    job_id = enqueue_with_hook(queue, receiver, job_path, "a castle")
    wait_for(
        lambda: queue.get(job_id).webhook_state == Delivery.SENT, timeout_s=WAIT_S, what="webhook"
    )
    job = queue.get(job_id)
    assert [attempt["http_status"] for attempt in job.webhook_attempts] == [500, 500, 500, 200]
    assert all(attempt["duration_s"] >= 0 for attempt in job.webhook_attempts)
    hooks = receiver.for_path(str(job_path))
    assert len(hooks) == 4
    assert {hook.headers["webhook-id"] for hook in hooks} == {webhook_id(job_id)}
    for hook in hooks:  # each attempt is signed afresh, and each verifies
        Webhook(WEBHOOK_SECRET).verify(hook.body, hook.headers)
    payload = Webhook(WEBHOOK_SECRET).verify(hooks[-1].body, hooks[-1].headers)
    jsonschema.validate(payload, load_schema())
    assert job_id not in WebhookReplays(settings).dead_letters()


def test_receiver_down_goes_to_dead_letters_and_replays_with_same_id(
    worker: WorkerProcess,
    queue: ImageQueue,
    receiver: WebhookReceiver,
    job_path: Path,
    settings: Settings,
    settings_values: dict[str, Any],
) -> None:
    """Down for the whole schedule: dead letter with the reason; replay delivers, same id."""
    replays = WebhookReplays(settings)
    receiver.fail_first[str(job_path)] = 1000
    job_id = enqueue_with_hook(queue, receiver, job_path, "a castle")
    wait_for(lambda: job_id in replays.dead_letters(), timeout_s=WAIT_S, what="dead letter")
    letter = replays.dead_letters()[job_id]
    assert letter["attempts"] == WEBHOOK_ATTEMPTS
    assert "HTTP 500" in letter["reason"]
    assert queue.get(job_id).webhook_state == Delivery.DEAD
    assert len(receiver.for_path(str(job_path))) == WEBHOOK_ATTEMPTS

    receiver.fail_first[str(job_path)] = 0
    # Replayed through the command line, as an operator would.
    env = {**os.environ, **settings_env(settings_values)}
    result = subprocess.run(
        [sys.executable, "-m", "imageq.cli", "webhooks", "replay", "--all-dead"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert job_id in result.stdout
    wait_for(
        lambda: queue.get(job_id).webhook_state == Delivery.SENT, timeout_s=WAIT_S, what="replay"
    )
    hooks = receiver.for_path(str(job_path))
    assert len(hooks) == WEBHOOK_ATTEMPTS + 1
    assert hooks[-1].headers["webhook-id"] == hooks[0].headers["webhook-id"] == webhook_id(job_id)
    assert job_id not in replays.dead_letters()


def test_internal_webhook_targets_refused_at_enqueue(settings: Settings) -> None:
    """Without the loopback switch, loopback, private and metadata webhook URLs are refused at
    enqueue, each naming the setting that would lift it, or that none does. Nothing is queued,
    so nothing is sent anywhere."""
    strict = Settings(
        _env_file=None,
        **{
            **settings.model_dump(mode="python"),
            "webhook": {**settings.webhook.model_dump(), "allow_loopback": False},
        },
    )
    queue = ImageQueue(strict)
    refusals = {
        "http://127.0.0.1:9/hook": "IMAGEQ_WEBHOOK__ALLOW_LOOPBACK",
        "http://10.1.2.3/hook": "IMAGEQ_WEBHOOK__ALLOWED_NETWORKS",
        "http://169.254.169.254/": "never calls",
    }
    for url, reason in refusals.items():
        with pytest.raises(InvalidParams) as caught:
            queue.enqueue("x", aspect_ratio="1:1", resolution="1K", webhook_url=url)
        assert caught.value.field == "webhook_url"
        assert reason in str(caught.value)


def test_outputs_saved_with_sha256_and_pixel_size(
    worker: WorkerProcess, queue: ImageQueue, settings: Settings
) -> None:
    """Outputs land in storage under {date}/{job_id}/{n}.png, verified, before notification."""
    job_id = queue.enqueue("a castle", aspect_ratio="21:9", resolution="4K")
    job = queue.wait(job_id, timeout_s=WAIT_S)
    assert job.status is JobStatus.SUCCEEDED
    wait_for(lambda: queue.get(job_id).downloads_state == Downloads.DONE, timeout_s=10, what="save")
    saved = queue.get(job_id).outputs[0]["saved"]
    path = Path(saved["location"])
    assert path.is_relative_to(Path(settings.storage.url))
    assert path.parent.name == job_id
    assert path.name == "0.png"
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == saved["sha256"]
    assert saved["bytes"] == len(data)
    with Image.open(path) as image:
        assert image.size == (3840, 1648) == (saved["width"], saved["height"])


@pytest.mark.parametrize(
    ("marker", "retryable"), [("sim:file404=1000", True), ("sim:filepad=3000000", False)]
)
def test_failed_download_still_completes_with_error(
    worker: WorkerProcess,
    queue: ImageQueue,
    receiver: WebhookReceiver,
    job_path: Path,
    marker: str,
    retryable: bool,
) -> None:
    """An output that 404s or is too large: job succeeded, URL kept, download error recorded."""
    job_id = enqueue_with_hook(queue, receiver, job_path, f"a castle {marker}")
    hooks = wait_for(lambda: receiver.for_path(str(job_path)), timeout_s=WAIT_S, what="webhook")
    payload = json.loads(hooks[0].body)
    assert payload["status"] == "succeeded"
    output = payload["outputs"][0]
    assert output["url"]
    assert output["saved"] is None
    assert output["download_error"]["retryable"] is retryable
    job = queue.get(job_id)
    assert job.download_attempts == (4 if retryable else 1)


def test_download_retried_then_saved(worker: WorkerProcess, queue: ImageQueue) -> None:
    """A 404 on the first try (a CDN lagging) is retried and the image saved."""
    job_id = queue.enqueue("a castle sim:file404=1", aspect_ratio="1:1", resolution="1K")
    wait_for(
        lambda: queue.get(job_id).downloads_state == Downloads.DONE, timeout_s=WAIT_S, what="save"
    )
    job = queue.get(job_id)
    assert job.download_attempts == 2
    assert job.outputs[0]["saved"] is not None
    assert job.outputs[0]["download_error"] is None
