"""Job progress, sampled from the job store, and how long each fault held jobs up.

Every `sample_s` the sampler reads the in-flight index (every job with work left, scored by
when that work is due) and a few fields of each of those jobs. A job *progresses* when its
record is written again (the store stamps `updated_at` on every write) or it leaves the index
(nothing left to do). `ProgressLog` turns the samples into progress events, each with how late
it came; `attribute` gives each late one to the fault that held it up; `resumed_after` says,
for a fault's end, how long the jobs whose work was due by then took to move on.

The due time kept for a wait is the first one seen: the sweeper pushes the score of overdue
work back, which must not hide how late it was. A submit or webhook in progress under a lease
is due at once (its score is the lease's end, when the sweeper would look again), so a worker
lost mid-submit shows as the full delay it causes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import redis

_FIELDS: Final = ("status", "updated_at", "submit_lease_until", "webhook_lease_until")


@dataclass(frozen=True)
class Seen:
    """One job in one sample: its write stamp, when its work is due, and whether a worker is
    inside that work now (under a lease)."""

    mark: str
    due_at: float
    working: bool


@dataclass(frozen=True)
class Progress:
    """A job moved on at `seen_at`, after waiting since `since` for work due at `due_at`
    (epoch seconds; `seen_at` is within one sample of the real moment)."""

    job_id: str
    since: float
    due_at: float
    seen_at: float

    @property
    def late_s(self) -> float:
        """How long after its work was due the job moved on."""
        return self.seen_at - self.due_at


@dataclass(frozen=True)
class Resumed:
    """A job whose work was due by a fault's end: moved on `resume_s` after it (None: never)."""

    job_id: str
    resume_s: float | None


def attribute(
    events: Sequence[Progress], windows: Sequence[tuple[float, float]], *, late_after_s: float
) -> dict[int | None, list[Progress]]:
    """The late events (more than `late_after_s` past due), each given to the latest fault
    (index into `windows`, (start, end) epoch seconds) that happened while the job waited and
    by the time its work was due; None: no fault did, the lateness is imageq's own."""
    found: dict[int | None, list[Progress]] = {}
    for event in events:
        if event.late_s <= late_after_s:
            continue
        during = [
            index
            for index, (start, end) in enumerate(windows)
            if start <= event.due_at and end >= event.since
        ]
        cause = max(during, key=lambda index: windows[index][0]) if during else None
        found.setdefault(cause, []).append(event)
    return found


class ProgressLog:
    """Pure bookkeeping: feed it samples in time order, read `events` and `waiting`."""

    def __init__(self) -> None:
        self.events: list[Progress] = []
        # job id -> (mark, since, due_at) of the wait it is in now
        self.waiting: dict[str, tuple[str, float, float]] = {}

    def observe(self, at: float, sample: Mapping[str, Seen]) -> None:
        for job_id, seen in sample.items():
            due_at = at if seen.working else seen.due_at
            known = self.waiting.get(job_id)
            if known is None:
                self.waiting[job_id] = (seen.mark, at, due_at)
            elif known[0] != seen.mark:
                self.events.append(Progress(job_id, known[1], known[2], at))
                self.waiting[job_id] = (seen.mark, at, due_at)
        for job_id in [job_id for job_id in self.waiting if job_id not in sample]:
            _, since, due_at = self.waiting.pop(job_id)
            self.events.append(Progress(job_id, since, due_at, at))

    def resumed_after(self, at: float) -> list[Resumed]:
        """Every job whose work was due by `at` and still waiting then: when it moved on."""
        found = [
            Resumed(e.job_id, e.seen_at - at)
            for e in self.events
            if e.since <= at < e.seen_at and e.due_at <= at
        ]
        found += [
            Resumed(job_id, None)
            for job_id, (_, since, due_at) in self.waiting.items()
            if since <= at and due_at <= at
        ]
        return found


class ProgressSampler:
    """Samples the job store in a background thread while entered; Redis being down (as
    when the chaos restarts it) only leaves a gap, counted in `gaps`."""

    def __init__(
        self, client: redis.Redis, *, in_flight_key: str, job_key_prefix: str, every_s: float
    ) -> None:
        self.log = ProgressLog()
        self.gaps = 0
        self.samples = 0
        self._client = client
        self._in_flight_key = in_flight_key
        self._job_key_prefix = job_key_prefix
        self._every_s = every_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self) -> ProgressSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def resumed_after(self, at: float) -> list[Resumed]:
        with self._lock:
            return self.log.resumed_after(at)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                at, sample = self._read()
            except redis.RedisError:
                self.gaps += 1
                continue
            with self._lock:
                self.log.observe(at, sample)
                self.samples += 1

    def _read(self) -> tuple[float, dict[str, Seen]]:
        # The index and the records are read in one MULTI, so each job's due time and write
        # stamp belong together: a write landing between two separate reads would pair a new
        # stamp with the old due time (a retry's, say, 300 s before the one it set).
        # redis-py types every reply as a union of all it could be; this one is a list of ids.
        listed: list[bytes] = self._client.zrange(self._in_flight_key, 0, -1)  # type: ignore[assignment]
        with self._client.pipeline(transaction=True) as pipe:
            pipe.zrange(self._in_flight_key, 0, -1, withscores=True)
            for job_id in listed:
                pipe.hmget(self._job_key_prefix + job_id.decode(), _FIELDS)
            due, *rows = pipe.execute()
        at = time.time()
        fields = dict(zip(listed, rows, strict=True))
        # A job listed only in the second read (new since the first) waits for the next sample.
        return at, {
            job_id.decode(): _seen(fields[job_id], due_at, now=at)
            for job_id, due_at in due
            if job_id in fields
        }


def _seen(row: list[bytes | None], due_at: float, *, now: float) -> Seen:
    status, updated_at, submit_lease, webhook_lease = (
        json.loads(value) if value is not None else None for value in row
    )
    working = (status == "queued" and (submit_lease or 0) > now) or (webhook_lease or 0) > now
    return Seen(f"{status}|{updated_at}", float(due_at), working)
