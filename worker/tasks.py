"""The Celery tasks: thin wrappers that run a step and publish its follow-up actions; and, with
`polling.mode = "poller"`, the poller that runs beside them in each worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from celery import Task, signature
from celery.signals import worker_ready, worker_shutdown

from imageq.worker.app import default_app, send_message
from imageq.worker.errors import WriteNotReplicated
from imageq.worker.messages import (
    BATCH_TASK,
    CALLBACK_TASK,
    DOWNLOAD_TASK,
    POLL_TASK,
    SUBMIT_TASK,
    SWEEP_TASK,
    WEBHOOK_TASK,
    Actions,
    PollFacts,
    ScheduleCallback,
    ScheduleDownload,
    SchedulePoll,
    ScheduleWebhook,
    Submit,
)
from imageq.worker.policy.stale_polls import may_be_stale
from imageq.worker.poller import Poller
from imageq.worker.runtime import runtime
from imageq.worker.steps.batch_end import batch_finished
from imageq.worker.steps.callback import callback
from imageq.worker.steps.download import download
from imageq.worker.steps.poll import poll
from imageq.worker.steps.submit import submit
from imageq.worker.steps.sweep import sweep
from imageq.worker.steps.webhook_attempt import webhook

app = default_app()

# Only a lost connection to Redis, or a write its replicas did not acknowledge in time, is
# retried here; API errors are handled inside each step.
_TRANSIENT = {
    "autoretry_for": (redis.ConnectionError, redis.TimeoutError, WriteNotReplicated),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 30,
}


@app.task(name=SUBMIT_TASK, bind=True, **_TRANSIENT)
def submit_job(self: Task, job_id: str) -> None:
    """Submit a queued job to the API (once, even when redelivered)."""
    _publish(submit(runtime(), job_id))


@app.task(name=POLL_TASK, bind=True, **_TRANSIENT)
def poll_job(
    self: Task, job_id: str, token: int, facts: list[Any] | dict[str, Any] | None = None
) -> None:
    """Poll a submitted job once; the token makes a duplicate message a no-op, and a message
    that may be stale checks it before asking the API."""
    rt = runtime()
    if facts is None:
        _publish(poll(rt, job_id, token))
        return
    request = self.request
    stale = may_be_stale(
        redelivered=bool((request.delivery_info or {}).get("redelivered")),
        retries=request.retries or 0,
        due_at=_due_at(request.eta),
        now=rt.clock(),
        grace_s=rt.settings.sweep.grace_s,
    )
    _publish(poll(rt, job_id, token, PollFacts.from_message(facts), check_token=stale))


@app.task(name=DOWNLOAD_TASK, bind=True, **_TRANSIENT)
def download_outputs(self: Task, job_id: str, attempt: int) -> None:
    """Save a finished job's outputs to storage."""
    _publish(download(runtime(), job_id, attempt))


@app.task(name=CALLBACK_TASK, bind=True, **_TRANSIENT)
def send_callback(self: Task, job_id: str) -> None:
    """Publish a finished job's Celery callback."""
    _publish(callback(runtime(), job_id, send=_publish_callback))


@app.task(name=WEBHOOK_TASK, bind=True, **_TRANSIENT)
def deliver_webhook(self: Task, job_id: str, attempt: int) -> None:
    """Make (or wait towards) one webhook attempt."""
    _publish(webhook(runtime(), job_id, attempt))


@app.task(name=BATCH_TASK, bind=True, **_TRANSIENT)
def notify_batch(self: Task, batch_id: str, round_: int = 0) -> None:
    """Send a finished batch's callback and webhook."""
    _publish(batch_finished(runtime(), batch_id, round_, send=_publish_callback))


@app.task(name=SWEEP_TASK, bind=True, **_TRANSIENT)
def sweep_overdue(self: Task) -> None:
    """Re-send overdue work (run by the beat every few seconds); one sweep at a time."""
    rt = runtime()
    # Released when done: a lock left to lapse after a full interval made the beat's next sweep,
    # sent a moment early, skip, and a lost job waited grace + two intervals (the soak saw 25 s).
    token = rt.store.acquire_lock("sweep", ttl_s=rt.settings.sweep.interval_s)
    if token is None:
        return
    try:
        _publish(sweep(rt))
    finally:
        rt.store.release_lock("sweep", token)


def _due_at(eta: str | datetime | None) -> float | None:
    """When a countdown message was published to run (epoch s): Celery's `eta`, ISO text."""
    if eta is None:
        return None
    when = eta if isinstance(eta, datetime) else datetime.fromisoformat(eta)
    return when.timestamp()


def _publish_callback(stored: dict[str, Any], payload: dict[str, Any]) -> None:
    signature(stored, app=app).apply_async(args=(payload,))


def publish_actions(actions: Actions) -> None:
    """Carry out a step's follow-up actions (for code outside a task, such as the poller)."""
    _publish(actions)


def send_actions(actions: Actions) -> None:
    """Send every follow-up as a task message, the first notification attempts too (the
    poller's way out when its notifier threads are all busy)."""
    _publish(actions, notify_here=False)


def _publish(actions: Actions, *, notify_here: bool = True) -> None:
    """Send each follow-up as a task message, except the first attempts of what follows a job's
    end: they run here, in the task that finished the job (a task message fewer each, and no
    queue wait before the result goes out). Only a failed attempt is handed to its retrying
    task. A message would buy no safety: the finishing write files each of them in the job's
    record, due now, and the sweeper re-sends whatever a lost worker left undone."""
    rt = runtime()
    polled_by_poller = rt.settings.polling.mode == "poller"
    for action in actions:
        match action:
            case SchedulePoll() if polled_by_poller:
                pass  # the poll schedule in Redis has it; the poller will take it
            case Submit() if polled_by_poller:
                rt.store.schedule_submits([action], now=rt.clock())  # the poller takes it
            case ScheduleDownload(job_id, attempt, countdown_s) if (
                notify_here and attempt == 1 and not countdown_s and not polled_by_poller
            ):
                # Not on the poller's threads: a download may take seconds.
                _publish(download(rt, job_id, attempt))
            case ScheduleCallback(job_id) if notify_here:
                _publish(callback(rt, job_id, send=_publish_callback))
            case ScheduleWebhook(job_id, attempt, countdown_s) if (
                notify_here and attempt == 1 and not countdown_s
            ):
                _publish(webhook(rt, job_id, attempt))
            case _:
                send_message(app, action, rt.settings.worker)


_poller: Poller | None = None


@worker_ready.connect
def _start_poller(**_: Any) -> None:
    global _poller
    if runtime().settings.polling.mode == "poller":
        _poller = Poller(runtime(), send_now=publish_actions, send_later=send_actions)
        _poller.start()


@worker_shutdown.connect
def _stop_poller(**_: Any) -> None:
    if _poller is not None:
        _poller.stop()
