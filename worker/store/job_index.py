"""Finding jobs and batches again: the listing indexes and the queries over them.

The indexes are sorted sets scored by creation time (epoch s): every job, the jobs of each
status, the jobs of each batch, and every batch. The job ones are kept by the store's one write
(lua/write.lua), in the same script as the status change, so a job is always in the index of
its status and of no other; the batches one by `create_batch`. Each set is trimmed of entries
created more than the record TTL ago whenever it is added to (ZREMRANGEBYSCORE: each entry is
removed once, so the work per write is bounded on average), and expires a TTL after its last
addition. An entry can outlive its record by a little (a record is dropped only by its TTL):
the queries read the records and pass over the missing ones, never a scan of all keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import redis

from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import CorruptRecord
from imageq.worker.store.paging import (
    Cursor,
    Entry,
    after_cursor,
    cursor_after,
    merge_newest_first,
)

if TYPE_CHECKING:
    from imageq.worker.store.job_store import JobStore

MAX_LIMIT: Final = 1000
# A listing filtered after reading records (statuses within a batch, records gone) reads this
# many chunks at most per page, so one call's work is bounded whatever the filter.
_MAX_CHUNKS: Final = 20

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a listing, newest first; `next_cursor` continues it (None: nothing more)."""

    items: list[T]
    next_cursor: str | None


class JobIndex:
    """The listing indexes' keys, and reads of them in pages."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"JobIndex(prefix={self._prefix!r})"

    @property
    def jobs_key(self) -> str:
        return f"{self._prefix}:idx:jobs"

    @property
    def batches_key(self) -> str:
        return f"{self._prefix}:idx:batches"

    def status_key(self, status: JobStatus | str) -> str:
        return f"{self._prefix}:idx:status:{status}"

    def batch_key(self, batch_id: str) -> str:
        return f"{self._prefix}:idx:batch:{batch_id}"

    def add_batch(self, batch_id: str, created_at: float, *, now: float) -> None:
        """Index a new batch (trimming batches older than the TTL)."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.batches_key, "-inf", f"({now - self._ttl_s}")
            pipe.zadd(self.batches_key, {batch_id: created_at})
            pipe.expire(self.batches_key, self._ttl_s)
            pipe.execute()

    def forget_job(self, job_id: str, *, status: str | None, batch_id: str | None) -> None:
        """Take a job out of the indexes (its record was deleted)."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.jobs_key, job_id)
            if status is not None:
                pipe.zrem(self.status_key(status), job_id)
            if batch_id is not None:
                pipe.zrem(self.batch_key(batch_id), job_id)
            pipe.execute()

    def read(
        self,
        keys: Sequence[str],
        *,
        since: float | None,
        until: float | None,
        cursor: Cursor | None,
        count: int,
    ) -> list[Entry]:
        """Up to `count` entries of the merged `keys`, newest first, from `cursor`, created in
        [since, until]."""
        bounds = [x for x in (until, cursor.score if cursor else None) if x is not None]
        high: float | str = min(bounds) if bounds else "+inf"
        low: float | str = "-inf" if since is None else since
        skip = cursor.skip if cursor is not None and high == cursor.score else 0
        with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrevrangebyscore(key, high, low, start=0, num=skip + count, withscores=True)
            raws = pipe.execute()
        sources = [[(_text(member), float(score)) for member, score in raw] for raw in raws]
        start = cursor if skip else None
        return after_cursor(merge_newest_first(sources), start)[:count]


def list_jobs(
    store: JobStore,
    *,
    statuses: Sequence[JobStatus] = (),
    batch_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Job]:
    """Jobs newest first, filtered by status (any of), batch and creation time, a page at a
    time. Reads only the index entries it needs and their records."""
    index = store.index
    if batch_id is not None:
        keys = [index.batch_key(batch_id)]
    elif statuses:
        keys = [index.status_key(status) for status in dict.fromkeys(statuses)]
    else:
        keys = [index.jobs_key]
    # With a batch the status is checked on the record; with statuses alone the index is exact.
    wanted = set(statuses) if batch_id is not None and statuses else None

    def keep(ids: list[str]) -> list[Job | None]:
        jobs = store.get_many(ids)
        return [job if job and (wanted is None or job.status in wanted) else None for job in jobs]

    return _paged(index, keys, keep, since=since, until=until, cursor=cursor, limit=limit)


def list_batches(
    store: JobStore,
    *,
    since: float | None = None,
    until: float | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Batch]:
    """Batches newest first, by creation time, a page at a time."""

    def keep(ids: list[str]) -> list[Batch | None]:
        found: list[Batch | None] = []
        for batch_id in ids:
            try:
                found.append(store.get_batch(batch_id))
            except CorruptRecord:
                found.append(None)
        return found

    index = store.index
    keys = [index.batches_key]
    return _paged(index, keys, keep, since=since, until=until, cursor=cursor, limit=limit)


def _paged(
    index: JobIndex,
    keys: list[str],
    keep: Callable[[list[str]], list[T | None]],
    *,
    since: float | None,
    until: float | None,
    cursor: str | None,
    limit: int,
) -> Page[T]:
    """Read entries a chunk at a time, keeping what `keep` returns (None: passed over), until
    `limit` are kept, the entries run out, or the chunk budget is spent."""
    limit = max(1, min(limit, MAX_LIMIT))
    at = Cursor.decode(cursor) if cursor else None
    items: list[T] = []
    for _ in range(_MAX_CHUNKS):
        entries = index.read(keys, since=since, until=until, cursor=at, count=limit + 1)
        chunk = entries[: limit - len(items)]
        items += [item for item in keep([entry[0] for entry in chunk]) if item is not None]
        at = cursor_after(chunk, at)
        if len(entries) <= len(chunk):  # nothing beyond what was read: the listing ends
            return Page(items, None)
        if len(items) >= limit:
            break
    return Page(items, at.encode() if at is not None else None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
