"""What the scheduler and the workers say about scheduled runs, kept in the job store's Redis.

- The scheduler (beat) publishes the schedule it runs, on each loop: its file, the file's
  fingerprint, and each run's definition and next due time (`publish_schedule`).
- A worker records the outcome of every tick it handles, queued (with the batch id) or failed
  (with the reason), under the run's name (`record_tick`), and reports which schedule file it
  holds when it starts and on each tick (`report_worker`).

So `imageq schedules` and `imageq health` show what the scheduler and the workers really do,
whatever the environment of the process that asks. Every value is plain JSON; none holds a
secret (a run's webhook URL is kept only inside its fingerprint).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Final

import redis

from imageq.config import Settings
from imageq.worker.redis_clients import redis_client

KEPT_TICKS: Final = 20


class TickFailure(StrEnum):
    """Why a worker could not run a tick (the metric's `reason` label)."""

    NO_SCHEDULE_FILE = "no_schedule_file"  # IMAGEQ_SCHEDULE__FILE is not set on the worker
    FILE_UNREADABLE = "file_unreadable"  # the worker cannot read its schedule file
    FILE_INVALID = "file_invalid"  # the worker's schedule file is not a valid schedule
    UNKNOWN_RUN = "unknown_run"  # the worker's schedule file has no run of the tick's name
    RUN_DIFFERS = "run_differs"  # the worker's file defines the run otherwise than beat's
    WEBHOOK_REFUSED = "webhook_refused"  # the run's webhook URL is not allowed
    BULK_FILE_UNREADABLE = "bulk_file_unreadable"  # the run's bulk file cannot be read
    NO_VALID_ROWS = "no_valid_rows"  # every row of the bulk file was refused


@dataclass(frozen=True)
class Tick:
    """One tick a worker handled: `batch_id` when it queued the batch, `reason` and `message`
    when it failed. Times are Unix seconds; `slot` is ISO 8601 when known."""

    run: str
    at: float
    worker: str
    batch_id: str | None = None
    slot: str | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def failed(self) -> bool:
        return self.reason is not None


class ScheduleRecords:
    """Read and write the published schedule, tick outcomes and worker reports."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = f"{prefix}:schedule"
        self._ttl_s = ttl_s

    @classmethod
    def connect(cls, settings: Settings) -> ScheduleRecords:
        """On the job store's Redis, with bounded timeouts."""
        client = redis_client(settings.redis, "store", socket_timeout=10, socket_connect_timeout=5)
        return cls(client, prefix=settings.redis.key_prefix, ttl_s=settings.redis.record_ttl_s)

    def __repr__(self) -> str:
        return f"ScheduleRecords(prefix={self._prefix!r})"

    def publish_schedule(self, published: dict[str, Any]) -> None:
        """The scheduler's schedule (see `scheduler.published_schedule`), replacing the last."""
        self._redis.set(f"{self._prefix}:published", json.dumps(published), ex=self._ttl_s)

    def published_schedule(self) -> dict[str, Any] | None:
        """What the scheduler last published, or None if no scheduler has."""
        raw = self._redis.get(f"{self._prefix}:published")
        return None if raw is None else _object(raw)

    def record_tick(self, tick: Tick) -> None:
        """Keep a tick's outcome: the newest `KEPT_TICKS` of each run."""
        key = f"{self._prefix}:ticks:{tick.run}"
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, json.dumps(asdict(tick)))
            pipe.ltrim(key, 0, KEPT_TICKS - 1)
            pipe.expire(key, self._ttl_s)
            pipe.sadd(f"{self._prefix}:names", tick.run)
            pipe.expire(f"{self._prefix}:names", self._ttl_s)
            pipe.execute()

    def ticks(self, run: str, *, limit: int = KEPT_TICKS) -> list[Tick]:
        """The run's recorded ticks, newest first."""
        raw = self._redis.lrange(f"{self._prefix}:ticks:{run}", 0, limit - 1)
        return [Tick(**_object(item)) for item in raw]

    def ticked_runs(self) -> list[str]:
        """Every run name a worker has recorded a tick for (within the records' lifetime)."""
        return sorted(_text(name) for name in self._redis.smembers(f"{self._prefix}:names"))

    def report_worker(self, worker: str, report: dict[str, Any]) -> None:
        """A worker's schedule file as it sees it: {file, fingerprint, error, at}."""
        key = f"{self._prefix}:workers"
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, worker, json.dumps(report))
            pipe.expire(key, self._ttl_s)
            pipe.execute()

    def worker_reports(self) -> dict[str, dict[str, Any]]:
        """Worker name -> its latest report."""
        raw = self._redis.hgetall(f"{self._prefix}:workers")
        return {_text(name): _object(value) for name, value in raw.items()}


def _object(raw: bytes | str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("a schedule record is not a JSON object")
    return value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
