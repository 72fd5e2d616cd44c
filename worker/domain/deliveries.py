"""After a job's end: the transitions that save its outputs and deliver its notifications.

Each piece of work is claimed under a lease before it is done and marked after, so a duplicate
message finds it claimed and does nothing, and a lost worker's lease runs out and the sweeper
sends the work again. Pure, like `imageq.worker.domain.transitions`: a change the record does
not allow is refused (None), and `JobStore.apply` carries out the rest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from imageq.worker.domain.job import Delivery, Downloads, Job, JobFields
from imageq.worker.domain.transitions import DeadLetter, Transition, notifications
from imageq.worker.messages import ScheduleDownload, ScheduleWebhook
from imageq.worker.policy.delivery_schedule import Delivered, GiveUp, Outcome, RetryIn


def claim_download(job: Job, *, attempt: int, now: float, lease_s: float) -> Transition | None:
    """Start download attempt number `attempt` under a lease (refused unless it is the next
    attempt of a pending download and no other worker holds the lease)."""
    if job.downloads_state is not Downloads.PENDING or job.download_attempts + 1 != attempt:
        return None
    if job.download_lease_until > now:
        return None
    return Transition(
        job.job_id,
        expect=_download_expect(job),
        changes={"download_lease_until": now + lease_s},
        due_at=now,
    )


def mark_download(
    claimed: Job,
    *,
    outputs: list[dict[str, Any]],
    max_attempts: int,
    now: float,
    delay_s: float,
    retry_until: float = 0.0,
) -> Transition | None:
    """Record the claimed attempt's outputs: retried after `delay_s` while an output failed in a
    way worth retrying and attempts are left (or, for a host that is away, until `retry_until`,
    so an outage shorter than that never costs a saved image), else done, and the
    notifications go out.

    The first attempt of this number to finish is kept, whether or not its lease ran out (a
    slow download may have been started again by the sweeper): the lease is not checked."""
    if claimed.downloads_state is not Downloads.PENDING:
        return None
    attempt = claimed.download_attempts + 1
    changes: JobFields = {
        "outputs": outputs,
        "download_attempts": attempt,
        "download_lease_until": 0.0,
    }
    expect: JobFields = {
        "downloads_state": Downloads.PENDING,
        "download_attempts": claimed.download_attempts,
    }
    worth_it = any(_retryable(output) for output in outputs)
    outage = any(_outage(output) for output in outputs)
    if worth_it and (attempt < max_attempts or (outage and now < retry_until)):
        return Transition(
            claimed.job_id,
            expect=expect,
            changes=changes,
            due_at=now + delay_s,
            then=(ScheduleDownload(claimed.job_id, attempt + 1, delay_s),),
        )
    changes["downloads_state"] = Downloads.DONE
    then = notifications(claimed)
    return Transition(
        claimed.job_id,
        expect=expect,
        changes=changes,
        due_at=now if then else None,
        settled=not then,
        then=then,
    )


def claim_callback(job: Job, *, now: float, lease_s: float) -> Transition | None:
    """Take the job's callback to publish it: pending, or sending under a lease that ran out
    (its worker was lost before it marked it sent)."""
    lost = job.callback_state is Delivery.SENDING and job.callback_lease_until <= now
    if job.callback is None or not (job.callback_state is Delivery.PENDING or lost):
        return None
    return Transition(
        job.job_id,
        expect={
            "callback_state": job.callback_state,
            "callback_lease_until": job.callback_lease_until,
        },
        changes={"callback_state": Delivery.SENDING, "callback_lease_until": now + lease_s},
        due_at=now,
    )


def mark_callback(claimed: Job) -> Transition | None:
    """The claimed callback is published: sent, and the job settled if nothing else is left."""
    if claimed.callback_state is not Delivery.SENDING:
        return None
    changes: JobFields = {"callback_state": Delivery.SENT}
    return Transition(
        claimed.job_id,
        expect={"callback_state": Delivery.SENDING},
        changes=changes,
        settled=_settles(claimed, changes),
    )


def webhook_hop(job: Job, *, attempt: int, now: float, max_hop_s: float) -> ScheduleWebhook | None:
    """The current attempt's message came early: send it on towards its due time, in a hop of
    at most `max_hop_s` (no message may wait past the broker's visibility timeout)."""
    if not _webhook_current(job, attempt) or job.webhook_next_at is None:
        return None
    if job.webhook_next_at <= now:
        return None
    return ScheduleWebhook(job.job_id, attempt, min(job.webhook_next_at - now, max_hop_s))


def claim_webhook(job: Job, *, attempt: int, now: float, lease_s: float) -> Transition | None:
    """Start webhook attempt number `attempt` under a lease (refused unless it is the pending
    delivery's next attempt, due, and no other worker holds the lease)."""
    if not _webhook_current(job, attempt) or (job.webhook_next_at or now) > now:
        return None
    if job.webhook_lease_until > now:
        return None
    return Transition(
        job.job_id,
        expect={
            "webhook_state": Delivery.PENDING,
            "webhook_attempts": job.webhook_attempts,
            "webhook_lease_until": job.webhook_lease_until,
        },
        changes={"webhook_lease_until": now + lease_s},
        due_at=now,
    )


def record_webhook(
    claimed: Job, *, sent: dict[str, Any], outcome: Outcome, now: float, max_hop_s: float
) -> Transition | None:
    """Record the claimed attempt (`sent`) with what the delivery schedule made of it."""
    match outcome:
        case Delivered():
            return mark_webhook_sent(claimed, sent=sent, now=now)
        case RetryIn(delay_s):
            return retry_webhook(claimed, sent=sent, now=now, delay_s=delay_s, max_hop_s=max_hop_s)
        case GiveUp(reason):
            return dead_letter_webhook(claimed, sent=sent, reason=reason, now=now)


def mark_webhook_sent(claimed: Job, *, sent: dict[str, Any], now: float) -> Transition | None:
    """The receiver took the webhook: delivered."""
    return _webhook_over(claimed, sent, Delivery.SENT, now=now)


def dead_letter_webhook(
    claimed: Job, *, sent: dict[str, Any], reason: str, now: float
) -> Transition | None:
    """The delivery is given up: dead, and filed in the dead-letter list (in the same write)."""
    return _webhook_over(claimed, sent, Delivery.DEAD, now=now, reason=reason)


def retry_webhook(
    claimed: Job, *, sent: dict[str, Any], now: float, delay_s: float, max_hop_s: float
) -> Transition | None:
    """The attempt failed and the schedule has more: the next attempt is due after `delay_s`."""
    if claimed.webhook_state is not Delivery.PENDING:
        return None
    attempts = [*claimed.webhook_attempts, sent]
    return Transition(
        claimed.job_id,
        expect=_webhook_expect(claimed),
        changes={
            "webhook_attempts": attempts,
            "webhook_lease_until": 0.0,
            "webhook_next_at": now + delay_s,
        },
        due_at=now + delay_s,
        then=(ScheduleWebhook(claimed.job_id, len(attempts) + 1, min(delay_s, max_hop_s)),),
    )


def replay_webhook(job: Job, *, now: float) -> Transition | None:
    """Deliver a finished job's webhook again (it was delivered, or given up), with the same
    webhook id, on a fresh schedule; it leaves the dead-letter list."""
    if job.webhook_url is None or job.webhook_state not in (Delivery.DEAD, Delivery.SENT):
        return None
    attempt = len(job.webhook_attempts) + 1
    return Transition(
        job.job_id,
        expect={"webhook_state": job.webhook_state, "webhook_attempts": job.webhook_attempts},
        changes={
            "webhook_state": Delivery.PENDING,
            "webhook_next_at": now,
            "webhook_lease_until": 0.0,
            "webhook_replay_base": len(job.webhook_attempts),
        },
        revive=True,
        then=(ScheduleWebhook(job.job_id, attempt),),
    )


def _webhook_over(
    claimed: Job, sent: dict[str, Any], state: Delivery, *, now: float, reason: str | None = None
) -> Transition | None:
    """The last attempt of a delivery: delivered or dead; the job settled unless its callback
    is still to go out."""
    if claimed.webhook_state is not Delivery.PENDING:
        return None
    attempts = [*claimed.webhook_attempts, sent]
    dead: DeadLetter | None = None
    if reason is not None:
        dead = {"reason": reason, "at": now, "attempts": len(attempts)}
    changes: JobFields = {
        "webhook_attempts": attempts,
        "webhook_lease_until": 0.0,
        "webhook_state": state,
        "webhook_next_at": None,
    }
    settled = _settles(claimed, changes)
    return Transition(
        claimed.job_id,
        expect=_webhook_expect(claimed),
        changes=changes,
        due_at=None if settled else now,
        settled=settled,
        dead_letter=dead,
    )


def _settles(claimed: Job, changes: JobFields) -> bool:
    """Whether the record, once `changes` are made, has nothing left to do (`Job.is_settled`)."""
    fields: dict[str, Any] = dict(changes)
    return replace(claimed, **fields).is_settled


def _webhook_current(job: Job, attempt: int) -> bool:
    """`attempt` is the next attempt of a pending delivery."""
    return (
        job.webhook_state is Delivery.PENDING
        and job.webhook_url is not None
        and len(job.webhook_attempts) + 1 == attempt
    )


def _webhook_expect(claimed: Job) -> JobFields:
    # The lease is not checked: the attempts list already tells this attempt from any other.
    return {"webhook_state": Delivery.PENDING, "webhook_attempts": claimed.webhook_attempts}


def _download_expect(job: Job) -> JobFields:
    return {
        "downloads_state": Downloads.PENDING,
        "download_attempts": job.download_attempts,
        "download_lease_until": job.download_lease_until,
    }


def _retryable(output: dict[str, Any]) -> bool:
    return bool((output.get("download_error") or {}).get("retryable"))


def _outage(output: dict[str, Any]) -> bool:
    """A retryable download error that says the host is away (no answer, 429, 5xx), not that
    the file is not there yet: only those are retried past the attempts, for the window."""
    error = output.get("download_error") or {}
    status = error.get("http_status")
    return bool(error.get("retryable")) and (status is None or status == 429 or status >= 500)
