"""The task beat sends on each tick of a scheduled run: thin, like `imageq.worker.tasks`."""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from celery import Task

from imageq.producers.api import ImageQueue
from imageq.producers.scheduling.run import SCHEDULED_RUN_TASK, run_scheduled
from imageq.worker.app import app
from imageq.worker.runtime import runtime

_MAX_RETRIES = 30
_MAX_BACKOFF_S = 30.0


@app.task(name=SCHEDULED_RUN_TASK, bind=True)  # type: ignore[untyped-decorator]  # Celery: no hints
def scheduled_run(self: Task, name: str, tick_at: str | None = None) -> None:
    """Queue the batch of run `name` for the slot of `tick_at` (ISO 8601; beat leaves it out:
    now). A retry keeps the first attempt's time, so it resumes that slot's batch."""
    rt = runtime()
    tick_at = tick_at or datetime.fromtimestamp(rt.clock(), UTC).isoformat()
    queue = ImageQueue(rt.settings, app=app, store=rt.store)
    try:
        run_scheduled(rt, queue, name, tick_at=datetime.fromisoformat(tick_at))
    except (redis.ConnectionError, redis.TimeoutError) as error:
        backoff_s = min(_MAX_BACKOFF_S, 2.0**self.request.retries) * (0.5 + rt.rand() / 2)
        raise self.retry(
            args=[name, tick_at], exc=error, countdown=backoff_s, max_retries=_MAX_RETRIES
        ) from error
