"""One webhook attempt for a finished job, on its own retry schedule.

The message carries the attempt number; the record holds the attempts made, when the next
is due, and a short lease while one is being sent. A message that is early hops forward (no
message waits longer than `worker.max_countdown_s`), a stale or duplicate one exits, and a
delivery that runs out of schedule is filed in the dead-letter list in the same write.
"""

from __future__ import annotations

from datetime import UTC, datetime

from imageq.worker.domain import deliveries
from imageq.worker.domain.job import Job
from imageq.worker.domain.payload import completion_payload
from imageq.worker.errors import UnsafeTarget
from imageq.worker.logs import lifecycle
from imageq.worker.messages import Actions
from imageq.worker.metrics import DEAD_LETTERS, NOTIFICATION_LAG, WEBHOOK_ATTEMPTS
from imageq.worker.policy.delivery_schedule import (
    Delivered,
    GiveUp,
    Outcome,
    RetryIn,
    next_delivery,
)
from imageq.worker.policy.leases import lease_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.loading import load, log
from imageq.worker.webhooks.guard import check_target, target_policy
from imageq.worker.webhooks.sending import DeliveryAttempt
from imageq.worker.webhooks.signing import build_webhook


def webhook(rt: Runtime, job_id: str, attempt: int) -> Actions:
    job = load(rt, job_id)
    if job is None:
        return []
    now = rt.clock()
    max_hop_s = rt.settings.worker.max_countdown_s
    if (
        hop := deliveries.webhook_hop(job, attempt=attempt, now=now, max_hop_s=max_hop_s)
    ) is not None:
        return [hop]
    lease = lease_s(rt.settings, "webhook")
    claim = deliveries.claim_webhook(job, attempt=attempt, now=now, lease_s=lease)
    if claim is None or not rt.store.apply(claim):
        return []
    sent, final = _send(rt, job)
    claimed = claim.applied_to(job)
    outcome = next_delivery(
        attempts_made=len(claimed.webhook_attempts) + 1 - claimed.webhook_replay_base,
        http_status=sent.http_status,
        error=sent.error,
        retry_after_s=sent.retry_after_s,
        schedule_s=rt.settings.webhook.schedule_s,
        jitter=rt.settings.webhook.jitter,
        rand=rt.rand,
        final_error=final,
    )
    now = rt.clock()
    _count(claimed, outcome, now=now)
    _log_attempt(claimed, sent, outcome)
    recorded = deliveries.record_webhook(
        claimed, sent=sent.to_record(), outcome=outcome, now=now, max_hop_s=max_hop_s
    )
    if recorded is None or not rt.store.apply(recorded):
        return []
    return recorded.follow_ups()


def _send(rt: Runtime, job: Job) -> tuple[DeliveryAttempt, bool]:
    """One signed POST; (attempt, whether its failure is final)."""
    assert job.webhook_url is not None
    settings = rt.settings.webhook
    now = rt.clock()
    if not settings.secrets:
        return DeliveryAttempt(at=now, duration_s=0.0, error="webhook.secrets is not set"), True
    try:
        # Checked again at delivery: the name may resolve elsewhere than it did at enqueue.
        check_target(job.webhook_url, target_policy(settings))
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


def _log_attempt(job: Job, sent: DeliveryAttempt, outcome: Outcome) -> None:
    """The attempt's lifecycle line: what the receiver said and what happens next."""
    result = {Delivered: "delivered", RetryIn: "retry", GiveUp: "given_up"}[type(outcome)]
    fields = lifecycle(
        "job.webhook_attempt",
        job_id=job.job_id,
        batch_id=job.batch_id,
        attempt=len(job.webhook_attempts) + 1,
        http_status=sent.http_status,
        error=sent.error,
        result=result,
        retry_in_s=outcome.delay_s if isinstance(outcome, RetryIn) else None,
    )
    said = sent.http_status or sent.error
    log.info("webhook of job %s: %s (%s)", job.job_id, said, result, extra=fields)


def _count(job: Job, outcome: Outcome, *, now: float) -> None:
    """The metrics (and the log line of a dead letter) of one attempt's outcome."""
    match outcome:
        case Delivered():
            WEBHOOK_ATTEMPTS.labels("delivered").inc()
            if job.finished_at is not None:
                NOTIFICATION_LAG.labels("webhook").observe(now - job.finished_at)
        case GiveUp(reason):
            log.warning("webhook of job %s given up: %s", job.job_id, reason)
            WEBHOOK_ATTEMPTS.labels("failed").inc()
            DEAD_LETTERS.inc()
        case _:
            WEBHOOK_ATTEMPTS.labels("failed").inc()
