"""The module-level shortcuts (`imageq.enqueue`, `wait` ...): `ImageQueue` methods on one
default queue per process, built from `get_settings()` on first use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Unpack

from imageq.config import get_settings
from imageq.producers.api import BatchReport, Enqueued, ImageQueue
from imageq.producers.jobs import JobOptions, Lane
from imageq.worker.domain.job import Job


@cache
def default_queue() -> ImageQueue:
    """The process's `ImageQueue`, built from `get_settings()` on first use."""
    return ImageQueue(get_settings())


def enqueue(prompt: str, *, lane: Lane = "interactive", **options: Unpack[JobOptions]) -> str:
    """`ImageQueue.enqueue` on the default queue."""
    return default_queue().enqueue(prompt, lane=lane, **options)


def enqueue_job(
    prompt: str, *, lane: Lane = "interactive", **options: Unpack[JobOptions]
) -> Enqueued:
    """`ImageQueue.enqueue_job` on the default queue."""
    return default_queue().enqueue_job(prompt, lane=lane, **options)


def get(job_id: str) -> Job:
    """`ImageQueue.get` on the default queue."""
    return default_queue().get(job_id)


def wait(job_id: str, timeout_s: float) -> Job:
    """`ImageQueue.wait` on the default queue."""
    return default_queue().wait(job_id, timeout_s)


def enqueue_many(rows: Sequence[Mapping[str, Any]], **options: Any) -> BatchReport:
    """`ImageQueue.enqueue_many` on the default queue."""
    return default_queue().enqueue_many(rows, **options)


def cancel(job_id: str) -> bool:
    """`ImageQueue.cancel` on the default queue."""
    return default_queue().cancel(job_id)
