"""A batch's own notifications, once its last job is terminal: callback and webhook (a scheduled
run's batch has a callback of its own, which writes the run's manifest).

Only the write that finished the batch's last job asks for this, so it runs once; it waits
(a few short hops) for outputs still being saved, so the payload names where they went.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from imageq.worker.domain.job import Downloads
from imageq.worker.domain.payload import batch_payload
from imageq.worker.errors import CorruptRecord
from imageq.worker.logs import lifecycle
from imageq.worker.messages import Actions, BatchFinished
from imageq.worker.runtime import Runtime
from imageq.worker.steps.callback import SendCallback
from imageq.worker.steps.loading import log
from imageq.worker.webhooks.signing import build_webhook

_WAIT_ROUNDS = 60
_WAIT_S = 2.0


def batch_finished(rt: Runtime, batch_id: str, round_: int, *, send: SendCallback) -> Actions:
    try:
        batch = rt.store.get_batch(batch_id)
    except CorruptRecord as error:
        log.error("%s; its notifications are not sent", error)
        return []
    if batch is None:
        return []
    lines = rt.store.batch_jobs(batch_id)
    jobs = dict(zip(lines, rt.store.get_many(list(lines.values())), strict=True))
    saving = any(job and job.downloads_state == Downloads.PENDING for job in jobs.values())
    if saving and round_ < _WAIT_ROUNDS:
        return [BatchFinished(batch_id, countdown_s=_WAIT_S, round=round_ + 1)]
    payload = batch_payload(batch, jobs)
    if batch.callback is not None and rt.store.mark_batch(batch_id, "callback_sent"):
        send(batch.callback, payload)
        task = batch.callback.get("task")
        fields = lifecycle("batch.callback_sent", batch_id=batch_id, task=task)
        log.info("batch %s callback sent: %s", batch_id, task, extra=fields)
    if batch.webhook_url is not None and rt.store.mark_batch(batch_id, "webhook_sent"):
        _send_webhook(rt, batch_id, batch.webhook_url, payload)
    return []


def _send_webhook(rt: Runtime, batch_id: str, url: str, payload: dict[str, Any]) -> None:
    """One attempt: a batch webhook is a summary (each job's own webhook carries its result),
    so it is not retried for a day; its outcome is logged and kept on the batch."""
    settings = rt.settings.webhook
    if not settings.secrets:
        log.warning("batch %s: webhook.secrets is not set; batch webhook not sent", batch_id)
        return
    request = build_webhook(
        url,
        payload,
        job_id=f"batch_{batch_id}",
        secrets=[secret.get_secret_value() for secret in settings.secrets],
        now=datetime.fromtimestamp(rt.clock(), UTC),
    )
    attempt = rt.webhooks.send(request)
    rt.store.note_batch(batch_id, "webhook_attempt", attempt.to_record())
    said = attempt.http_status or attempt.error
    fields = lifecycle(
        "batch.webhook_attempt",
        batch_id=batch_id,
        http_status=attempt.http_status,
        error=attempt.error,
    )
    log.info("batch %s webhook: %s", batch_id, said, extra=fields)
