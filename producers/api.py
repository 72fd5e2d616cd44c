"""`ImageQueue`: the way in for Python producers (`imageq.producers.shortcuts` has the
module-level shortcuts over a default one).

Everything is checked before anything is stored or queued; a refused job leaves no trace.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Unpack

from celery import Celery

from imageq.config import Settings
from imageq.producers.idempotency import check_same_request
from imageq.producers.jobs import (
    JobOptions,
    Lane,
    build_job,
    check_job_id,
    check_options,
    check_webhook_url,
    plain_json,
)
from imageq.worker.app import create_app, send_actions
from imageq.worker.domain import transitions
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import Job
from imageq.worker.domain.submit_schedule import split_submits
from imageq.worker.errors import (
    CorruptRecord,
    ImageqError,
    InvalidParams,
    JobConflict,
    JobNotFound,
    WaitTimeout,
)
from imageq.worker.logs import lifecycle
from imageq.worker.messages import Actions, Submit
from imageq.worker.runtime import connect_store
from imageq.worker.store import job_index
from imageq.worker.store.job_index import Page
from imageq.worker.store.job_store import JobStore

_REFUSED_NOTE = "refused_rows"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enqueued:
    """What `enqueue_job` did: the job's id, and whether that id was already known, for the
    same request (then nothing was stored or sent this time)."""

    job_id: str
    already_known: bool


@dataclass(frozen=True)
class BatchReport:
    """What `enqueue_many` did: line -> job id of the rows it took, and the rows it refused."""

    batch_id: str
    jobs: dict[int, str]
    queued: int
    already_known: int
    errors: list[tuple[int, str]] = field(default_factory=list)


class ImageQueue:
    """Enqueue generation jobs, read them, wait for them, cancel them."""

    def __init__(
        self,
        settings: Settings,
        *,
        app: Celery | None = None,
        store: JobStore | None = None,
    ) -> None:
        self._settings = settings
        self._app = app or create_app(settings)
        self._store = store or connect_store(settings)

    def __repr__(self) -> str:
        return f"ImageQueue(store={self._store!r})"

    def enqueue(
        self, prompt: str, *, lane: Lane = "interactive", **options: Unpack[JobOptions]
    ) -> str:
        """Validate and queue a job; return its id. `options` are `JobOptions`:
        `aspect_ratio` and `resolution` are required. `callback` is a Celery signature, called
        with the completion payload as its first argument.

        A `job_id` is an idempotency key: an id already known for the same request is returned
        and nothing is submitted again; for a different request it raises `JobConflict` (an
        `InvalidParams`) naming the fields that differ. `enqueue_job` also says which it was.
        """
        return self.enqueue_job(prompt, lane=lane, **options).job_id

    def enqueue_job(
        self, prompt: str, *, lane: Lane = "interactive", **options: Unpack[JobOptions]
    ) -> Enqueued:
        """`enqueue`, saying whether the job is new or its id was already known."""
        job = build_job(
            self._settings, prompt, lane=lane, now=time.time(), **check_options(options)
        )
        return Enqueued(job.job_id, already_known=not self._queue(job))

    def enqueue_many(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        lines: Sequence[int] | None = None,
        batch_id: str | None = None,
        webhook_url: str | None = None,
        callback: Mapping[str, Any] | None = None,
        name: str | None = None,
        lane: Lane = "bulk",
        hold: bool = False,
        concurrency: int | None = None,
        refused: Sequence[tuple[int, str]] = (),
        max_credits: float | None = None,
    ) -> BatchReport:
        """Validate every row (`prompt` and `JobOptions`), then queue the valid ones as one
        batch; a refused row is reported by line and does not stop the others. Rows without a
        `job_id` get `{batch_id}-{line}`, so enqueueing the same rows with the same batch id
        again resumes the batch and submits nothing twice; a row whose id is known for a
        different request (`JobConflict`) is refused. With `hold` the jobs are stored but
        not submitted until `release`d. With `concurrency` the batch paces itself: at most that
        many of its new jobs are submitted now, and each job of it that ends submits the next
        (in Redis, so nothing needs to keep running here). `refused` are rows the caller
        refused before (line, reason): kept on the batch with those refused here, for its
        manifest (`refused_rows`). With `max_credits` the batch has a credit budget: once
        reached, its remaining jobs end cancelled, reason `budget` (`imageq.worker.domain.cost`).
        """
        lines = list(lines) if lines is not None else list(range(1, len(rows) + 1))
        batch_id = check_job_id(batch_id, field="batch_id") if batch_id else new_batch_id()
        now = time.time()
        jobs: dict[int, Job] = {}
        errors: list[tuple[int, str]] = []
        for line, row in zip(lines, rows, strict=True):
            options = {"job_id": f"{batch_id}-{line:06d}", **row}
            prompt = options.pop("prompt", None)
            try:
                checked = check_options(options)
                job = build_job(
                    self._settings, prompt, lane=lane, batch_id=batch_id, now=now, **checked
                )
            except InvalidParams as error:
                errors.append((line, str(error)))
            else:
                jobs[line] = replace(job, held=hold or concurrency is not None)
        # Before the batch counts them: a conflicting row must not be one of its jobs.
        for line, conflict in self._conflicts(jobs).items():
            errors.append((line, str(conflict)))
            del jobs[line]
        batch = Batch(
            batch_id,
            total=len(jobs),
            created_at=now,
            webhook_url=check_webhook_url(self._settings, webhook_url),
            callback=plain_json("callback", callback, limit=None) if callback else None,
            name=name,
            max_credits=max_credits,
        )
        self._store.create_batch(batch)
        self._store.add_batch_jobs(batch_id, {line: job.job_id for line, job in jobs.items()})
        queued = 0
        created: list[str] = []
        for line, job in list(jobs.items()):
            try:
                if not self._queue(job):
                    continue
                queued += 1
            except (JobConflict, CorruptRecord) as error:
                # Another producer took the id since `_conflicts` looked: the row is refused,
                # though the batch already counts it (a race of two writers to one id).
                errors.append((line, str(error)))
                del jobs[line]
            else:
                created.append(job.job_id)
        if concurrency is not None:
            self._pace(batch_id, concurrency, created)
        if refused or errors:
            noted = [list(row) for row in sorted({*refused, *errors})]
            self._store.note_batch(batch_id, _REFUSED_NOTE, noted)
        return BatchReport(
            batch_id=batch_id,
            jobs={line: job.job_id for line, job in jobs.items()},
            queued=queued,
            already_known=len(jobs) - queued,
            errors=sorted(errors),
        )

    def _pace(self, batch_id: str, concurrency: int, held: list[str]) -> None:
        """Let the batch's jobs run `concurrency` at a time: the held jobs beyond the room left
        wait in Redis for running ones to end (the list is stored before any is released, so no
        job can end unseen); the rest are released now."""
        jobs = self.batch_jobs(batch_id).values()
        room = max(0, concurrency - sum(not job.held and not job.is_terminal for job in jobs))
        self._store.pace_batch(batch_id, concurrency, held[room:])
        for job_id in held[:room]:
            self.release(job_id)

    def release(self, job_id: str) -> bool:
        """Submit a held job (once: False if it was not held)."""
        released = transitions.release(self._store.get(job_id), now=time.time())
        if released is None or not self._store.apply(released):
            return False
        self._publish(released.follow_ups())
        return True

    def get(self, job_id: str) -> Job:
        """The job's record; raises `JobNotFound` if there is none."""
        return self._store.get(job_id)

    def batch(self, batch_id: str) -> Batch:
        """The batch's counters; raises `JobNotFound` (naming the batch) if there is none."""
        batch = self._store.get_batch(batch_id)
        if batch is None:
            raise JobNotFound(batch_id)
        return batch

    def batch_jobs(self, batch_id: str) -> dict[int, Job]:
        """Line -> job, for the jobs of a batch whose records still exist."""
        lines = self._store.batch_jobs(batch_id)
        found = self._store.get_many(list(lines.values()))
        return {line: job for line, job in zip(lines, found, strict=True) if job is not None}

    def refused_rows(self, batch_id: str) -> list[tuple[int, str]]:
        """The rows refused when the batch was enqueued (line, reason), by line."""
        note = self._store.read_batch_note(batch_id, _REFUSED_NOTE) or []
        return [(int(line), str(reason)) for line, reason in note]

    def jobs(self, **filters: Any) -> Page[Job]:
        """Jobs newest first, a page at a time: `job_index.list_jobs` (by status, batch and
        creation time; pass a page's `next_cursor` for the next), from indexes, never a scan."""
        return job_index.list_jobs(self._store, **filters)

    def batches(self, **filters: Any) -> Page[Batch]:
        """Batches newest first, a page at a time: `job_index.list_batches`."""
        return job_index.list_batches(self._store, **filters)

    def wait(self, job_id: str, timeout_s: float, *, check_every_s: float = 0.25) -> Job:
        """Block until the job is terminal and return it; raise `WaitTimeout` after timeout_s."""
        give_up = time.monotonic() + timeout_s
        while True:
            job = self._store.get(job_id)
            if job.is_terminal:
                return job
            left = give_up - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"job {job_id} is still {job.status} after {timeout_s:g} s")
            time.sleep(min(check_every_s, left))

    def cancel(self, job_id: str) -> bool:
        """Stop a job that has not finished: no more polls, status `cancelled`, notifications
        sent once. False if it had already finished."""
        cancelled = transitions.cancel(self._store.get(job_id), now=time.time())
        if cancelled is None:
            return False
        write = self._store.apply(cancelled)
        if write:
            released: Actions = [Submit(job_id, lane) for job_id, lane in write.released]
            self._publish(cancelled.follow_ups(batch_complete=write.batch_complete) + released)
        return write.applied

    def cancel_batch(self, batch_id: str) -> int:
        """Cancel every unfinished job of a batch; return how many were cancelled."""
        self.batch(batch_id)
        return sum(self.cancel(job.job_id) for job in self.batch_jobs(batch_id).values())

    def _queue(self, job: Job) -> bool:
        """Store and queue a new job; False (nothing sent) if its id is already known for the
        same request; `JobConflict` (nothing written) if for another."""
        # In poller mode the creating write files the submit in its lane's schedule.
        if not self._create(job, schedule_submit=self._polled_by_poller):
            return False
        if not job.held and not self._polled_by_poller:
            try:
                self._publish([Submit(job.job_id, job.lane)])
            except BaseException:
                # Not queued, so not kept: the producer can enqueue the same id again.
                self._store.delete(job.job_id)
                raise
        fields = lifecycle(
            "job.enqueued", job_id=job.job_id, batch_id=job.batch_id, lane=job.lane, held=job.held
        )
        log.info("job %s enqueued", job.job_id, extra=fields)
        return True

    def _create(self, job: Job, *, schedule_submit: bool = False) -> bool:
        """Store the new job; False if its id is known for the same request, `JobConflict` if
        for another (nothing written either way)."""
        # A known record can vanish between the two reads (its TTL ran out, or a producer took
        # back a job it could not queue): the id is free again, so try again, a few times.
        for _ in range(3):
            due_at = None if job.held else time.time()
            if self._store.create(job, due_at=due_at, schedule_submit=schedule_submit):
                return True
            try:
                known = self._store.get(job.job_id)
            except JobNotFound:
                continue
            check_same_request(known, job)
            return False
        raise ImageqError(f"job {job.job_id!r} keeps appearing and vanishing; enqueue it again")

    def _conflicts(self, jobs: Mapping[int, Job]) -> dict[int, JobConflict]:
        """Line -> conflict, for the jobs whose id is known for a different request."""
        known = self._store.get_many([job.job_id for job in jobs.values()])
        conflicts = {}
        for (line, job), before in zip(jobs.items(), known, strict=True):
            try:
                if before is not None:
                    check_same_request(before, job)
            except JobConflict as error:
                conflicts[line] = error
        return conflicts

    @property
    def _polled_by_poller(self) -> bool:
        return self._settings.polling.mode == "poller"

    def _publish(self, actions: Actions) -> None:
        """Send the actions as task messages; in poller mode submits go in their lanes'
        schedules instead (a worker in countdown mode still takes them: its sweeper re-sends
        them as messages once overdue)."""
        if self._polled_by_poller:
            submits, actions = split_submits(actions)
            self._store.schedule_submits(submits, now=time.time())
        send_actions(self._app, actions, self._settings.worker)


def new_batch_id() -> str:
    return f"b_{uuid.uuid4().hex[:16]}"
