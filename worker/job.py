"""The job record: everything imageq knows about one job, as stored in Redis.

A `Job` is immutable; changes are made with `dataclasses.replace` and written back by the
store with a compare-and-set. Every field is plain JSON, so the record reads well in redis-cli.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from worker.params import GenerationParams
from worker.status import TERMINAL_JOB_STATUSES, JobStatus


class Notify:
    """States of one notification target (the callback or the webhook)."""

    NONE = "none"
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    """One generation job, from enqueue to notification."""

    job_id: str
    params: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    created_at: float = 0.0
    updated_at: float = 0.0
    submitted_at: float | None = None
    finished_at: float | None = None
    deadline_at: float | None = None
    remote_task_id: str | None = None
    submit_attempts: int = 0
    submit_lease_until: float = 0.0
    remote_status: str | None = None
    poll_count: int = 0
    poll_token: int = 0
    next_poll_at: float | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    callback: dict[str, Any] | None = None
    callback_state: str = Notify.NONE
    webhook_state: str = Notify.NONE
    webhook_attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def out_task_id(self) -> str:
        """Our id as the API knows it: the job id itself, so lookups need nothing else."""
        return self.job_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def generation_params(self) -> GenerationParams:
        return GenerationParams.from_record(self.params)

    def to_hash(self) -> dict[str, str]:
        """The Redis hash: one JSON value per field."""
        return encode_fields(asdict(self))

    @classmethod
    def from_hash(cls, raw: Mapping[bytes | str, bytes | str]) -> Job:
        values = {_text(key): json.loads(value) for key, value in raw.items()}
        known = {f.name for f in fields(cls)}
        values["status"] = JobStatus(values["status"])
        return cls(**{key: value for key, value in values.items() if key in known})

    def result(self) -> dict[str, Any]:
        """The completion payload: what the callback and the webhook receive, as plain JSON."""
        return {
            "schema_version": 1,
            "job_id": self.job_id,
            "status": str(self.status),
            "params": self.params,
            "remote_task_id": self.remote_task_id,
            "created_at": self.created_at,
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
            "outputs": self.outputs,
            "error": self.error,
            "metadata": self.metadata,
            "poll_count": self.poll_count,
        }


def encode_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """Encode field values the way the record stores them, for writes and comparisons."""
    return {key: json.dumps(value, separators=(",", ":")) for key, value in values.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
