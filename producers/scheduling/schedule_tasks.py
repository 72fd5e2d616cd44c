"""The tasks of scheduled runs: the one beat sends on each tick, and the batch callback that
writes a run's manifest. Thin, like `imageq.worker.tasks`; the worker imports this module by its
name only (`imageq.worker.app.TASK_MODULES`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cache
from typing import Any

import redis
from celery import Task
from celery.signals import worker_ready

from imageq.producers.api import ImageQueue
from imageq.producers.scheduling.held_schedule import hold_schedule
from imageq.producers.scheduling.schedule_records import ScheduleRecords
from imageq.producers.scheduling.scheduled_run import (
    SCHEDULED_RUN_FINISHED_TASK,
    SCHEDULED_RUN_TASK,
    finish_run,
    run_scheduled,
)
from imageq.worker.app import default_app
from imageq.worker.runtime import runtime

app = default_app()

_MAX_RETRIES = 30
_MAX_BACKOFF_S = 30.0

log = logging.getLogger(__name__)


@cache
def schedule_records() -> ScheduleRecords:
    """This process's connection to the schedule records (redis-py pools survive a fork)."""
    return ScheduleRecords.connect(runtime().settings)


@app.task(name=SCHEDULED_RUN_TASK, bind=True)
def scheduled_run(self: Task, name: str, tick_at: str | None = None) -> None:
    """Queue the batch of run `name` for the slot of `tick_at` (ISO 8601; beat leaves it out:
    now). A retry keeps the first attempt's time, so it resumes that slot's batch."""
    rt = runtime()
    tick_at = tick_at or datetime.fromtimestamp(rt.clock(), UTC).isoformat()
    queue = ImageQueue(rt.settings, app=app, store=rt.store)
    try:
        run_scheduled(
            rt,
            queue,
            name,
            tick_at=datetime.fromisoformat(tick_at),
            worker=self.request.hostname,
            records=schedule_records(),
        )
    except (redis.ConnectionError, redis.TimeoutError) as error:
        backoff_s = min(_MAX_BACKOFF_S, 2.0**self.request.retries) * (0.5 + rt.rand() / 2)
        raise self.retry(
            args=[name, tick_at], exc=error, countdown=backoff_s, max_retries=_MAX_RETRIES
        ) from error


@app.task(
    name=SCHEDULED_RUN_FINISHED_TASK,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=1,
    retry_backoff_max=_MAX_BACKOFF_S,
    retry_jitter=True,
    max_retries=_MAX_RETRIES,
)
def scheduled_run_finished(payload: dict[str, Any]) -> None:
    """Write the manifest of the scheduled run whose batch just ended (`payload` is the batch's
    completion payload)."""
    rt = runtime()
    finish_run(rt, ImageQueue(rt.settings, app=app, store=rt.store), payload)


@worker_ready.connect
def _report_schedule_file(sender: Any = None, **_: Any) -> None:
    # At start, so `imageq health` can tell a worker without the scheduler's file before the
    # first tick fails. A Redis that is not there yet must not stop the worker: the first tick
    # reports again.
    rt = runtime()
    held = hold_schedule(rt.settings.schedule)
    records = schedule_records()
    try:
        records.report_worker(str(sender.hostname), held.report(rt.clock()))
        published = records.published_schedule()
    except redis.RedisError as error:
        log.warning("schedule file not reported: Redis unavailable (%s)", error)
        return
    if published and published.get("runs") and held.fingerprint != published.get("fingerprint"):
        log.warning(
            "scheduled runs: this worker's schedule (%s) is not the scheduler's (%s, fingerprint"
            " %s): its ticks may fail here",
            held.problem or f"{held.file}, fingerprint {held.fingerprint}",
            published.get("file"), published.get("fingerprint"),
        )  # fmt: skip
