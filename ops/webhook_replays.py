"""Dead letters and replays, for operators (`imageq webhooks`): the webhook deliveries that ran
out of retries, and sending a finished job's webhook again with the same `webhook-id`."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from imageq.config import Settings
from imageq.worker.app import create_app, send_actions
from imageq.worker.domain import deliveries
from imageq.worker.errors import InvalidParams
from imageq.worker.runtime import connect_store
from imageq.worker.store.job_store import JobStore


class WebhookReplays:
    """Read the dead letters; replay one job's webhook, or all dead letters."""

    def __init__(
        self, settings: Settings, *, app: Celery | None = None, store: JobStore | None = None
    ) -> None:
        self._settings = settings
        self._app = app or create_app(settings)
        self._store = store or connect_store(settings)

    def __repr__(self) -> str:
        return f"WebhookReplays(store={self._store!r})"

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        """Webhook deliveries given up on: job id -> {reason, at, attempts}."""
        return self._store.dead_letters()

    def replay(self, job_id: str) -> bool:
        """Deliver a finished job's webhook again, with the same `webhook-id`, on a fresh
        schedule. For dead letters and for receivers that lost what they got. False if a
        delivery is already under way; raises `JobNotFound`, or `InvalidParams` if the job
        has no webhook.
        """
        job = self._store.get(job_id)
        if job.webhook_url is None:
            raise InvalidParams("job_id", f"job {job_id} has no webhook to replay")
        replayed = deliveries.replay_webhook(job, now=time.time())
        if replayed is None or not self._store.apply(replayed):
            return False
        send_actions(self._app, replayed.follow_ups(), self._settings.worker)
        return True

    def replay_dead_letters(self) -> list[str]:
        """Replay every dead letter; return the job ids replayed."""
        return [job_id for job_id in self.dead_letters() if self.replay(job_id)]
