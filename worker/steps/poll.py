"""Ask the API about a submitted job once, then poll again or finish it.

`poll` does it all on one thread. The poller splits it at the API request (`start_poll`, the
GET sent through its event loop, `end_poll`), so no thread waits for the answer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from imageq.worker.domain import transitions
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import ApiError
from imageq.worker.logs import bind_job, lifecycle
from imageq.worker.messages import Actions, PollFacts
from imageq.worker.metrics import POLLS
from imageq.worker.policy.polling import Finish, next_step
from imageq.worker.policy.request_budget import Grant
from imageq.worker.runtime import Runtime
from imageq.worker.steps.costs import credits_of
from imageq.worker.steps.finish import finish
from imageq.worker.steps.loading import load, log
from imageq.worker.steps.put_off import put_off_poll
from imageq.worker.upstream.responses import RemoteTask


@dataclass(frozen=True, slots=True)
class PollStarted:
    """A poll past its checks and the request gate, its API request still to be answered."""

    job_id: str
    token: int
    facts: PollFacts
    grant: Grant
    job: Job | None  # the record, where the poll had to read it


def poll(
    rt: Runtime,
    job_id: str,
    token: int,
    facts: PollFacts | None = None,
    *,
    check_token: bool = True,
) -> Actions:
    """One poll. With the job's `facts` from the message, the record is read only to finish it:
    a poll that goes on costs the checked write, and before the API call a check of its token
    (two small fields) unless `check_token` is False: the message is known to hold the job's
    current token (`imageq.worker.policy.stale_polls`), so the write alone decides."""
    started = start_poll(rt, job_id, token, facts, check_token=check_token)
    if not isinstance(started, PollStarted):
        return started
    return end_poll(rt, started, partial(rt.client.get_task, started.facts.remote_task_id))


def start_poll(
    rt: Runtime,
    job_id: str,
    token: int,
    facts: PollFacts | None = None,
    *,
    check_token: bool = True,
) -> Actions | PollStarted:
    """A poll's first half, up to its API request: the started poll, or what to do instead (a
    stale poll: nothing; one the gate refuses: put off). Ask the API, then `end_poll`."""
    job: Job | None = None
    if facts is None:
        job = _pollable(rt, job_id, token)
        if job is None:
            return []
        facts = poll_facts(job)
    else:
        bind_job(job_id, remote_task_id=facts.remote_task_id, batch_id=None)
        # A message that may be stale (a dead worker's, back after the visibility timeout; an
        # original the sweeper's copy overtook) must not cost an API call.
        if check_token and not rt.store.poll_is_current(job_id, token):
            return []
    grant = rt.gate.acquire("poll", f"poll:{job_id}")
    if not grant.allowed:
        return put_off_poll(rt, job_id, token, facts, grant)
    POLLS.inc()
    return PollStarted(job_id, token, facts, grant, job)


def end_poll(rt: Runtime, started: PollStarted, ask: Callable[[], RemoteTask]) -> Actions:
    """A poll's second half: `ask` for the task (the request itself, or the reading of an
    answer that has come), then poll again later or finish the job."""
    job_id, token, facts = started.job_id, started.token, started.facts
    bind_job(job_id, remote_task_id=facts.remote_task_id, batch_id=None)  # maybe another thread
    remote: RemoteTask | None = None
    error: ApiError | None = None
    try:
        remote = ask()
    except ApiError as caught:
        error = caught
    rt.gate.settle(started.grant, error)
    if error is not None:
        fields = lifecycle("job.poll_failed", job_id=job_id, reason=repr(error))
        log.info("poll of job %s failed: %r", job_id, error, extra=fields)
    now = rt.clock()
    step = next_step(
        remote=remote,
        error=error,
        now=now,
        deadline=facts.deadline_at,
        timing=rt.settings.polling,
        rand=rt.rand,
        outage_window_s=rt.settings.retry.outage_window_s,
        elapsed_s=now - facts.submitted_at,
        samples=_recent_times(rt, facts),
    )
    if log.isEnabledFor(logging.DEBUG):
        status = remote.status_word if remote else None
        then = (
            f"finish: {step.status}"
            if isinstance(step, Finish)
            else f"poll in {step.delay_s:.2f} s"
        )
        fields = lifecycle("job.polled", job_id=job_id, remote_status=status, next=then)
        log.debug("poll of job %s: %s, then %s", job_id, status, then, extra=fields)
    if isinstance(step, Finish):
        job = started.job or _pollable(rt, job_id, token)
        if job is None:
            return []
        credits = None
        if remote is not None and step.status is JobStatus.SUCCEEDED:
            _learn_generation_time(rt, job, remote, now)
            credits = credits_of(rt, remote)
        ending = transitions.finish_poll(
            job,
            token=token,
            outcome=step,
            now=now,
            poll_count=facts.poll_count + 1,
            storage_on=rt.storage is not None,
            credits_used=credits,
        )
        return finish(rt, job, ending)
    moving = transitions.poll_on(
        job_id,
        token=token,
        facts=facts,
        now=now,
        delay_s=step.delay_s,
        remote_status=remote.status_word if remote else None,
    )
    return moving.follow_ups() if rt.store.hand_on_poll(moving) else []


def poll_facts(job: Job) -> PollFacts:
    """The facts a submitted job's poll messages carry."""
    assert job.remote_task_id is not None
    assert job.deadline_at is not None
    facts = PollFacts(job.remote_task_id, job.deadline_at, job.poll_count)
    if job.submitted_at is None:
        return facts
    params = job.generation_params
    return replace(
        facts,
        submitted_at=job.submitted_at,
        quality=params.quality,
        resolution=params.resolution,
    )


def _recent_times(rt: Runtime, facts: PollFacts) -> tuple[float, ...]:
    """Recent generation times of the job's kind, ascending, to place the next poll by (none
    for facts without a kind, or with `adaptive` off: the plain schedule then)."""
    if not facts.quality or not rt.settings.polling.adaptive:
        return ()
    return rt.samples.ordered(facts.quality, facts.resolution)


def _pollable(rt: Runtime, job_id: str, token: int) -> Job | None:
    """The job, if this poll (token) is still its current one."""
    job = load(rt, job_id)
    if job is None or job.status is not JobStatus.SUBMITTED or job.poll_token != token:
        return None
    return job


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
