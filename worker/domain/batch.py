"""A batch: the jobs of one bulk run, counted by status as they move."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus


@dataclass(frozen=True)
class Batch:
    """A batch's totals and what to do when its last job finishes."""

    batch_id: str
    total: int
    created_at: float = 0.0
    completed_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    webhook_url: str | None = None
    callback: dict[str, Any] | None = None
    name: str | None = None

    @property
    def finished(self) -> int:
        return sum(self.counts.get(str(status), 0) for status in TERMINAL_JOB_STATUSES)

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None

    def count(self, status: JobStatus) -> int:
        return self.counts.get(str(status), 0)

    def count_active(self) -> int:
        """Jobs queued or submitted: not yet finished."""
        return self.count(JobStatus.QUEUED) + self.count(JobStatus.SUBMITTED)

    def to_hash(self) -> dict[str, str]:
        """The fields a producer sets; the counters are the store's to keep."""
        return {
            "total": str(self.total),
            "created_at": str(self.created_at),
            "meta": json.dumps(
                {"webhook_url": self.webhook_url, "callback": self.callback, "name": self.name}
            ),
        }

    @classmethod
    def from_hash(cls, batch_id: str, raw: Mapping[bytes | str, bytes | str]) -> Batch:
        values = {_text(key): _text(value) for key, value in raw.items()}
        meta = json.loads(values.get("meta", "{}"))
        statuses = {str(status) for status in JobStatus}
        completed = values.get("completed_at")
        return cls(
            batch_id=batch_id,
            total=int(values.get("total", 0)),
            created_at=float(values.get("created_at", 0)),
            completed_at=float(completed) if completed else None,
            counts={key: int(value) for key, value in values.items() if key in statuses},
            webhook_url=meta.get("webhook_url"),
            callback=meta.get("callback"),
            name=meta.get("name"),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
