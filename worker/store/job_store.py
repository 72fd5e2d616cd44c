"""The job store: one Redis hash per job, changed only by atomic compare-and-set.

Every write is one Lua script: it checks the expected field values and, only if all match,
writes the changes and refreshes the record's TTL, and in the same step keeps the indexes in
line: the in-flight index (job id -> next due check), the API slots (the cap on jobs in flight
against the API, across all workers), the dead-letter list, and the counters of the job's
batch. So two workers racing on one job cannot both move it, a job reaches a terminal state
once, and a batch completes once.

The in-flight index holds every job with work still to do (a submit, a poll, saving outputs,
a notification), scored by when that work is due; the sweeper re-sends what is overdue.

Replication to a Redis replica is asynchronous, so a failover can lose the master's last writes.
With `wait_replicas` set, the writes a failover must not lose (`survives_failover`) are followed,
on the same connection, by Redis `WAIT`: the write returns only once that many replicas have it,
or raises `WriteNotReplicated` when they do not say so in time.

The batch key is derived inside the script from the job's `batch_id`, so this store assumes a
single Redis (not Redis Cluster), as Celery's Redis broker does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import redis

from imageq.worker.domain.job import DEFAULTS, Job, encode_fields, is_default
from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from imageq.worker.domain.submit_schedule import lane_of
from imageq.worker.domain.transitions import Slot as Slot  # where callers have always found it
from imageq.worker.domain.transitions import Transition
from imageq.worker.errors import CorruptRecord, JobNotFound, WriteNotReplicated
from imageq.worker.store.batch_store import BatchRecords
from imageq.worker.store.cost_store import CostRecords
from imageq.worker.store.job_index import JobIndex
from imageq.worker.store.work_index import WorkIndexes

log = logging.getLogger(__name__)


def _script(name: str) -> str:
    return resources.files("imageq.worker.store").joinpath("lua", name).read_text(encoding="utf-8")


_WRITE: Final = _script("write.lua")
_CLAIM_DUE: Final = _script("claim_due.lua")
_RELEASE_SUBMIT: Final = _script("release_submit.lua")
_POLL_ON: Final = _script("poll_on.lua")
_TERMINAL: Final = {str(status): True for status in TERMINAL_JOB_STATUSES}
_SUBMITTED: Final = encode_fields({"status": JobStatus.SUBMITTED})["status"]
_POLL_ON_CHANGES: Final = frozenset({"poll_token", "poll_count", "next_poll_at", "remote_status"})
_DEFAULT_REMOTE_STATUS: Final = DEFAULTS["remote_status"]

DURABLE_FIELDS: Final = frozenset(
    {
        # Where the job stands: a lost terminal transition would run the job's end again.
        "status",
        # The API's id of the job, and the window in which a submit request may have reached
        # the API: lost, a redelivered submit would send the job again instead of looking it up.
        "remote_task_id",
        "submit_sent_until",
        # Outputs saved, and a notification being sent or sent: lost, it would go out twice.
        "downloads_state",
        "callback_state",
        "webhook_state",
    }
)
"""Fields whose change must survive a failover. A write that changes none of them (a poll's
count and token, a retry's schedule) may be lost: the step that made it runs again."""


def survives_failover(*, create: bool, changes: Mapping[str, Any]) -> bool:
    """Whether a write must be acknowledged by the replicas: a job's creation, or a change of a
    `DURABLE_FIELDS` field."""
    return create or not DURABLE_FIELDS.isdisjoint(changes)


@dataclass(frozen=True)
class Write:
    """What a write did. True when applied; says whether it took an API slot or completed a
    batch."""

    applied: bool
    no_slot: bool = False
    batch_complete: bool = False
    # (job id, lane) of a paced batch's held job this write released: its submit is due now.
    released: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return self.applied


class JobStore(BatchRecords, CostRecords, WorkIndexes):
    """Create, read and compare-and-set job records; read batches and dead letters; `index`
    lists them (`imageq.worker.store.job_index`)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        ttl_s: int,
        wait_replicas: int = 0,
        wait_timeout_s: float = 1.0,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = max(1, round(wait_timeout_s * 1000))
        self.index = JobIndex(client, prefix=prefix, ttl_s=ttl_s)
        self._write = client.register_script(_WRITE)
        self._claim = client.register_script(_CLAIM_DUE)
        self._release_submit = client.register_script(_RELEASE_SUBMIT)
        self._poll_on = client.register_script(_POLL_ON)

    def __repr__(self) -> str:
        return f"JobStore(prefix={self._prefix!r})"

    def key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def create(
        self, job: Job, *, due_at: float | None = None, schedule_submit: bool = False
    ) -> bool:
        """Store a new job (due in the in-flight index at `due_at`, if given; with
        `schedule_submit`, in its lane's submit schedule at the same time, poller mode's
        submit); False (and nothing written) if the id is taken."""
        extra: dict[str, Any] = {"due_at": due_at} if due_at is not None else {}
        if schedule_submit and due_at is not None:
            extra["submit_schedule"] = self.submit_schedule_key(lane_of(job.lane))
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
        status, batch = self._redis.hmget(self.key(job_id), ["status", "batch_id"])
        self._redis.delete(self.key(job_id))
        self._redis.zrem(self.in_flight_key, job_id)
        self.index.forget_job(
            job_id,
            status=json.loads(status) if status is not None else None,
            batch_id=json.loads(batch) if batch is not None else None,
        )

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

    def hand_on_poll(self, moving: Transition) -> bool:
        """Carry out a poll that goes on (`transitions.poll_on`) with its own small script:
        the same checked write and index changes `apply` makes of it, from plain arguments,
        without a JSON document to build and decode. True when applied. It changes no field a
        failover must keep (`DURABLE_FIELDS`), so it never waits for replicas."""
        if (
            moving.changes.keys() != _POLL_ON_CHANGES
            or moving.expect.get("status") is not JobStatus.SUBMITTED
            or len(moving.expect) != 2
            or moving.due_at is None
        ):
            raise ValueError(f"not a poll that goes on: {sorted(moving.changes)}")
        changes = moving.changes
        remote_status = _encode(changes["remote_status"])
        result = self._poll_on(
            keys=[self.key(moving.job_id), self.in_flight_key, self.poll_schedule_key],
            args=[
                moving.job_id,
                moving.expect["poll_token"],
                changes["poll_token"],
                changes["poll_count"],
                _encode(changes["next_poll_at"]),
                _encode(moving.due_at),
                _encode(time.time()),
                self._ttl_s,
                "" if remote_status == _DEFAULT_REMOTE_STATUS else remote_status,
            ],
        )
        if result == -1:
            raise JobNotFound(moving.job_id)
        return bool(result)

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
        if self._wait_replicas and survives_failover(create=create, changes=changes):
            raw = self._write_acknowledged(job_id, keys, json.dumps(args))
        else:
            raw = self._write(keys=keys, args=[json.dumps(args)])
        released: tuple[tuple[str, str], ...] = ()
        if isinstance(raw, list):  # it also released a paced batch's next job
            raw, other, lane = raw
            released = ((_text(other), json.loads(lane or DEFAULTS["lane"])),)
        result = int(raw)
        if result == -1:
            raise JobNotFound(job_id)
        return Write(
            applied=result > 0,
            no_slot=result == -2,
            batch_complete=result == 2,
            released=released,
        )

    def _write_acknowledged(self, job_id: str, keys: list[str], args: str) -> Any:
        """The write, then `WAIT` in the same pipeline: `WAIT` counts the replicas that have
        this connection's writes, so it must follow the write on the same connection."""
        with self._redis.pipeline(transaction=False) as pipe:
            self._write(keys=keys, args=[args], client=pipe)
            pipe.wait(self._wait_replicas, self._wait_timeout_ms)
            raw, acknowledged = pipe.execute()
        if int(acknowledged) < self._wait_replicas:
            raise WriteNotReplicated(
                job_id, acknowledged=int(acknowledged), required=self._wait_replicas
            )
        return raw


def _encode(value: Any) -> str:
    """A scalar field's value as `encode_fields` stores it (separators matter only inside
    containers, so the default encoder, which `json` keeps built, gives the same text)."""
    return json.dumps(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
