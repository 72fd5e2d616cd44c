"""The Celery tasks: thin wrappers that run a pipeline step and schedule its follow-up."""

from __future__ import annotations

from typing import Any

import redis
from celery import Task, signature

from worker import pipeline
from worker.app import NOTIFY_TASK, POLL_TASK, SUBMIT_TASK, app
from worker.runtime import runtime

# Only a lost connection to Redis is retried here; API errors are handled inside each step.
_TRANSIENT = {
    "autoretry_for": (redis.ConnectionError, redis.TimeoutError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 30,
}


@app.task(name=SUBMIT_TASK, bind=True, **_TRANSIENT)
def submit_job(self: Task, job_id: str) -> None:
    """Submit a queued job to the API (once, even when redelivered)."""
    _schedule(pipeline.submit(runtime(), job_id))


@app.task(name=POLL_TASK, bind=True, **_TRANSIENT)
def poll_job(self: Task, job_id: str, token: int) -> None:
    """Poll a submitted job once; the token makes a duplicate message a no-op."""
    _schedule(pipeline.poll(runtime(), job_id, token))


@app.task(name=NOTIFY_TASK, bind=True, **_TRANSIENT)
def notify_job(self: Task, job_id: str) -> None:
    """Send a finished job's result to its callback and webhook."""
    _schedule(pipeline.notify(runtime(), job_id, send_callback=_send_callback))


def _send_callback(callback: dict[str, Any], result: dict[str, Any]) -> None:
    signature(callback, app=app).apply_async(args=(result,))


def _schedule(follow_up: pipeline.FollowUp) -> None:
    match follow_up:
        case pipeline.SchedulePoll(job_id, token, countdown_s):
            poll_job.apply_async((job_id, token), countdown=countdown_s)
        case pipeline.ScheduleNotify(job_id, countdown_s):
            notify_job.apply_async((job_id,), countdown=countdown_s)
        case pipeline.RetrySubmit(job_id, countdown_s):
            submit_job.apply_async((job_id,), countdown=countdown_s)
        case None:
            pass
