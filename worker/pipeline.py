"""What the submit, poll and notify tasks do, apart from Celery.

Each step reads the job, talks to the API or a webhook once, writes its outcome with a
compare-and-set, and returns the follow-up for the task to schedule. A step that loses a
compare-and-set (a duplicate or stale message) returns `None` and changes nothing, so
redeliveries can never fork a polling chain, submit twice, or finish a job twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.errors import ApiError, JobNotFound
from worker.job import Job, Notify
from worker.polling import Finish, PollAgain, backoff_delay_s, first_poll_delay_s, next_step
from worker.responses import RemoteTask
from worker.runtime import Runtime
from worker.status import JobStatus
from worker.webhooks import build_webhook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulePoll:
    """Run the poll task for this job with this token after `countdown_s`."""

    job_id: str
    token: int
    countdown_s: float


@dataclass(frozen=True)
class ScheduleNotify:
    """Run the notify task for this job (after `countdown_s`, when retrying a webhook)."""

    job_id: str
    countdown_s: float = 0.0


@dataclass(frozen=True)
class RetrySubmit:
    """Run the submit task again after `countdown_s`."""

    job_id: str
    countdown_s: float


FollowUp = SchedulePoll | ScheduleNotify | RetrySubmit | None
SendCallback = Callable[[dict[str, Any], dict[str, Any]], None]
"""Publishes a callback: takes the stored signature and the result payload."""


def submit(rt: Runtime, job_id: str) -> FollowUp:
    """Send a queued job to the API once; after a doubtful attempt, look it up first."""
    job = _load(rt, job_id)
    if job is None or job.status is not JobStatus.QUEUED:
        return None
    now = rt.clock()
    if job.submit_lease_until > now:
        # Another worker is inside an attempt right now; check again once its lease ends.
        return RetrySubmit(job_id, countdown_s=job.submit_lease_until - now + 0.1)
    attempt = job.submit_attempts + 1
    api = rt.settings.api
    lease_s = 2 * (api.connect_timeout_s + api.read_timeout_s) + 5
    claimed = rt.store.update(
        job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": job.submit_attempts},
        changes={"submit_attempts": attempt, "submit_lease_until": now + lease_s},
    )
    if not claimed:
        return None
    try:
        # A job that was tried before may exist remotely already: an earlier attempt can
        # have timed out or lost its connection after the API had accepted it.
        remote = rt.client.find_by_out_task_id(job.out_task_id) if attempt > 1 else None
        if remote is None:
            remote = rt.client.submit(job.out_task_id, job.generation_params)
    except ApiError as error:
        return _submit_failed(rt, job, attempt, error)
    return _submitted(rt, job, attempt, remote)


def poll(rt: Runtime, job_id: str, token: int) -> FollowUp:
    """Ask the API about a submitted job once, then poll again or finish it."""
    job = _load(rt, job_id)
    if job is None or job.status is not JobStatus.SUBMITTED or job.poll_token != token:
        return None
    assert job.remote_task_id is not None
    assert job.deadline_at is not None
    remote: RemoteTask | None = None
    error: ApiError | None = None
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
        return _finish(rt, job, step, expect=expect, poll_count=job.poll_count + 1)
    assert isinstance(step, PollAgain)
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
    return SchedulePoll(job_id, token + 1, step.delay_s) if moved else None


def notify(rt: Runtime, job_id: str, *, send_callback: SendCallback) -> FollowUp:
    """Deliver a finished job's result to its callback and its webhook, each once.

    `send_callback(signature, result)` publishes the callback; it is passed in so this
    module stays free of Celery.
    """
    job = _load(rt, job_id)
    if job is None or not job.is_terminal:
        return None
    result = job.result()
    if job.callback_state == Notify.PENDING and job.callback is not None:
        # Published first, marked after: a crash in between repeats the callback rather than
        # losing it. Only the one notify message per job gets here (see _finish).
        send_callback(job.callback, result)
        rt.store.update(
            job_id,
            expect={"callback_state": Notify.PENDING},
            changes={"callback_state": Notify.SENT},
        )
    if job.webhook_state == Notify.PENDING and job.webhook_url is not None:
        return _send_webhook(rt, job, result)
    return None


def _submitted(rt: Runtime, job: Job, attempt: int, remote: RemoteTask) -> FollowUp:
    now = rt.clock()
    delay = first_poll_delay_s(rt.settings.polling, rt.rand)
    recorded = rt.store.update(
        job.job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": attempt},
        changes={
            "status": JobStatus.SUBMITTED,
            "remote_task_id": remote.task_id,
            "remote_status": remote.status_word,
            "submitted_at": now,
            "deadline_at": now + rt.settings.polling.deadline_s,
            "submit_lease_until": 0.0,
            "poll_token": 1,
            "next_poll_at": now + delay,
        },
        due_at=now + delay,
    )
    return SchedulePoll(job.job_id, 1, delay) if recorded else None


def _submit_failed(rt: Runtime, job: Job, attempt: int, error: ApiError) -> FollowUp:
    log.info("submit of job %s, attempt %d, failed: %r", job.job_id, attempt, error)
    if error.retryable and attempt < rt.settings.retry.max_attempts:
        delay = max(backoff_delay_s(attempt, rt.settings.retry, rt.rand), error.retry_after_s or 0)
        released = rt.store.update(
            job.job_id,
            expect={"status": JobStatus.QUEUED, "submit_attempts": attempt},
            changes={"submit_lease_until": 0.0, "error": error.to_record()},
        )
        return RetrySubmit(job.job_id, delay) if released else None
    step = Finish(JobStatus.FAILED, error=error.to_record())
    return _finish(rt, job, step, expect={"status": JobStatus.QUEUED, "submit_attempts": attempt})


def _finish(
    rt: Runtime, job: Job, step: Finish, *, expect: dict[str, Any], poll_count: int | None = None
) -> FollowUp:
    """Move the job to its terminal status; only the winner of the CAS schedules a notify."""
    width, height = job.generation_params.size
    changes: dict[str, Any] = {
        "status": step.status,
        "finished_at": rt.clock(),
        "outputs": [{"url": url, "width": width, "height": height} for url in step.output_urls],
        "error": step.error,
        "next_poll_at": None,
        "callback_state": Notify.PENDING if job.callback else Notify.NONE,
        "webhook_state": Notify.PENDING if job.webhook_url else Notify.NONE,
    }
    if poll_count is not None:
        changes["poll_count"] = poll_count
    finished = rt.store.update(job.job_id, expect=expect, changes=changes, done=True)
    if not finished:
        return None
    log.info("job %s finished: %s", job.job_id, step.status)
    needs_notify = job.callback is not None or job.webhook_url is not None
    return ScheduleNotify(job.job_id) if needs_notify else None


def _send_webhook(rt: Runtime, job: Job, result: dict[str, Any]) -> FollowUp:
    secret = rt.settings.webhook.secret
    assert job.webhook_url is not None
    if secret is None:
        state, attempts = Notify.FAILED, [{"error": "webhook.secret is not set"}]
    else:
        request = build_webhook(
            job.webhook_url,
            result,
            job_id=job.job_id,
            secret=secret.get_secret_value(),
            now=datetime.fromtimestamp(rt.clock(), UTC),
        )
        attempt = rt.webhooks.send(request)
        attempts = [*job.webhook_attempts, attempt.to_record()]
        if attempt.delivered:
            state = Notify.SENT
        elif len(attempts) >= rt.settings.webhook.max_attempts:
            state = Notify.FAILED
        else:
            state = Notify.PENDING
    updated = rt.store.update(
        job.job_id,
        expect={"webhook_state": Notify.PENDING, "webhook_attempts": job.webhook_attempts},
        changes={"webhook_state": state, "webhook_attempts": attempts},
    )
    if updated and state == Notify.PENDING:
        return ScheduleNotify(
            job.job_id, backoff_delay_s(len(attempts), rt.settings.retry, rt.rand)
        )
    return None


def _load(rt: Runtime, job_id: str) -> Job | None:
    try:
        return rt.store.get(job_id)
    except JobNotFound:
        log.warning("job %s has no record (expired or never created); message dropped", job_id)
        return None
