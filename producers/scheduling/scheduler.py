"""The beat scheduler: celery-redbeat, with the runs of the schedule file as its entries.

redbeat keeps the schedule (each entry's last run) and a lock in Redis: only the beat that holds
the lock sends ticks, renewing it on every loop, and a standby beat started beside it waits for
the lock and takes over once it lapses. The schedule file is read here, when beat starts, not
in `celery_config`: producers and workers import the Celery app and never depend on it.

On every loop the active beat publishes the schedule it runs (its file, fingerprint, and each
run's next due time) to the job store (`schedule_records`), for `imageq schedules`, `imageq
health`, and the workers, which refuse a tick for a run they define otherwise.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from celery.schedules import crontab, schedule
from redbeat import RedBeatScheduler
from redbeat.schedulers import RedBeatSchedulerEntry, get_redis
from redis.exceptions import LockNotOwnedError

from imageq.config import get_settings
from imageq.producers.scheduling.schedule_file import (
    ScheduledRun,
    load_schedule,
    run_definition,
    run_fingerprint,
    schedule_fingerprint,
)
from imageq.producers.scheduling.schedule_records import ScheduleRecords
from imageq.producers.scheduling.scheduled_run import SCHEDULED_RUN_TASK

log = logging.getLogger("imageq.producers.scheduling.scheduler")


def beat_entries(runs: Iterable[ScheduledRun]) -> dict[str, dict[str, Any]]:
    """Celery `beat_schedule` entries, one per run, named `run:{name}` (apart from any other
    entry); the run's name is the task's one argument."""
    return {
        f"run:{run.name}": {
            "task": SCHEDULED_RUN_TASK,
            "args": [run.name],
            "schedule": _schedule_of(run),
        }
        for run in runs
    }


def _schedule_of(run: ScheduledRun) -> Any:
    if run.cron is not None:
        return crontab.from_string(run.cron)  # in the app's timezone: UTC
    assert run.every_s is not None
    # relative: each next tick is rounded down to the interval's resolution (day, hour, minute,
    # or whole second), so ticks do not drift by a few milliseconds each time and, in the long
    # run, across a slot's edge, which would skip that slot.
    return schedule(timedelta(seconds=run.every_s), relative=True)


class ScheduleFileScheduler(RedBeatScheduler):  # type: ignore[misc]  # redbeat has no type hints
    """redbeat, with the runs of `schedule.file` (read as beat starts) added to the app's own
    `beat_schedule`. Runs removed from the file are removed from Redis at the next start."""

    _runs: Sequence[ScheduledRun] = ()
    _file: str | None = None
    _records: ScheduleRecords | None = None

    def setup_schedule(self) -> None:
        self._file = get_settings().schedule.file
        self._runs = _configured_runs()
        own = dict(self.app.conf.beat_schedule or {})
        self.app.conf.beat_schedule = {**own, **beat_entries(self._runs)}
        super().setup_schedule()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """redbeat's tick, but a Redis that is down or restarting costs a wait, not the beat:
        redbeat raises, and beat would exit, taking the sweeper with it. A lock that lapsed
        meanwhile is taken back, unless another beat has it (then this one waits on)."""
        retry_s = float(self.max_interval)
        try:
            next_s = float(super().tick(*args, **kwargs))
            self._publish()
            return next_s
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("beat: Redis unavailable (%s); trying again in %.0f s", error, retry_s)
        except LockNotOwnedError:
            if self.lock.acquire(blocking=False):
                log.warning("beat: the lock had lapsed; taken back")
                return 0.0
            log.info("beat: another beat holds the lock; standing by")
        return retry_s

    def _publish(self) -> None:
        """Publish the schedule this beat runs, with each run's next due time as redbeat has
        it. Only after a tick that held the lock: a standby beat publishes nothing."""
        if self._records is None:
            self._records = ScheduleRecords.connect(get_settings())
        client = get_redis(self.app)
        key = self.app.redbeat_conf.schedule_key
        with client.pipeline(transaction=False) as pipe:
            for run in self._runs:
                pipe.zscore(key, RedBeatSchedulerEntry.generate_key(self.app, f"run:{run.name}"))
            due = pipe.execute()
        self._records.publish_schedule(
            published_schedule(
                self._file,
                self._runs,
                due_at=dict(zip((run.name for run in self._runs), due, strict=True)),
                host=f"pid{os.getpid()}@{socket.gethostname()}",
                now=time.time(),
                loop_interval_s=float(self.max_interval),
                lock_timeout_s=float(self.lock_timeout),
            )
        )

    def close(self) -> None:
        try:
            super().close()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("beat: lock not released, Redis unavailable (%s); it lapses", error)


def _configured_runs() -> list[ScheduledRun]:
    """The schedule file's runs; none if it is not set or missing (said in the log). An invalid
    file raises `ScheduleError`, so beat does not start on a schedule it cannot read."""
    file = get_settings().schedule.file
    if file is None:
        log.info("beat: schedule.file is not set; no scheduled runs")
        return []
    try:
        runs = load_schedule(Path(file))
    except FileNotFoundError:
        log.warning("beat: schedule file %s does not exist; no scheduled runs", file)
        return []
    log.info("beat: %d scheduled run(s) from %s", len(runs), file)
    return runs


def published_schedule(
    file: str | None,
    runs: Sequence[ScheduledRun],
    *,
    due_at: dict[str, float | None],
    host: str,
    now: float,
    loop_interval_s: float,
    lock_timeout_s: float,
) -> dict[str, object]:
    """What a beat publishes of its schedule: plain JSON, each run as written in the file
    (without its webhook URL, which may carry a token) with its fingerprint and next due time
    (Unix seconds; None if redbeat has none)."""
    base_dir = Path(file).parent if file else Path()
    return {
        "file": file,
        "fingerprint": schedule_fingerprint(runs, base_dir) if file else None,
        "host": host,
        "published_at": now,
        "loop_interval_s": loop_interval_s,
        "lock_timeout_s": lock_timeout_s,
        "runs": [
            {
                **{k: v for k, v in run_definition(run, base_dir).items() if k != "webhook"},
                "webhook": run.webhook is not None,
                "fingerprint": run_fingerprint(run, base_dir),
                "next_run_at": due_at.get(run.name),
            }
            for run in runs
        ],
    }
