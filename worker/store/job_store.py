"""The job store: one Redis hash per job, changed only by atomic compare-and-set.

Every write is one Lua script: it checks the expected field values and, only if all match,
writes the changes and refreshes the record's TTL, and in the same step keeps the indexes in
line: the in-flight index (job id -> next due check), the API slots (the cap on jobs in flight
against the API, across all workers), the dead-letter list, and the counters of the job's
batch. So two workers racing on one job cannot both move it, a job reaches a terminal state
once, and a batch completes once.

The in-flight index holds every job with work still to do (a submit, a poll, saving outputs,
a notification), scored by when that work is due; the sweeper re-sends what is overdue.

The batch key is derived inside the script from the job's `batch_id`, so this store assumes a
single Redis (not Redis Cluster), as Celery's Redis broker does.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import redis

from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import DEFAULTS, Job, encode_fields, is_default
from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from imageq.worker.domain.transitions import Slot as Slot  # where callers have always found it
from imageq.worker.domain.transitions import Transition
from imageq.worker.errors import CorruptRecord, JobNotFound

log = logging.getLogger(__name__)


# Delete the key only while it still holds this caller's token (Redis' documented unlock).
_RELEASE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _script(name: str) -> str:
    return resources.files("imageq.worker.store").joinpath("lua", name).read_text(encoding="utf-8")


_WRITE: Final = _script("write.lua")
_CLAIM_POLLS: Final = _script("claim_polls.lua")
_TERMINAL: Final = {str(status): True for status in TERMINAL_JOB_STATUSES}
_SUBMITTED: Final = encode_fields({"status": JobStatus.SUBMITTED})["status"]


@dataclass(frozen=True)
class Write:
    """What a write did. True when applied; says whether it took an API slot or completed a
    batch."""

    applied: bool
    no_slot: bool = False
    batch_complete: bool = False

    def __bool__(self) -> bool:
        return self.applied


class JobStore:
    """Create, read and compare-and-set job records; read batches and dead letters."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._write = client.register_script(_WRITE)
        self._claim = client.register_script(_CLAIM_POLLS)

    def __repr__(self) -> str:
        return f"JobStore(prefix={self._prefix!r})"

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

    def claim_due_polls(self, *, now: float, limit: int, lease_s: float) -> list[tuple[str, int]]:
        """Take up to `limit` polls due by `now` (job id, poll token), oldest first; each is due
        again after `lease_s` unless its poll moves it first, so a poller lost mid-poll only
        delays it, and no two pollers take the same one."""
        raw = self._claim(
            keys=[self.poll_schedule_key],
            args=[now, limit, now + lease_s, self._prefix, DEFAULTS["poll_token"]],
        )
        claimed = []
        for i in range(0, len(raw), 2):
            job_id, token = _text(raw[i]), _text(raw[i + 1])
            if token.isdigit():
                claimed.append((job_id, int(token)))
            else:  # one corrupt record must not stop every poller's claims
                self.skip_corrupt(CorruptRecord(job_id, "poll_token", "not an integer"))
        return claimed

    def key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def batch_key(self, batch_id: str) -> str:
        return f"{self._prefix}:batch:{batch_id}"

    def create(self, job: Job, *, due_at: float | None = None) -> bool:
        """Store a new job (due in the in-flight index at `due_at`, if given); False (and
        nothing written) if the id is taken."""
        extra = {"due_at": due_at} if due_at is not None else {}
        return self._run(job.job_id, create=True, changes=job.to_hash(), extra=extra).applied

    def get(self, job_id: str) -> Job:
        """The job; raises `JobNotFound`, or `CorruptRecord` if its record cannot be decoded."""
        raw = self._redis.hgetall(self.key(job_id))
        if not raw:
            raise JobNotFound(job_id)
        return Job.from_hash(raw, job_id=job_id)

    def poll_is_current(self, job_id: str, token: int) -> bool:
        """Whether the job is still being polled and `token` is its current poll's: one
        HMGET of two small fields, so a stale poll message exits before asking the API."""
        status, stored = self._redis.hmget(self.key(job_id), ["status", "poll_token"])
        if status is None or _text(status) != _SUBMITTED:
            return False
        current = _text(stored) if stored is not None else DEFAULTS["poll_token"]
        return current == str(token)

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        """Several jobs in one round trip; None where a record is gone, or is corrupt (logged):
        one bad record must not stop a sweep or a batch's report."""
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.key(job_id))
            raws = pipe.execute()
        jobs: list[Job | None] = []
        for job_id, raw in zip(job_ids, raws, strict=True):
            try:
                jobs.append(Job.from_hash(raw, job_id=job_id) if raw else None)
            except CorruptRecord as error:
                log.error("%s; skipped", error)
                jobs.append(None)
        return jobs

    def delete(self, job_id: str) -> None:
        self._redis.delete(self.key(job_id))
        self._redis.zrem(self.in_flight_key, job_id)

    def apply(self, transition: Transition) -> Write:
        """Carry out a transition (`imageq.worker.domain.transitions`): its compare-and-set
        and its index changes, in the one atomic write."""
        return self.update(
            transition.job_id,
            expect=transition.expect,
            changes=transition.changes,
            due_at=transition.due_at,
            settled=transition.settled,
            free_slot=transition.free_slot,
            slot=transition.slot,
            slot_expires_at=transition.slot_expires_at,
            dead_letter=transition.dead_letter,
            revive=transition.revive,
        )

    def update(
        self,
        job_id: str,
        *,
        expect: Mapping[str, Any],
        changes: Mapping[str, Any],
        due_at: float | None = None,
        settled: bool = False,
        free_slot: bool = False,
        slot: Slot | None = None,
        slot_expires_at: float | None = None,
        dead_letter: Mapping[str, Any] | None = None,
        revive: bool = False,
    ) -> Write:
        """Apply `changes` if every field in `expect` still has that value, with the index
        options `Transition` describes (steps and producers write through `apply`, with a
        checked transition; this is its untyped form, for tests and tools)."""
        stamped = {**changes, "updated_at": time.time()}
        extra: dict[str, Any] = {"settled": settled, "free_slot": free_slot, "revive": revive}
        if due_at is not None:
            extra["due_at"] = due_at
        if slot is not None:
            extra.update(slot_limit=slot.limit, slot_expires=slot.expires_at)
            if due_at is not None:
                extra["due_if_no_slot"] = due_at
        elif slot_expires_at is not None:
            extra["slot_expires"] = slot_expires_at
        if dead_letter is not None:
            extra["dead_letter"] = json.dumps(dead_letter)
        return self._run(
            job_id, expect=encode_fields(expect), changes=encode_fields(stamped), extra=extra
        )

    def create_batch(self, batch: Batch) -> bool:
        """Store a new batch; False (and nothing changed) if the id is taken."""
        key = self.batch_key(batch.batch_id)
        if not self._redis.hsetnx(key, "total", batch.total):
            return False
        self._redis.hset(key, mapping={field: value for field, value in batch.to_hash().items()})
        self._redis.expire(key, self._ttl_s)
        return True

    def add_batch_jobs(self, batch_id: str, job_ids: Mapping[int, str]) -> None:
        """Record which job each line of the batch's file became."""
        if job_ids:
            key = f"{self.batch_key(batch_id)}:jobs"
            self._redis.hset(key, mapping={str(line): job for line, job in job_ids.items()})
            self._redis.expire(key, self._ttl_s)

    def get_batch(self, batch_id: str) -> Batch | None:
        raw = self._redis.hgetall(self.batch_key(batch_id))
        return Batch.from_hash(batch_id, raw) if raw else None

    def batch_jobs(self, batch_id: str) -> dict[int, str]:
        """Line number -> job id, for every job of the batch."""
        raw = self._redis.hgetall(f"{self.batch_key(batch_id)}:jobs")
        return {int(_text(line)): _text(job) for line, job in raw.items()}

    def mark_batch(self, batch_id: str, flag: str) -> bool:
        """Set a once-only flag on a batch; True for the one caller that set it."""
        return bool(self._redis.hsetnx(self.batch_key(batch_id), flag, str(time.time())))

    def note_batch(self, batch_id: str, field: str, value: Any) -> None:
        """Keep a plain JSON note on a batch (such as its webhook's outcome)."""
        self._redis.hset(self.batch_key(batch_id), field, json.dumps(value))

    def read_batch_note(self, batch_id: str, field: str) -> Any:
        """A note kept with `note_batch`, or None if there is none."""
        raw = self._redis.hget(self.batch_key(batch_id), field)
        return None if raw is None else json.loads(raw)

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
        the poll schedule."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.in_flight_key, job_id)
            pipe.zrem(self.poll_schedule_key, job_id)
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

    def _run(
        self,
        job_id: str,
        *,
        changes: Mapping[str, str],
        expect: Mapping[str, str] | None = None,
        create: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Write:
        expect = dict(expect or {})
        args: dict[str, Any] = {
            "job_id": job_id,
            "expect": expect,
            "defaults": {name: DEFAULTS[name] for name in expect if name in DEFAULTS},
            "set": dict(changes),
            "drop": {name: True for name, value in changes.items() if is_default(name, value)},
            "ttl": self._ttl_s,
            "now": time.time(),
            "prefix": self._prefix,
            "terminal": _TERMINAL,
            "create": create,
            **(extra or {}),
        }
        keys = [
            self.key(job_id),
            self.in_flight_key,
            self.dead_letters_key,
            self.slots_key,
            self.poll_schedule_key,
        ]
        result = int(self._write(keys=keys, args=[json.dumps(args)]))
        if result == -1:
            raise JobNotFound(job_id)
        return Write(applied=result > 0, no_slot=result == -2, batch_complete=result == 2)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
