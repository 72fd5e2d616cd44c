"""Batch records in Redis: a batch's hash (totals, counters, notes, once-only flags), which job
each line of its file became, and the pacing of a bulk run's held jobs.

The counters are kept by the job store's one write (lua/write.lua), which derives the batch's
keys from the job's `batch_id`; these methods are the producer's and the reader's side.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from imageq.worker.domain.batch import Batch
from imageq.worker.store.job_index import JobIndex


class BatchRecords:
    """Create and read batches; the part of `JobStore` about batches."""

    _redis: redis.Redis
    _prefix: str
    _ttl_s: int
    index: JobIndex

    def batch_key(self, batch_id: str) -> str:
        return f"{self._prefix}:batch:{batch_id}"

    def create_batch(self, batch: Batch) -> bool:
        """Store (and index) a new batch; False (and nothing changed) if the id is taken."""
        key = self.batch_key(batch.batch_id)
        if not self._redis.hsetnx(key, "total", batch.total):
            return False
        self._redis.hset(key, mapping={field: value for field, value in batch.to_hash().items()})
        self._redis.expire(key, self._ttl_s)
        self.index.add_batch(batch.batch_id, batch.created_at, now=time.time())
        return True

    def add_batch_jobs(self, batch_id: str, job_ids: Mapping[int, str]) -> None:
        """Record which job each line of the batch's file became."""
        if job_ids:
            key = f"{self.batch_key(batch_id)}:jobs"
            self._redis.hset(key, mapping={str(line): job for line, job in job_ids.items()})
            self._redis.expire(key, self._ttl_s)

    def pace_batch(self, batch_id: str, concurrency: int, held: Sequence[str]) -> None:
        """Pace a batch: each of its jobs that ends releases the next of `held` (ids of held
        jobs, in order), so about `concurrency` run at once, with no producer waiting."""
        key = self.batch_key(batch_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "pace", concurrency)
            if held:
                pipe.rpush(f"{key}:held", *held)
                pipe.expire(f"{key}:held", self._ttl_s)
            pipe.execute()

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
