"""A batch: the jobs of one bulk run, counted by status as they move."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from imageq.worker.errors import CorruptRecord

_T = TypeVar("_T")


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
    # Credits the API reported for its finished jobs (the store adds each as the job ends).
    credits_used: float = 0.0
    # The optional credit budget (bulk --max-credits); estimates of its jobs in flight under it.
    max_credits: float | None = None
    credits_in_flight: float = 0.0
    # Set once the budget refused a submit: the batch submits nothing more.
    budget_reached: bool = False

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
        fields = {
            "total": str(self.total),
            "created_at": str(self.created_at),
            "meta": json.dumps(
                {"webhook_url": self.webhook_url, "callback": self.callback, "name": self.name}
            ),
        }
        if self.max_credits is not None:
            fields["max_credits"] = repr(float(self.max_credits))
        return fields

    @classmethod
    def from_hash(cls, batch_id: str, raw: Mapping[bytes | str, bytes | str]) -> Batch:
        """The batch a stored record holds; raises `CorruptRecord` naming the batch and the
        first field that cannot be decoded."""
        values = {_text(key, errors="replace"): value for key, value in raw.items()}

        def read(name: str, parse: Callable[[str], _T], default: _T) -> _T:
            if name not in values:
                return default
            try:
                return parse(_text(values[name]))
            except ValueError:  # also a JSONDecodeError, or bytes that are not UTF-8
                reason = f"not {_KIND.get(parse, 'readable')}"
                raise CorruptRecord(batch_id, name, reason, kind="batch") from None

        meta: dict[str, Any] = read("meta", _json_object, {})
        statuses = {str(status) for status in JobStatus}
        return cls(
            batch_id=batch_id,
            total=read("total", int, 0),
            created_at=read("created_at", float, 0.0),
            completed_at=read("completed_at", _maybe_float, None),
            counts={name: read(name, int, 0) for name in values if name in statuses},
            webhook_url=_optional(batch_id, meta, "webhook_url", str),
            callback=_optional(batch_id, meta, "callback", dict),
            name=_optional(batch_id, meta, "name", str),
            credits_used=read("credits_used", float, 0.0),
            max_credits=read("max_credits", _maybe_float, None),
            credits_in_flight=max(0.0, read("credits_in_flight", float, 0.0)),
            budget_reached="budget_reached" in values,
        )


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _maybe_float(text: str) -> float | None:
    return float(text) if text else None


_KIND: dict[object, str] = {
    int: "an integer",
    float: "a number",
    _maybe_float: "a number",
    _json_object: "a JSON object",
}


def _optional(batch_id: str, meta: Mapping[str, Any], name: str, kind: type[_T]) -> _T | None:
    value = meta.get(name)
    if value is not None and not isinstance(value, kind):
        raise CorruptRecord(batch_id, f"meta.{name}", f"expected {kind.__name__}", kind="batch")
    return value


def _text(value: bytes | str, *, errors: str = "strict") -> str:
    return value.decode(errors=errors) if isinstance(value, bytes) else value
