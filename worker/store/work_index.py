"""The indexes of work to do, beside the job records: the in-flight index (job id -> when its
next piece of work is due), the poll schedule, the API slots, the dead letters; and the
store's small helpers: locks that lapse by themselves, and recent generation times.

The job store's one write (lua/write.lua) keeps these in line with each record; the methods
here read them, and change them only where no record changes (a sweep postponing work, a
record gone).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Final, NamedTuple

import redis
from redis.commands.core import Script

from imageq.worker.domain.job import DEFAULTS
from imageq.worker.domain.status import JobStatus
from imageq.worker.domain.submit_schedule import LANES, due_submits
from imageq.worker.errors import CorruptRecord
from imageq.worker.messages import PollFacts, Submit

log = logging.getLogger("imageq.worker.store.job_store")

# Delete the key only while it still holds this caller's token (Redis' documented unlock).
_RELEASE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WorkIndexes:
    """The part of `JobStore` about the indexes of work and its helpers."""

    _redis: redis.Redis
    _prefix: str
    _ttl_s: int
    _claim: Script
    _release_submit: Script

    @property
    def in_flight_key(self) -> str:
        return f"{self._prefix}:in_flight"

    @property
    def dead_letters_key(self) -> str:
        return f"{self._prefix}:dead_letters"

    @property
    def slots_key(self) -> str:
        return f"{self._prefix}:api_slots"

    @property
    def poll_schedule_key(self) -> str:
        return f"{self._prefix}:poll_schedule"

    def submit_schedule_key(self, lane: str) -> str:
        """The submit schedule of a lane (`domain.submit_schedule.LANES`), poller mode's."""
        return f"{self._prefix}:submit_schedule:{lane}"

    def schedule_submits(self, submits: list[Submit], *, now: float) -> None:
        """File submits in their lanes' schedules, due after their countdowns (poller mode:
        instead of a task message each). An entry already there is moved to the new time."""
        due = due_submits(submits, now=now)
        if not due:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for lane, entries in due.items():
                pipe.zadd(self.submit_schedule_key(lane), entries)
            pipe.execute()

    def claim_due(
        self, *, now: float, limit: int, poll_lease_s: float, submit_lease_s: float
    ) -> tuple[list[ClaimedPoll], list[ClaimedSubmit]]:
        """The poller's claim, one round trip: up to `limit` polls due by `now` (as
        `claim_due_polls`), then due submits with the room they leave (as
        `claim_due_submits`)."""
        return self._claim_due(
            now=now,
            poll_limit=limit,
            limit=limit,
            poll_lease_s=poll_lease_s,
            submit_lease_s=submit_lease_s,
        )

    def claim_due_polls(self, *, now: float, limit: int, lease_s: float) -> list[ClaimedPoll]:
        """Take up to `limit` polls due by `now`, oldest first; each is due again after
        `lease_s` unless its poll moves it first, so a poller lost mid-poll only delays it, and
        no two pollers take the same one. Each comes with the facts its poll needs, read in the
        same step (None where the record is not a submitted job's: the poll reads it then)."""
        polls, _ = self._claim_due(
            now=now, poll_limit=limit, limit=limit, poll_lease_s=lease_s, submit_lease_s=None
        )
        return polls

    def claim_due_submits(self, *, now: float, limit: int, lease_s: float) -> list[ClaimedSubmit]:
        """Take up to `limit` submits due by `now`, interactive ones first, oldest first in each
        lane; each is due again after `lease_s` unless given up or moved first
        (`release_submit`, `schedule_submits`), so a poller lost with it only delays it, and no
        two pollers take the same one. Entries whose job is no longer queued are dropped."""
        _, submits = self._claim_due(
            now=now, poll_limit=0, limit=limit, poll_lease_s=0.0, submit_lease_s=lease_s
        )
        return submits

    def release_submit(self, claimed: ClaimedSubmit) -> None:
        """Give up a claimed submit whose step scheduled no new one (submitted, ended, or
        nothing to do): its entry goes, unless something filed it again meanwhile."""
        self._release_submit(
            keys=[self.submit_schedule_key(claimed.lane)],
            args=[claimed.job_id, claimed.lease_until],
        )

    def _claim_due(
        self,
        *,
        now: float,
        poll_limit: int,
        limit: int,
        poll_lease_s: float,
        submit_lease_s: float | None,
    ) -> tuple[list[ClaimedPoll], list[ClaimedSubmit]]:
        keys = [self.poll_schedule_key]
        if submit_lease_s is not None:
            keys += [self.submit_schedule_key(lane) for lane in LANES]
        submit_until = now + (submit_lease_s or 0.0)
        raw_polls, raw_submits = self._claim(
            keys=keys,
            args=[
                now,
                poll_limit,
                limit,
                now + poll_lease_s,
                submit_until,
                self._prefix,
                DEFAULTS["poll_token"],
            ],
        )
        polls = []
        for i in range(0, len(raw_polls), 3):
            job_id, token = _text(raw_polls[i]), _text(raw_polls[i + 1])
            if token.isdigit():
                polls.append(ClaimedPoll(job_id, int(token), claimed_facts(raw_polls[i + 2])))
            else:  # one corrupt record must not stop every poller's claims
                self.skip_corrupt(CorruptRecord(job_id, "poll_token", "not an integer"))
        submits = [
            ClaimedSubmit(_text(raw_submits[i]), LANES[int(raw_submits[i + 1]) - 1], submit_until)
            for i in range(0, len(raw_submits), 2)
        ]
        return polls, submits

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        """Webhook deliveries given up on: job id -> {reason, at, attempts}."""
        raw = self._redis.hgetall(self.dead_letters_key)
        return {_text(key): json.loads(value) for key, value in raw.items()}

    def due_jobs(self, *, before: float, limit: int) -> list[str]:
        """Jobs whose work was due before `before`, oldest first."""
        ids = self._redis.zrangebyscore(self.in_flight_key, "-inf", before, start=0, num=limit)
        return [_text(job_id) for job_id in ids if isinstance(job_id, bytes | str)]

    def acquire_lock(self, name: str, *, ttl_s: float) -> str | None:
        """A lock that lapses by itself after `ttl_s`: its token for the one caller that got it,
        None for the others. Release it with `release_lock` when done."""
        token = uuid.uuid4().hex
        key = f"{self._prefix}:lock:{name}"
        return token if self._redis.set(key, token, nx=True, px=int(ttl_s * 1000)) else None

    def release_lock(self, name: str, token: str) -> None:
        """Release a lock this caller holds; one that lapsed and was taken since stays."""
        self._redis.eval(_RELEASE_IF_HELD, 1, f"{self._prefix}:lock:{name}", token)

    def unindex(self, job_id: str) -> None:
        """Take a job whose record is gone (or cannot be read) out of the in-flight index and
        the poll and submit schedules."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.in_flight_key, job_id)
            pipe.zrem(self.poll_schedule_key, job_id)
            for lane in LANES:
                pipe.zrem(self.submit_schedule_key(lane), job_id)
            pipe.execute()

    def skip_corrupt(self, error: CorruptRecord) -> None:
        """Log a record that cannot be read and take it out of the indexes, so no sweep or
        poller picks it up again; the hash is left for inspection, until its TTL."""
        log.error("%s; taken out of the in-flight index and the poll schedule", error)
        self.unindex(error.record_id)

    def postpone(self, job_ids: list[str], until: float) -> None:
        """Make jobs due again at `until` (only those still in the index)."""
        if job_ids:
            self._redis.zadd(self.in_flight_key, dict.fromkeys(job_ids, until), xx=True)

    def generation_samples(self, quality: str, resolution: str) -> list[float]:
        """Recent generation times (s) of jobs of this quality and resolution, newest first."""
        key = f"{self._prefix}:generation_s:{quality}:{resolution}"
        return [float(value) for value in self._redis.lrange(key, 0, -1)]

    def add_generation_sample(
        self, quality: str, resolution: str, seconds: float, *, window: int
    ) -> None:
        """Keep one more generation time, and only the `window` newest."""
        key = f"{self._prefix}:generation_s:{quality}:{resolution}"
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, f"{seconds:.3f}")
            pipe.ltrim(key, 0, window - 1)
            pipe.expire(key, self._ttl_s)
            pipe.execute()

    def in_flight_count(self) -> int:
        """Jobs with work left to do."""
        return int(self._redis.zcard(self.in_flight_key))

    def slots_in_use(self) -> int:
        """API slots held now (expired ones not counted)."""
        return int(self._redis.zcount(self.slots_key, time.time(), "+inf"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ClaimedSubmit(NamedTuple):
    """A submit the poller took: its job, its lane, and when its lease ends."""

    job_id: str
    lane: str
    lease_until: float


class ClaimedPoll(NamedTuple):
    """A poll the poller took: its job, its poll token, and the facts it needs (or None)."""

    job_id: str
    token: int
    facts: PollFacts | None


_SUBMITTED: Final = json.dumps(str(JobStatus.SUBMITTED))


def claimed_facts(stored: list[bytes | str | None]) -> PollFacts | None:
    """A claimed job's poll facts from its stored status, remote_task_id, deadline_at,
    poll_count, submitted_at and params; None unless it is a submitted job whose fields all
    read as expected (anything else is for the reading path, which knows what to do with it)."""
    status, remote_task_id, deadline_at, poll_count, submitted_at, params = (
        None if value is None else _text(value) for value in stored
    )
    if status != _SUBMITTED or remote_task_id is None or deadline_at is None or params is None:
        return None
    try:
        task_id = json.loads(remote_task_id)
        deadline = json.loads(deadline_at)
        count = json.loads(poll_count or DEFAULTS["poll_count"])
        submitted = json.loads(submitted_at or "0")
        kind = json.loads(params)
    except ValueError:
        return None
    if not (
        isinstance(task_id, str)
        and _number(deadline)
        and isinstance(count, int)
        and not isinstance(count, bool)
        and _number(submitted)
        and isinstance(kind, dict)
    ):
        return None
    return PollFacts(
        remote_task_id=task_id,
        deadline_at=float(deadline),
        poll_count=count,
        submitted_at=float(submitted),
        quality=str(kind.get("quality", "")),
        resolution=str(kind.get("resolution", "")),
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
