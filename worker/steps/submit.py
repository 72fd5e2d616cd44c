"""Submit a queued job to the API once; after a doubtful attempt, look it up first."""

from __future__ import annotations

from imageq.worker.domain import transitions
from imageq.worker.domain.job import Job
from imageq.worker.domain.transitions import Slot
from imageq.worker.errors import ApiError
from imageq.worker.messages import Actions, Submit
from imageq.worker.metrics import JOBS_SUBMITTED
from imageq.worker.policy.backoff import backoff_delay_s
from imageq.worker.policy.polling import first_poll_delay_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.finish import finish
from imageq.worker.steps.loading import load, log
from imageq.worker.upstream.responses import RemoteTask


def submit(rt: Runtime, job_id: str) -> Actions:
    job = load(rt, job_id)
    if job is None:
        return []
    now = rt.clock()
    if (busy := transitions.submit_busy(job, now=now)) is not None:
        return [busy]
    api = rt.settings.api
    lease_s = 2 * (api.connect_timeout_s + api.read_timeout_s) + 5
    slot = _slot(rt, job, expires_at=now + lease_s + rt.settings.polling.deadline_s)
    claim = transitions.claim_submit(job, now=now, lease_s=lease_s, slot=slot)
    if claim is None:
        return []
    claimed = rt.store.apply(claim)
    if claimed.no_slot:
        # The API has all the jobs in flight it may have; ask again shortly.
        wait_s = rt.settings.limits.slot_wait_s * (0.5 + rt.rand())
        return [Submit(job_id, job.lane, countdown_s=wait_s)]
    if not claimed:
        return []
    job = claim.applied_to(job)
    try:
        # A job that was tried before may exist remotely already: an earlier attempt can
        # have timed out or lost its connection after the API had accepted it.
        remote = rt.client.find_by_out_task_id(job.out_task_id) if job.submit_attempts > 1 else None
        if remote is None:
            remote = rt.client.submit(job.out_task_id, job.generation_params)
    except ApiError as error:
        return _failed(rt, job, error)
    return _submitted(rt, job, remote)


def _slot(rt: Runtime, job: Job, *, expires_at: float) -> Slot | None:
    """The API slot a submit must hold, if the in-flight cap is on."""
    limits = rt.settings.limits
    if not limits.max_in_flight:
        return None
    reserve = limits.interactive_reserve if job.lane == "bulk" else 0
    return Slot(limit=limits.max_in_flight - reserve, expires_at=expires_at)


def _submitted(rt: Runtime, claimed: Job, remote: RemoteTask) -> Actions:
    params = claimed.generation_params
    samples = rt.store.generation_samples(params.quality, params.resolution)
    recorded = transitions.record_submit(
        claimed,
        remote_task_id=remote.task_id,
        remote_status=remote.status_word,
        now=rt.clock(),
        first_poll_s=first_poll_delay_s(rt.settings.polling, rt.rand, samples=samples),
        deadline_s=rt.settings.polling.deadline_s,
    )
    if recorded is None or not rt.store.apply(recorded):
        return []
    JOBS_SUBMITTED.inc()
    return recorded.follow_ups()


def _failed(rt: Runtime, claimed: Job, error: ApiError) -> Actions:
    attempt = claimed.submit_attempts
    log.info("submit of job %s, attempt %d, failed: %r", claimed.job_id, attempt, error)
    if not (error.retryable and attempt < rt.settings.retry.max_attempts):
        return finish(
            rt, claimed, transitions.fail_submit(claimed, error=error.to_record(), now=rt.clock())
        )
    delay = max(backoff_delay_s(attempt, rt.settings.retry, rt.rand), error.retry_after_s or 0)
    # A countdown longer than this would be held past the visibility timeout; asking again
    # sooner than a huge Retry-After wants costs one more 429 at worst.
    delay = min(delay, rt.settings.worker.max_countdown_s)
    retry = transitions.retry_submit(
        claimed, error=error.to_record(), now=rt.clock(), delay_s=delay
    )
    if retry is None or not rt.store.apply(retry):
        return []
    return retry.follow_ups()
