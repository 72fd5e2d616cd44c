"""`ImageQueue`: the way in for Python producers, and module-level shortcuts over a default one.

Everything is checked before anything is stored or queued; a refused job leaves no trace.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Final

from celery import Celery

from config import Settings, get_settings
from worker.app import SUBMIT_TASK, WEBHOOK_TASK, create_app
from worker.errors import InvalidParams, UnsafeTarget, WaitTimeout
from worker.job import Delivery, Job
from worker.params import DEFAULT_QUALITY, validate_params
from worker.runtime import connect_store
from worker.store import JobStore
from worker.targets import check_webhook_target

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
MAX_METADATA_BYTES: Final = 16 * 1024


class ImageQueue:
    """Enqueue generation jobs and read their records."""

    def __init__(
        self,
        settings: Settings,
        *,
        app: Celery | None = None,
        store: JobStore | None = None,
    ) -> None:
        self._settings = settings
        self._app = app or create_app(settings)
        self._store = store or connect_store(settings)

    def __repr__(self) -> str:
        return f"ImageQueue(store={self._store!r})"

    def enqueue(
        self,
        prompt: str,
        *,
        aspect_ratio: str,
        resolution: str,
        quality: str = DEFAULT_QUALITY,
        reference_images: Sequence[str] = (),
        extra_params: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        webhook_url: str | None = None,
        callback: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Validate and queue a job; return its id. An id already in use is returned as it is,
        and nothing is submitted again. `callback` is a Celery signature, called with the
        result payload as its first argument.
        """
        params = validate_params(
            prompt,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            quality=quality,
            reference_images=reference_images,
            extra=extra_params,
        )
        job_id = _job_id(job_id)
        now = time.time()
        job = Job(
            job_id=job_id,
            params=params.to_record(),
            created_at=now,
            updated_at=now,
            metadata=_plain_json("metadata", metadata or {}, limit=MAX_METADATA_BYTES),
            webhook_url=self._webhook_url(webhook_url),
            callback=_plain_json("callback", callback, limit=None) if callback else None,
        )
        if not self._store.create(job):
            return job_id
        try:
            self._app.send_task(SUBMIT_TASK, args=[job_id])
        except BaseException:
            # Not queued, so not kept: the producer can enqueue the same id again.
            self._store.delete(job_id)
            raise
        return job_id

    def get(self, job_id: str) -> Job:
        """The job's record; raises `JobNotFound` if there is none."""
        return self._store.get(job_id)

    def wait(self, job_id: str, timeout_s: float, *, check_every_s: float = 0.25) -> Job:
        """Block until the job is terminal and return it; raise `WaitTimeout` after timeout_s."""
        give_up = time.monotonic() + timeout_s
        while True:
            job = self._store.get(job_id)
            if job.is_terminal:
                return job
            left = give_up - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"job {job_id} is still {job.status} after {timeout_s:g} s")
            time.sleep(min(check_every_s, left))

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        """Webhook deliveries given up on: job id -> {reason, at, attempts}."""
        return self._store.dead_letters()

    def replay_webhook(self, job_id: str) -> bool:
        """Deliver a finished job's webhook again, with the same `webhook-id`, on a fresh
        schedule. For dead letters and for receivers that lost what they got. False if a
        delivery is already under way; raises `JobNotFound`, or `InvalidParams` if the job
        has no webhook.
        """
        job = self._store.get(job_id)
        if job.webhook_url is None:
            raise InvalidParams("job_id", f"job {job_id} has no webhook to replay")
        for state in (Delivery.DEAD, Delivery.SENT):
            replayed = self._store.update(
                job_id,
                expect={"webhook_state": state, "webhook_attempts": job.webhook_attempts},
                changes={
                    "webhook_state": Delivery.PENDING,
                    "webhook_next_at": time.time(),
                    "webhook_lease_until": 0.0,
                    "webhook_replay_base": len(job.webhook_attempts),
                },
                revive=True,
            )
            if replayed:
                attempt = len(job.webhook_attempts) + 1
                self._app.send_task(WEBHOOK_TASK, args=[job_id, attempt])
                return True
        return False

    def replay_dead_letters(self) -> list[str]:
        """Replay every dead letter; return the job ids replayed."""
        return [job_id for job_id in self.dead_letters() if self.replay_webhook(job_id)]

    def _webhook_url(self, url: str | None) -> str | None:
        if url is None:
            return None
        if not self._settings.webhook.secrets:
            raise InvalidParams(
                "webhook_url", "webhooks are signed: set webhook.secrets (IMAGEQ_WEBHOOK__SECRETS)"
            )
        try:
            check_webhook_target(url, allow_private=self._settings.webhook.allow_private_targets)
        except UnsafeTarget as error:
            raise InvalidParams("webhook_url", str(error)) from None
        return url


def _job_id(job_id: str | None) -> str:
    if job_id is None:
        return f"iq_{uuid.uuid4().hex}"
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidParams(
            "job_id", "1 to 128 characters: letters, digits and _ . : - (starting alphanumeric)"
        )
    return job_id


def _plain_json(field: str, value: Any, *, limit: int | None) -> Any:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as error:
        raise InvalidParams(field, f"must be plain JSON ({error})") from None
    if limit is not None and len(text.encode()) > limit:
        raise InvalidParams(field, f"{len(text.encode()):,} bytes; at most {limit:,} are allowed")
    return json.loads(text)


@cache
def default_queue() -> ImageQueue:
    """The process's `ImageQueue`, built from `get_settings()` on first use."""
    return ImageQueue(get_settings())


def enqueue(prompt: str, **options: Any) -> str:
    """`ImageQueue.enqueue` on the default queue."""
    return default_queue().enqueue(prompt, **options)


def get(job_id: str) -> Job:
    """`ImageQueue.get` on the default queue."""
    return default_queue().get(job_id)


def wait(job_id: str, timeout_s: float) -> Job:
    """`ImageQueue.wait` on the default queue."""
    return default_queue().wait(job_id, timeout_s)
