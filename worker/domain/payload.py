"""The completion payload: what the Celery callback and the webhook receive, the same JSON.

Versioned by `schema_version`; `worker/domain/schemas/completion-v1.schema.json` documents it and
the tests validate every payload they see against it.

Version rules: a new optional field is a compatible change and keeps the version (receivers
must ignore fields they do not know); removing, renaming or retyping a field makes a new
version. `credits_used` is such an optional field: present only when the API reported it;
so is `saved.url`, present only when the storage has a public base URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final

from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import Job

SCHEMA_VERSION: Final = 1
EVENT_TYPE: Final = "imageq.job.finished"
BATCH_EVENT_TYPE: Final = "imageq.batch.finished"


def completion_payload(job: Job) -> dict[str, Any]:
    """Build the payload of a terminal job. Pure: the same job gives the same payload."""
    payload = {
        "schema_version": SCHEMA_VERSION,
        "type": EVENT_TYPE,
        "job_id": job.job_id,
        "status": str(job.status),
        "params": job.params,
        "remote_task_id": job.remote_task_id,
        "timestamps": {
            "created_at": iso_time(job.created_at),
            "submitted_at": iso_time(job.submitted_at),
            "finished_at": iso_time(job.finished_at),
        },
        "outputs": [_output(output) for output in job.outputs],
        "error": _error(job.error),
        "metadata": job.metadata,
        "poll_count": job.poll_count,
    }
    if job.credits_used is not None:
        payload["credits_used"] = job.credits_used
    return payload


def batch_payload(batch: Batch, jobs: Mapping[int, Job | None]) -> dict[str, Any]:
    """What a batch's callback and webhook receive once every job of it is terminal."""
    return {
        "schema_version": SCHEMA_VERSION,
        "type": BATCH_EVENT_TYPE,
        "batch_id": batch.batch_id,
        "name": batch.name,
        "total": batch.total,
        "counts": {status: count for status, count in sorted(batch.counts.items()) if count},
        "credits_used": batch.credits_used,
        "timestamps": {
            "created_at": iso_time(batch.created_at),
            "completed_at": iso_time(batch.completed_at),
        },
        "jobs": [
            {"line": line, "job_id": job.job_id, "status": str(job.status)}
            for line, job in sorted(jobs.items())
            if job is not None
        ],
    }


def iso_time(epoch_s: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds: 2026-11-26T06:16:30.123Z."""
    if epoch_s is None:
        return None
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the current payload version."""
    text = (
        resources.files("imageq.worker.domain")
        .joinpath("schemas/completion-v1.schema.json")
        .read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def _output(output: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": output["url"],
        "width": output["width"],
        "height": output["height"],
        "saved": output.get("saved"),
        "download_error": output.get("download_error"),
    }


def _error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "type": error.get("type", "JobError"),
        "code": error.get("code"),
        "http_status": error.get("http_status"),
        "message": error.get("message", ""),
        "retryable": bool(error.get("retryable", False)),
    }
