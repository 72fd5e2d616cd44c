"""The submit's transitions: claim a queued job, send its request, record the task the API made,
or retry later; pure values like every transition (`imageq.worker.domain.transitions`), with
the failure that ends a job (`transitions.fail_submit`) beside the other endings."""

from __future__ import annotations

from typing import Any

from imageq.worker.domain.job import Job, JobFields
from imageq.worker.domain.status import JobStatus
from imageq.worker.domain.transitions import SLOT_GRACE_S, Slot, Transition
from imageq.worker.messages import PollFacts, SchedulePoll, Submit


def claim_submit(
    job: Job, *, now: float, lease_s: float, send_s: float | None, slot: Slot | None
) -> Transition | None:
    """Start a submit attempt: count it and take a lease (and an API slot, if capped). With
    `send_s` the attempt sends its submit at once, so the same write marks the request as
    possibly reaching the API for that long (see `send_submit`).

    The work is due now: the sweeper takes it back `sweep.grace_s` later if the lease has
    ended by then and the job is still queued."""
    if job.status is not JobStatus.QUEUED or job.submit_lease_until > now:
        return None
    changes: JobFields = {
        "submit_attempts": job.submit_attempts + 1,
        "submit_lease_until": now + lease_s,
        "submit_first_at": job.submit_first_at if job.submit_first_at is not None else now,
    }
    if send_s is not None:
        changes["submit_sent_until"] = now + send_s
    return Transition(
        job.job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": job.submit_attempts},
        changes=changes,
        slot=slot,
        due_at=now,
    )


def release_claim(
    claimed: Job, *, now: float, sent_until: float, due_at: float, free_slot: bool
) -> Transition:
    """Give back a claim whose submit was not sent after all (the request budget put it off at
    the last moment): no lease, the request window as it was before the claim, the job due
    again at `due_at`, and the attempt not counted (a wait for the budget is no failure)."""
    return Transition(
        claimed.job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": claimed.submit_attempts},
        changes={
            "submit_attempts": claimed.submit_attempts - 1,
            "submit_lease_until": 0.0,
            "submit_sent_until": sent_until,
            "updated_at": now,
        },
        due_at=due_at,
        free_slot=free_slot,
    )


def looks_up_first(job: Job) -> bool:
    """Whether the next submit attempt asks the API for the job before sending it: an earlier
    attempt may have reached the API (its answer lost, or its worker gone). A record from
    before `submit_first_at` was kept cannot tell, so any earlier attempt counts."""
    legacy = job.submit_attempts > 0 and job.submit_first_at is None
    return job.submit_sent_until > 0 or legacy


def send_submit(claimed: Job, *, now: float, send_s: float) -> Transition | None:
    """The claimed attempt looked the job up, found nothing, and sends it now: mark that the
    API may act on it until `now + send_s`. Refused once another attempt has claimed the job,
    or while an earlier request may still land (a second submit could create a second task)."""
    if claimed.status is not JobStatus.QUEUED or claimed.submit_sent_until > now:
        return None
    return Transition(
        claimed.job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": claimed.submit_attempts},
        changes={"submit_sent_until": now + send_s},
    )


def submit_busy(job: Job, *, now: float) -> Submit | None:
    """Another worker is inside a submit attempt: check again once its lease ends."""
    if job.status is not JobStatus.QUEUED or job.submit_lease_until <= now:
        return None
    return Submit(job.job_id, job.lane, countdown_s=job.submit_lease_until - now + 0.1)


def record_submit(
    claimed: Job,
    *,
    remote_task_id: str,
    remote_status: str | None,
    now: float,
    first_poll_s: float,
    deadline_s: float,
    outage_window_s: float,
) -> Transition | None:
    """The API holds a task for the job: it is submitted, its first poll due.

    Any attempt may record it, not only the latest: an attempt whose answer came after
    another attempt had taken over still knows the one task the API created. The slot is kept
    past the deadline for the last check an outage may delay (`outage_window_s`)."""
    if claimed.status is not JobStatus.QUEUED:
        return None
    deadline = now + deadline_s
    params = claimed.generation_params
    facts = PollFacts(
        remote_task_id, deadline, claimed.poll_count, now, params.quality, params.resolution
    )
    return Transition(
        claimed.job_id,
        expect={"status": JobStatus.QUEUED},
        changes={
            "status": JobStatus.SUBMITTED,
            "remote_task_id": remote_task_id,
            "remote_status": remote_status,
            "submitted_at": now,
            "deadline_at": deadline,
            "submit_lease_until": 0.0,
            "submit_sent_until": 0.0,
            "poll_token": 1,
            "next_poll_at": now + first_poll_s,
        },
        slot_expires_at=deadline + outage_window_s + SLOT_GRACE_S,
        due_at=now + first_poll_s,
        then=(SchedulePoll(claimed.job_id, 1, first_poll_s, facts),),
    )


def retry_submit(
    claimed: Job, *, error: dict[str, Any] | None, now: float, delay_s: float, sent_until: float
) -> Transition | None:
    """The claimed attempt failed in a way worth retrying: give up the lease, try again after
    `delay_s`; `sent_until` is what the job's `submit_sent_until` is after this attempt."""
    if claimed.status is not JobStatus.QUEUED:
        return None
    return Transition(
        claimed.job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": claimed.submit_attempts},
        changes={"submit_lease_until": 0.0, "error": error, "submit_sent_until": sent_until},
        due_at=now + delay_s,
        then=(Submit(claimed.job_id, claimed.lane, delay_s),),
    )
