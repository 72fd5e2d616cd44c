"""Ask the API about a submitted job once, then poll again or finish it."""

from __future__ import annotations

from worker.errors import ApiError
from worker.job import Job
from worker.metrics import POLLS
from worker.polling import Finish, next_step
from worker.responses import RemoteTask
from worker.runtime import Runtime
from worker.status import JobStatus
from worker.steps.actions import Actions, SchedulePoll
from worker.steps.common import load, log
from worker.steps.finish import finish


def poll(rt: Runtime, job_id: str, token: int) -> Actions:
    job = load(rt, job_id)
    if job is None or job.status is not JobStatus.SUBMITTED or job.poll_token != token:
        return []
    assert job.remote_task_id is not None
    assert job.deadline_at is not None
    remote: RemoteTask | None = None
    error: ApiError | None = None
    POLLS.inc()
    try:
        remote = rt.client.get_task(job.remote_task_id)
    except ApiError as caught:
        error = caught
        log.info("poll of job %s failed: %r", job_id, caught)
    now = rt.clock()
    step = next_step(
        remote=remote,
        error=error,
        now=now,
        deadline=job.deadline_at,
        timing=rt.settings.polling,
        rand=rt.rand,
    )
    expect = {"status": JobStatus.SUBMITTED, "poll_token": token}
    if isinstance(step, Finish):
        if remote is not None and step.status is JobStatus.SUCCEEDED:
            _learn_generation_time(rt, job, remote, now)
        return finish(rt, job, step, expect=expect, poll_count=job.poll_count + 1)
    due = now + step.delay_s
    moved = rt.store.update(
        job_id,
        expect=expect,
        changes={
            "poll_token": token + 1,
            "poll_count": job.poll_count + 1,
            "next_poll_at": due,
            "remote_status": remote.status_word if remote else None,
        },
        due_at=due,
    )
    return [SchedulePoll(job_id, token + 1, step.delay_s)] if moved else []


def _learn_generation_time(rt: Runtime, job: Job, remote: RemoteTask, now: float) -> None:
    """Keep how long this job took, for the adaptive first poll of the next ones like it: the
    platform's own times when it gives them, else submit to now (an upper bound)."""
    assert job.submitted_at is not None
    seconds = remote.generation_s
    if seconds is None:
        seconds = now - job.submitted_at
    params = job.generation_params
    window = rt.settings.polling.adaptive_window
    rt.store.add_generation_sample(params.quality, params.resolution, seconds, window=window)
