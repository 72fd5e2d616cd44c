"""Submit a queued job to the API once; after a doubtful attempt, look it up first.

A claim holds the job for `sweep.grace_s` (`worker.policy.leases`), so a lost worker's job is
taken back quickly; a submit request, though, may be acted on by the API until its timeouts
run out. So the record keeps when the latest request may still land (`submit_sent_until`), and
an attempt that takes over before then only looks the job up: it adopts the task if the API
has one, and otherwise waits for the request window to close before it sends its own.
"""

from __future__ import annotations

from imageq.worker.domain import submits, transitions
from imageq.worker.domain.job import Job
from imageq.worker.domain.transitions import Slot
from imageq.worker.errors import ApiError
from imageq.worker.logs import lifecycle
from imageq.worker.messages import Actions, Submit
from imageq.worker.metrics import JOBS_SUBMITTED, SUBMIT_SLOT_WAITS
from imageq.worker.policy.leases import lease_s, submit_send_s
from imageq.worker.policy.polling import first_poll_delay_s
from imageq.worker.policy.submit_retry import may_have_reached_api, submit_retry_delay_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.finish import finish
from imageq.worker.steps.loading import load, log
from imageq.worker.steps.put_off import put_back_submit, put_off_submit
from imageq.worker.upstream.responses import RemoteTask

# After an earlier request's window closes, the next attempt comes this much later.
_AFTER_WINDOW_S = 0.1


def submit(rt: Runtime, job_id: str) -> Actions:
    job = load(rt, job_id)
    if job is None:
        return []
    now = rt.clock()
    if (busy := submits.submit_busy(job, now=now)) is not None:
        return [busy]
    look_first = submits.looks_up_first(job)
    send_s = submit_send_s(rt.settings.api)
    slot = _slot(rt, job, expires_at=now + send_s + rt.settings.polling.deadline_s)
    claim = submits.claim_submit(
        job,
        now=now,
        lease_s=lease_s(rt.settings, "submit"),
        send_s=None if look_first else send_s,
        slot=slot,
    )
    if claim is None:
        return []
    # Only a submit that would go asks the budget: a copy (the sweeper's, say) of a job taken
    # already must not use up a turn.
    requester = f"submit:{job_id}"
    grant = rt.gate.acquire("submit", requester)
    if not grant.allowed:
        return put_off_submit(rt, job, grant)
    claimed = rt.store.apply(claim)
    if not claimed:
        rt.gate.unused(grant)
    if claimed.no_slot:
        # The API has all the jobs in flight it may have; ask again shortly.
        SUBMIT_SLOT_WAITS.inc()
        wait_s = rt.settings.limits.slot_wait_s * (0.5 + rt.rand())
        return [Submit(job_id, job.lane, countdown_s=wait_s)]
    if not claimed:
        return []
    before_send = job.submit_sent_until  # as it was before this attempt
    job = claim.applied_to(job)
    if not _within_budget(rt, job):
        rt.gate.unused(grant)  # no request goes: a probe's lease is freed for another
        return finish(rt, job, transitions.cancel_for_budget(job, now=rt.clock()))
    # The claim (and the credit check) took a moment: a turn that has passed meanwhile is
    # not used late (it would crowd the turns after it); a new one is taken or waited for.
    grant = rt.gate.retake(grant, "submit", requester)
    if not grant.allowed:
        return put_back_submit(rt, job, grant, sent_until=before_send)
    if look_first:
        try:
            # An earlier attempt can have timed out or lost its connection (or its worker)
            # after the API had accepted it: adopt that task rather than submit again.
            remote = rt.client.find_by_out_task_id(job.out_task_id)
        except ApiError as error:
            rt.gate.settle(grant, error)
            return _failed(rt, job, error, sent_until=before_send)
        # One turn of the budget covers the lookup and the submit that may follow it.
        rt.gate.settle(grant, None)
        if remote is not None:
            return _submitted(rt, job, remote)
        sending = submits.send_submit(job, now=rt.clock(), send_s=send_s)
        if sending is None:
            return _after_window(rt, job)
        if not rt.store.apply(sending):
            return []  # another attempt has taken over
        job = sending.applied_to(job)
    try:
        remote = rt.client.submit(job.out_task_id, job.generation_params)
    except ApiError as error:
        rt.gate.settle(grant, error)
        # The request is over (answered, timed out or dropped): if it may have reached the API
        # the next attempt looks the job up first, but need not wait for its window.
        reached = may_have_reached_api(error)
        return _failed(rt, job, error, sent_until=rt.clock() if reached else before_send)
    if not look_first:
        rt.gate.settle(grant, None)
    return _submitted(rt, job, remote)


def _within_budget(rt: Runtime, claimed: Job) -> bool:
    """Whether the job's batch's credit budget, if any, lets it reach the API (atomic across
    workers: `CostRecords.admit_to_budget`)."""
    if claimed.batch_id is None:
        return True
    params = claimed.generation_params
    return rt.store.admit_to_budget(
        claimed.batch_id,
        claimed.job_id,
        quality=params.quality,
        resolution=params.resolution,
        default=rt.settings.cost.default_job_credits,
    )


def _slot(rt: Runtime, job: Job, *, expires_at: float) -> Slot | None:
    """The API slot a submit must hold, if the in-flight cap is on."""
    limits = rt.settings.limits
    if not limits.max_in_flight:
        return None
    reserve = limits.interactive_reserve if job.lane == "bulk" else 0
    return Slot(limit=limits.max_in_flight - reserve, expires_at=expires_at)


def _submitted(rt: Runtime, claimed: Job, remote: RemoteTask) -> Actions:
    params = claimed.generation_params
    samples = rt.samples.ordered(params.quality, params.resolution)
    recorded = submits.record_submit(
        claimed,
        remote_task_id=remote.task_id,
        remote_status=remote.status_word,
        now=rt.clock(),
        first_poll_s=first_poll_delay_s(rt.settings.polling, rt.rand, samples=samples),
        deadline_s=rt.settings.polling.deadline_s,
        outage_window_s=rt.settings.retry.outage_window_s,
    )
    if recorded is None or not rt.store.apply(recorded):
        return []
    ids = {"job_id": claimed.job_id, "batch_id": claimed.batch_id, "remote_task_id": remote.task_id}
    fields = lifecycle("job.submitted", **ids, attempt=claimed.submit_attempts)
    log.info("job %s submitted: remote task %s", claimed.job_id, remote.task_id, extra=fields)
    JOBS_SUBMITTED.inc()
    return recorded.follow_ups()


def _after_window(rt: Runtime, claimed: Job) -> Actions:
    """The API has no task for the job yet, but an earlier request may still land: try again
    (with a lookup first) once its window has closed, keeping the error the job has."""
    now = rt.clock()
    delay_s = max(0.0, claimed.submit_sent_until - now) + _AFTER_WINDOW_S
    retry = submits.retry_submit(
        claimed,
        error=claimed.error,
        now=now,
        delay_s=delay_s,
        sent_until=claimed.submit_sent_until,
    )
    if retry is None or not rt.store.apply(retry):
        return []
    return retry.follow_ups()


def _failed(rt: Runtime, claimed: Job, error: ApiError, *, sent_until: float) -> Actions:
    """The attempt's request failed: retry within the outage window, or end the job. The
    error recorded names the request that failed (the lookup's, if that was the one)."""
    attempt = claimed.submit_attempts
    now = rt.clock()
    assert claimed.submit_first_at is not None  # set by the claim
    delay_s = submit_retry_delay_s(
        error,
        attempt=attempt,
        first_attempt_at=claimed.submit_first_at,
        now=now,
        retry=rt.settings.retry,
        max_countdown_s=rt.settings.worker.max_countdown_s,
        rand=rt.rand,
    )
    ids = {"job_id": claimed.job_id, "batch_id": claimed.batch_id}
    fields = lifecycle(
        "job.submit_failed", **ids, attempt=attempt, reason=repr(error), retry_in_s=delay_s
    )
    log.info(
        "submit of job %s, attempt %d, failed: %r", claimed.job_id, attempt, error, extra=fields
    )
    if delay_s is None:
        ending = transitions.fail_submit(claimed, error=error.to_record(), now=now)
        return finish(rt, claimed, ending)
    retry = submits.retry_submit(
        claimed, error=error.to_record(), now=now, delay_s=delay_s, sent_until=sent_until
    )
    if retry is None or not rt.store.apply(retry):
        return []
    return retry.follow_ups()
