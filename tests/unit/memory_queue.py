"""An `ImageQueue` over a job store kept in a dict and a Celery app that only takes notes: the
producer API and the CLI in unit tests, without Redis. Records go through the same JSON
encoding as the real store's, so what is read back is what Redis would give."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, cast

from celery import Celery

from imageq.config import Settings
from imageq.producers.api import ImageQueue
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import Job, encode_fields
from imageq.worker.domain.transitions import Transition
from imageq.worker.errors import JobNotFound
from imageq.worker.store.job_store import JobStore, Write


class MemoryStore:
    """The `JobStore` methods the producer API calls, in dicts."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, str]] = {}
        self.batches: dict[str, Batch] = {}
        self.batch_lines: dict[str, dict[int, str]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.writes = 0

    @property
    def jobs(self) -> dict[str, Job]:
        return {job_id: self.get(job_id) for job_id in self.records}

    def create(
        self, job: Job, *, due_at: float | None = None, schedule_submit: bool = False
    ) -> bool:
        if job.job_id in self.records:
            return False
        self.records[job.job_id] = job.to_hash()
        self.writes += 1
        return True

    def get(self, job_id: str) -> Job:
        if job_id not in self.records:
            raise JobNotFound(job_id)
        raw: dict[bytes | str, bytes | str] = dict(self.records[job_id].items())
        return Job.from_hash(raw, job_id=job_id)

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        return [self.get(job_id) if job_id in self.records else None for job_id in job_ids]

    def delete(self, job_id: str) -> None:
        self.records.pop(job_id, None)

    def apply(self, transition: Transition) -> Write:
        job = self.get(transition.job_id)
        current = asdict(job)
        expected = encode_fields(transition.expect)
        if any(encode_fields({k: current[k]})[k] != v for k, v in expected.items()):
            return Write(applied=False)
        self.records[job.job_id] = transition.applied_to(job).to_hash()
        self.writes += 1
        return Write(applied=True)

    def create_batch(self, batch: Batch) -> bool:
        return self.batches.setdefault(batch.batch_id, batch) is batch

    def add_batch_jobs(self, batch_id: str, job_ids: Mapping[int, str]) -> None:
        self.batch_lines.setdefault(batch_id, {}).update(job_ids)

    def get_batch(self, batch_id: str) -> Batch | None:
        return self.batches.get(batch_id)

    def batch_jobs(self, batch_id: str) -> dict[int, str]:
        return dict(self.batch_lines.get(batch_id, {}))

    def note_batch(self, batch_id: str, field: str, value: Any) -> None:
        self.notes.setdefault(batch_id, {})[field] = json.loads(json.dumps(value))

    def read_batch_note(self, batch_id: str, field: str) -> Any:
        return self.notes.get(batch_id, {}).get(field)


class SentTasks:
    """A Celery app that only notes the tasks it is asked to send, with their arguments."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.sent]

    def send_task(self, name: str, *, args: Any = (), **options: Any) -> None:
        self.sent.append((name, json.loads(json.dumps(args))))


def memory_queue(
    settings: Settings, store: MemoryStore | None = None
) -> tuple[ImageQueue, MemoryStore, SentTasks]:
    """A queue over `store` (a new, empty one by default), and the app that notes its tasks."""
    store, app = store or MemoryStore(), SentTasks()
    queue = ImageQueue(settings, app=cast(Celery, app), store=cast(JobStore, store))
    return queue, store, app
