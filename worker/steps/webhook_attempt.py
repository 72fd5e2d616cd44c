"""One webhook attempt for a finished job, on its own retry schedule.

The message carries the attempt number; the record holds the attempts made, when the next
is due, and a short lease while one is being sent. A message that is early hops forward (no
message waits longer than `worker.max_countdown_s`), a stale or duplicate one exits, and a
delivery that runs out of schedule is filed in the dead-letter list in the same write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from imageq.worker.domain.job import Delivery, Job
from imageq.worker.domain.payload import completion_payload
from imageq.worker.errors import UnsafeTarget
from imageq.worker.messages import Actions, ScheduleWebhook
from imageq.worker.metrics import DEAD_LETTERS, NOTIFICATION_LAG, WEBHOOK_ATTEMPTS
from imageq.worker.policy.delivery_schedule import Delivered, GiveUp, RetryIn, next_delivery
from imageq.worker.runtime import Runtime
from imageq.worker.steps.loading import load, log
from imageq.worker.webhooks.guard import check_webhook_target
from imageq.worker.webhooks.sending import DeliveryAttempt
from imageq.worker.webhooks.signing import build_webhook


def webhook(rt: Runtime, job_id: str, attempt: int) -> Actions:
    job = load(rt, job_id)
    if job is None or job.webhook_state != Delivery.PENDING or job.webhook_url is None:
        return []
    if len(job.webhook_attempts) + 1 != attempt:
        return []
    now = rt.clock()
    due = job.webhook_next_at or now
    if due > now:
        return [
            ScheduleWebhook(job_id, attempt, min(due - now, rt.settings.worker.max_countdown_s))
        ]
    if job.webhook_lease_until > now:
        return []  # another worker is sending this very attempt
    lease_s = 2 * rt.settings.webhook.timeout_s + 5
    expect: dict[str, Any] = {
        "webhook_state": Delivery.PENDING,
        "webhook_attempts": job.webhook_attempts,
        "webhook_lease_until": job.webhook_lease_until,
    }
    claim = {"webhook_lease_until": now + lease_s}
    if not rt.store.update(job_id, expect=expect, changes=claim, due_at=now + lease_s):
        return []
    sent, final = _send(rt, job)
    return _record(rt, job, attempt, sent, final=final)


def _send(rt: Runtime, job: Job) -> tuple[DeliveryAttempt, bool]:
    """One signed POST; (attempt, whether its failure is final)."""
    assert job.webhook_url is not None
    settings = rt.settings.webhook
    now = rt.clock()
    if not settings.secrets:
        return DeliveryAttempt(at=now, duration_s=0.0, error="webhook.secrets is not set"), True
    try:
        # Checked again at delivery: the name may resolve elsewhere than it did at enqueue.
        check_webhook_target(job.webhook_url, allow_private=settings.allow_private_targets)
    except UnsafeTarget as error:
        return DeliveryAttempt(at=now, duration_s=0.0, error=str(error)), True
    request = build_webhook(
        job.webhook_url,
        completion_payload(job),
        job_id=job.job_id,
        secrets=[secret.get_secret_value() for secret in settings.secrets],
        now=datetime.fromtimestamp(now, UTC),
    )
    return rt.webhooks.send(request), False


def _record(rt: Runtime, job: Job, attempt: int, sent: DeliveryAttempt, *, final: bool) -> Actions:
    settings = rt.settings.webhook
    attempts = [*job.webhook_attempts, sent.to_record()]
    outcome = next_delivery(
        attempts_made=len(attempts) - job.webhook_replay_base,
        http_status=sent.http_status,
        error=sent.error,
        retry_after_s=sent.retry_after_s,
        schedule_s=settings.schedule_s,
        jitter=settings.jitter,
        rand=rt.rand,
        final_error=final,
    )
    now = rt.clock()
    changes: dict[str, Any] = {"webhook_attempts": attempts, "webhook_lease_until": 0.0}
    dead_letter = None
    actions: Actions = []
    callback_busy = job.callback_state in (Delivery.PENDING, Delivery.SENDING)
    index: dict[str, Any] = {"settled": True} if not callback_busy else {"due_at": now}
    match outcome:
        case Delivered():
            changes.update(webhook_state=Delivery.SENT, webhook_next_at=None)
            WEBHOOK_ATTEMPTS.labels("delivered").inc()
            if job.finished_at is not None:
                NOTIFICATION_LAG.labels("webhook").observe(now - job.finished_at)
        case RetryIn(delay_s):
            WEBHOOK_ATTEMPTS.labels("failed").inc()
            changes["webhook_next_at"] = now + delay_s
            index = {"due_at": now + delay_s}
            hop_s = min(delay_s, rt.settings.worker.max_countdown_s)
            actions.append(ScheduleWebhook(job.job_id, attempt + 1, hop_s))
        case GiveUp(reason):
            changes.update(webhook_state=Delivery.DEAD, webhook_next_at=None)
            dead_letter = {"reason": reason, "at": now, "attempts": len(attempts)}
            log.warning("webhook of job %s given up: %s", job.job_id, reason)
            WEBHOOK_ATTEMPTS.labels("failed").inc()
            DEAD_LETTERS.inc()
    recorded = rt.store.update(
        job.job_id,
        expect={"webhook_state": Delivery.PENDING, "webhook_attempts": job.webhook_attempts},
        changes=changes,
        dead_letter=dead_letter,
        **index,
    )
    return actions if recorded else []
