"""Submit a queued job to the API once; after a doubtful attempt, look it up first."""

from __future__ import annotations

from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import ApiError
from imageq.worker.messages import Actions, PollFacts, SchedulePoll, Submit
from imageq.worker.metrics import JOBS_SUBMITTED
from imageq.worker.policy.backoff import backoff_delay_s
from imageq.worker.policy.polling import Finish, first_poll_delay_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.finish import finish
from imageq.worker.steps.loading import load, log
from imageq.worker.store.job_store import Slot
from imageq.worker.upstream.responses import RemoteTask

# A slot outlives its job's deadline by this much, in case the job's last steps are slow; a job
# that finishes releases it at once, and one that never does (a lost worker) lets it lapse.
_SLOT_GRACE_S = 60.0


def submit(rt: Runtime, job_id: str) -> Actions:
    job = load(rt, job_id)
    if job is None or job.status is not JobStatus.QUEUED:
        return []
    now = rt.clock()
    if job.submit_lease_until > now:
        # Another worker is inside an attempt right now; check again once its lease ends.
        return [Submit(job_id, job.lane, countdown_s=job.submit_lease_until - now + 0.1)]
    attempt = job.submit_attempts + 1
    api = rt.settings.api
    lease_s = 2 * (api.connect_timeout_s + api.read_timeout_s) + 5
    claimed = rt.store.update(
        job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": job.submit_attempts},
        changes={"submit_attempts": attempt, "submit_lease_until": now + lease_s},
        slot=_slot(rt, job, expires_at=now + lease_s + rt.settings.polling.deadline_s),
        due_at=now + lease_s,
    )
    if claimed.no_slot:
        # The API has all the jobs in flight it may have; ask again shortly.
        wait_s = rt.settings.limits.slot_wait_s * (0.5 + rt.rand())
        return [Submit(job_id, job.lane, countdown_s=wait_s)]
    if not claimed:
        return []
    try:
        # A job that was tried before may exist remotely already: an earlier attempt can
        # have timed out or lost its connection after the API had accepted it.
        remote = rt.client.find_by_out_task_id(job.out_task_id) if attempt > 1 else None
        if remote is None:
            remote = rt.client.submit(job.out_task_id, job.generation_params)
    except ApiError as error:
        return _failed(rt, job, attempt, error)
    return _submitted(rt, job, attempt, remote)


def _slot(rt: Runtime, job: Job, *, expires_at: float) -> Slot | None:
    """The API slot a submit must hold, if the in-flight cap is on."""
    limits = rt.settings.limits
    if not limits.max_in_flight:
        return None
    reserve = limits.interactive_reserve if job.lane == "bulk" else 0
    return Slot(limit=limits.max_in_flight - reserve, expires_at=expires_at)


def _submitted(rt: Runtime, job: Job, attempt: int, remote: RemoteTask) -> Actions:
    now = rt.clock()
    params = job.generation_params
    samples = rt.store.generation_samples(params.quality, params.resolution)
    delay = first_poll_delay_s(rt.settings.polling, rt.rand, samples=samples)
    deadline = now + rt.settings.polling.deadline_s
    recorded = rt.store.update(
        job.job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": attempt},
        slot_expires_at=now + rt.settings.polling.deadline_s + _SLOT_GRACE_S,
        changes={
            "status": JobStatus.SUBMITTED,
            "remote_task_id": remote.task_id,
            "remote_status": remote.status_word,
            "submitted_at": now,
            "deadline_at": deadline,
            "submit_lease_until": 0.0,
            "poll_token": 1,
            "next_poll_at": now + delay,
        },
        due_at=now + delay,
    )
    if not recorded:
        return []
    JOBS_SUBMITTED.inc()
    facts = PollFacts(remote.task_id, deadline, job.poll_count)
    return [SchedulePoll(job.job_id, 1, delay, facts)]


def _failed(rt: Runtime, job: Job, attempt: int, error: ApiError) -> Actions:
    log.info("submit of job %s, attempt %d, failed: %r", job.job_id, attempt, error)
    expect = {"status": JobStatus.QUEUED, "submit_attempts": attempt}
    if error.retryable and attempt < rt.settings.retry.max_attempts:
        delay = max(backoff_delay_s(attempt, rt.settings.retry, rt.rand), error.retry_after_s or 0)
        # A countdown longer than this would be held past the visibility timeout; asking again
        # sooner than a huge Retry-After wants costs one more 429 at worst.
        delay = min(delay, rt.settings.worker.max_countdown_s)
        released = rt.store.update(
            job.job_id,
            expect=expect,
            changes={"submit_lease_until": 0.0, "error": error.to_record()},
            due_at=rt.clock() + delay,
        )
        return [Submit(job.job_id, job.lane, delay)] if released else []
    return finish(rt, job, Finish(JobStatus.FAILED, error=error.to_record()), expect=expect)
