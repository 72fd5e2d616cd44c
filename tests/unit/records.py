"""Job records for pure unit tests: built in memory, never stored."""

from __future__ import annotations

from typing import Any

from imageq.worker.domain.job import Job
from imageq.worker.domain.params import GenerationParams

NOW = 1_000.0
PARAMS = GenerationParams("a castle", aspect_ratio="16:9", resolution="1K").to_record()
CALLBACK = {"task": "app.done", "args": [], "kwargs": {}, "options": {}}
HOOK = "https://example.com/hook"


def job(**fields: Any) -> Job:
    """A job `j1` with these fields set (the rest at their defaults)."""
    return Job(job_id="j1", params=PARAMS, created_at=10.0, **fields)
