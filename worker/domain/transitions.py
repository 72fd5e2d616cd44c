"""The job record's state machine: every change a job can go through, as a pure value.

Each function takes the record as last read (and the clock), and returns the `Transition` that
makes the change: the fields the write expects, the fields it changes, what it does to the
store's indexes, and the follow-up actions once it is applied. A change the record does not
allow is refused: the function returns None. Nothing here reads or writes anything; the job
store's one compare-and-set write carries a transition out (`JobStore.apply`), and it alone
decides, against the record as it is by then, whether the transition still applies.

The submit's own transitions are in `imageq.worker.domain.submits`; the outputs and
notifications after a job's end are in `imageq.worker.domain.deliveries`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final, TypedDict

from imageq.worker.domain.cost import BUDGET_CANCELLED
from imageq.worker.domain.job import Delivery, Downloads, Job, JobFields
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import (
    Action,
    Actions,
    BatchFinished,
    PollFacts,
    ScheduleCallback,
    ScheduleDownload,
    SchedulePoll,
    ScheduleWebhook,
    Submit,
)
from imageq.worker.policy.polling import Finish

# A slot outlives its job's deadline by this much, in case the job's last steps are slow; a job
# that finishes releases it at once, and one that never does (a lost worker) lets it lapse.
SLOT_GRACE_S: Final = 60.0

# The errors recorded on a job that did not end by the API's word.
CANCELLED: Final = {"type": "Cancelled", "message": "cancelled on request", "retryable": False}
LATE: Final = {"type": "JobError", "message": "no result before the deadline", "retryable": False}


@dataclass(frozen=True)
class Slot:
    """Take an API slot with this write, or refuse the write: at most `limit` held at once,
    each held until `expires_at` (epoch s) unless released when its job finishes."""

    limit: int
    expires_at: float


class DeadLetter(TypedDict):
    """Why a webhook delivery was given up, filed in the dead-letter list."""

    reason: str
    at: float
    attempts: int


@dataclass(frozen=True)
class Transition:
    """One checked write of a job record, and what follows once it is applied.

    The write applies only if every field in `expect` still holds that value. `due_at` files
    the job in the in-flight index; `settled` takes it out. `slot` takes an API slot (or the
    store refuses the write); `slot_expires_at` moves a held slot's expiry; `free_slot` gives
    it back. `dead_letter` files the job in the dead-letter list; `revive` takes it out.
    """

    job_id: str
    expect: JobFields
    changes: JobFields
    due_at: float | None = None
    settled: bool = False
    free_slot: bool = False
    slot: Slot | None = None
    slot_expires_at: float | None = None
    dead_letter: DeadLetter | None = None
    revive: bool = False
    then: tuple[Action, ...] = ()
    # Set on a job's end: the batch to tell if this write finished the batch's last job.
    ends_in_batch: str | None = None

    def follow_ups(self, *, batch_complete: bool = False) -> Actions:
        """The actions to publish once the write is applied (`batch_complete`: the store says
        it finished the batch's last job)."""
        if batch_complete and self.ends_in_batch is not None:
            return [*self.then, BatchFinished(self.ends_in_batch)]
        return list(self.then)

    def applied_to(self, job: Job) -> Job:
        """The record as this transition leaves it (but `updated_at`, which the store stamps)."""
        changes: dict[str, Any] = dict(self.changes)
        return replace(job, **changes)


def fail_submit(claimed: Job, *, error: dict[str, Any], now: float) -> Transition | None:
    """The claimed attempt failed for good: the job ends as failed."""
    if claimed.status is not JobStatus.QUEUED:
        return None
    expect: JobFields = {"status": JobStatus.QUEUED, "submit_attempts": claimed.submit_attempts}
    return _end(claimed, expect, Finish(JobStatus.FAILED, error=error), now=now, saving=False)


def cancel_for_budget(claimed: Job, *, now: float) -> Transition | None:
    """The claimed job's batch has reached its credit budget: it ends cancelled, reason
    `budget`, without reaching the API."""
    if claimed.status is not JobStatus.QUEUED:
        return None
    expect: JobFields = {"status": JobStatus.QUEUED, "submit_attempts": claimed.submit_attempts}
    outcome = Finish(JobStatus.CANCELLED, error=dict(BUDGET_CANCELLED))
    return _end(claimed, expect, outcome, now=now, saving=False)


def poll_on(
    job_id: str,
    *,
    token: int,
    facts: PollFacts,
    now: float,
    delay_s: float,
    remote_status: str | None,
) -> Transition:
    """A poll found the job not finished: hand on the token, poll again after `delay_s`.

    Never refused here: a poll that goes on has not read the record (its message carries
    `facts`), so only the write's check of the status and the token decides."""
    count = facts.poll_count + 1
    return Transition(
        job_id,
        expect={"status": JobStatus.SUBMITTED, "poll_token": token},
        changes={
            "poll_token": token + 1,
            "poll_count": count,
            "next_poll_at": now + delay_s,
            "remote_status": remote_status,
        },
        due_at=now + delay_s,
        then=(SchedulePoll(job_id, token + 1, delay_s, replace(facts, poll_count=count)),),
    )


def finish_poll(
    job: Job,
    *,
    token: int,
    outcome: Finish,
    now: float,
    poll_count: int,
    storage_on: bool,
    credits_used: float | None = None,
) -> Transition | None:
    """A poll (holding the current `token`) found the job over: it ends with `outcome`, its
    outputs to be saved first if storage is on and it succeeded with some."""
    if job.status is not JobStatus.SUBMITTED or job.poll_token != token:
        return None
    saving = storage_on and outcome.status is JobStatus.SUCCEEDED and bool(outcome.output_urls)
    expect: JobFields = {"status": JobStatus.SUBMITTED, "poll_token": token}
    return _end(
        job, expect, outcome, now=now, saving=saving, poll_count=poll_count, credits=credits_used
    )


def time_out(job: Job, *, now: float, grace_s: float) -> Transition | None:
    """A submitted job more than `grace_s` past its deadline (no poll got through): it ends as
    timed out. The sweeper's grace covers the last check an API outage may delay."""
    if job.status is not JobStatus.SUBMITTED or job.deadline_at is None:
        return None
    if now <= job.deadline_at + grace_s:
        return None
    expect: JobFields = {"status": JobStatus.SUBMITTED, "poll_token": job.poll_token}
    outcome = Finish(JobStatus.TIMED_OUT, error=dict(LATE))
    return _end(job, expect, outcome, now=now, saving=False)


def cancel(job: Job, *, now: float) -> Transition | None:
    """Stop a job that has not finished: no more polls, status cancelled, notifications due."""
    if job.is_terminal:
        return None
    expect: JobFields = {"status": job.status, "poll_token": job.poll_token}
    outcome = Finish(JobStatus.CANCELLED, error=dict(CANCELLED))
    return _end(job, expect, outcome, now=now, saving=False)


def release(job: Job, *, now: float) -> Transition | None:
    """Send a held job (of a paced bulk run) to the submit queue, once."""
    if not job.held or job.status is not JobStatus.QUEUED:
        return None
    return Transition(
        job.job_id,
        expect={"held": True},
        changes={"held": False},
        due_at=now,
        then=(Submit(job.job_id, job.lane),),
    )


def settle(job: Job) -> Transition | None:
    """Take a job with nothing left to do out of the in-flight index."""
    if not job.is_settled:
        return None
    return Transition(job.job_id, expect={}, changes={}, settled=True)


def notifications(job: Job) -> tuple[Action, ...]:
    """What goes out once a finished job's outputs are settled: its callback and its webhook."""
    actions: list[Action] = []
    if job.callback is not None:
        actions.append(ScheduleCallback(job.job_id))
    if job.webhook_url is not None:
        actions.append(ScheduleWebhook(job.job_id, attempt=1))
    return tuple(actions)


def _end(
    job: Job,
    expect: JobFields,
    outcome: Finish,
    *,
    now: float,
    saving: bool,
    poll_count: int | None = None,
    credits: float | None = None,
) -> Transition:
    """The one write that ends a job: its terminal status, outputs and error; the slot given
    back; then its outputs saved (if `saving`) or its notifications sent."""
    width, height = job.generation_params.size
    changes: JobFields = {
        "status": outcome.status,
        "finished_at": now,
        "outputs": [{"url": url, "width": width, "height": height} for url in outcome.output_urls],
        "error": outcome.error,
        "next_poll_at": None,
        "downloads_state": Downloads.PENDING if saving else Downloads.NONE,
        "callback_state": Delivery.PENDING if job.callback else Delivery.NONE,
        "webhook_state": Delivery.PENDING if job.webhook_url else Delivery.NONE,
        "webhook_next_at": now if job.webhook_url else None,
    }
    if poll_count is not None:
        changes["poll_count"] = poll_count
    if credits is not None:
        # The store adds it to the batch's total in this same write (lua/write.lua).
        changes["credits_used"] = credits
    then = (ScheduleDownload(job.job_id, attempt=1),) if saving else notifications(job)
    return Transition(
        job.job_id,
        expect=expect,
        changes=changes,
        free_slot=True,
        # Due now while outputs or notifications are still to go out, else nothing is left.
        due_at=now if then else None,
        settled=not then,
        then=then,
        ends_in_batch=job.batch_id,
    )
