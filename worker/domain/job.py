"""The job record: everything imageq knows about one job, as stored in Redis.

A `Job` is immutable; changes are made with `dataclasses.replace` and written back by the
store with a compare-and-set. Every field is plain JSON, so the record reads well in redis-cli.

A field at its default value is not stored (the store drops it, reading fills it in): a job in
flight has about 15 of its 35 fields set, and Redis keeps a hash at a cost per field, so this
halves the record.

`JobFields` names any subset of the fields with their types, so the changes a transition makes
(`imageq.worker.domain.transitions`) are checked by mypy; a record that cannot be decoded is a
`CorruptRecord` naming the job and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import Enum, StrEnum
from types import NoneType, UnionType
from typing import Any, Final, TypedDict, get_args, get_origin, get_type_hints

from imageq.worker.domain.params import GenerationParams
from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from imageq.worker.errors import CorruptRecord


class Delivery(StrEnum):
    """Where one notification target (the callback or the webhook) stands."""

    NONE = "none"
    """The producer asked for none."""
    PENDING = "pending"
    """Due: waiting for its (next) attempt."""
    SENDING = "sending"
    """A worker is sending it now (under a lease, so a lost worker's send is retried)."""
    SENT = "sent"
    """Delivered (for a webhook: answered 2xx)."""
    DEAD = "dead"
    """Given up: the reason is in the dead-letter list, and it can be replayed."""


class Downloads(StrEnum):
    """Where saving a job's outputs stands."""

    NONE = "none"
    """Saving is off, or there is nothing to save."""
    PENDING = "pending"
    """Being downloaded; notifications wait for it."""
    DONE = "done"
    """Every output saved, or its download error recorded."""


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
    # While in the future, a worker is inside a submit attempt; others leave the job alone.
    submit_lease_until: float = 0.0
    # When the first submit attempt was made: retryable errors are retried for a window from it.
    submit_first_at: float | None = None
    # 0: no submit request of this job can have reached the API. Else the time until which the
    # latest one may still be acted on: the next attempt looks the job up first, and sends no
    # submit of its own before then.
    submit_sent_until: float = 0.0
    remote_status: str | None = None
    poll_count: int = 0
    poll_token: int = 0
    next_poll_at: float | None = None
    # Seconds the poll deadline was moved for polls a pause on 429 delayed (capped).
    deadline_extended_s: float = 0.0
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    batch_id: str | None = None
    # Stored but not yet sent to the submit queue: a bulk run releases it when there is room.
    held: bool = False
    # "interactive" jobs may use every API slot; "bulk" ones leave a reserve for them.
    lane: str = "interactive"
    webhook_url: str | None = None
    callback: dict[str, Any] | None = None
    downloads_state: Downloads = Downloads.NONE
    download_attempts: int = 0
    download_lease_until: float = 0.0
    callback_state: Delivery = Delivery.NONE
    callback_lease_until: float = 0.0
    webhook_state: Delivery = Delivery.NONE
    webhook_attempts: list[dict[str, Any]] = field(default_factory=list)
    webhook_next_at: float | None = None
    webhook_lease_until: float = 0.0
    # Attempts made before the latest replay: the retry schedule restarts after a replay.
    webhook_replay_base: int = 0
    # Credits the API says the job used (None: not reported); the batch's total adds it up.
    credits_used: float | None = None

    @property
    def out_task_id(self) -> str:
        """Our id as the API knows it: the job id itself, so lookups need nothing else."""
        return self.job_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def is_settled(self) -> bool:
        """Terminal, outputs saved, and every notification sent or given up: nothing left."""
        busy = (Delivery.PENDING, Delivery.SENDING)
        return (
            self.is_terminal
            and self.downloads_state != Downloads.PENDING
            and self.callback_state not in busy
            and self.webhook_state not in busy
        )

    @property
    def generation_params(self) -> GenerationParams:
        return GenerationParams.from_record(self.params)

    def to_hash(self) -> dict[str, str]:
        """One JSON value per field (the store leaves out those at their default)."""
        return encode_fields(asdict(self))

    @classmethod
    def from_hash(cls, raw: Mapping[bytes | str, bytes | str], *, job_id: str | None = None) -> Job:
        """The job a stored record holds (`job_id`: the id it is stored under, for errors).

        Raises `CorruptRecord` naming the job and the first field that is missing, not JSON,
        or of the wrong kind; fields this version does not know are ignored.
        """
        stored = {_text(key, errors="replace"): value for key, value in raw.items()}
        record_id = job_id or _stored_id(stored)
        values = {}
        for name, value in stored.items():
            if name in _KINDS:
                values[name] = _decode(record_id, name, value)
        for name in _REQUIRED:
            if name not in values:
                raise CorruptRecord(record_id, name, "missing")
        return cls(**values)


class JobFields(TypedDict, total=False):
    """Any of a job record's fields, typed as in `Job`: what a transition expects and changes."""

    job_id: str
    params: dict[str, Any]
    status: JobStatus
    created_at: float
    updated_at: float
    submitted_at: float | None
    finished_at: float | None
    deadline_at: float | None
    remote_task_id: str | None
    submit_attempts: int
    submit_lease_until: float
    submit_first_at: float | None
    submit_sent_until: float
    remote_status: str | None
    poll_count: int
    poll_token: int
    next_poll_at: float | None
    deadline_extended_s: float
    outputs: list[dict[str, Any]]
    error: dict[str, Any] | None
    metadata: dict[str, Any]
    batch_id: str | None
    held: bool
    lane: str
    webhook_url: str | None
    callback: dict[str, Any] | None
    downloads_state: Downloads
    download_attempts: int
    download_lease_until: float
    callback_state: Delivery
    callback_lease_until: float
    webhook_state: Delivery
    webhook_attempts: list[dict[str, Any]]
    webhook_next_at: float | None
    webhook_lease_until: float
    webhook_replay_base: int
    credits_used: float | None


def is_default(name: str, encoded: str) -> bool:
    """True when a field's encoded value is its default, so the record need not hold it.
    `status` is always held: the store's batch counters read it."""
    return name != "status" and DEFAULTS.get(name) == encoded


def encode_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """Encode field values the way the record stores them, for writes and comparisons."""
    return {key: json.dumps(value, separators=(",", ":")) for key, value in values.items()}


def _text(value: bytes | str, *, errors: str = "strict") -> str:
    return value.decode(errors=errors) if isinstance(value, bytes) else value


def _stored_id(stored: Mapping[str, bytes | str]) -> str:
    """The record's own job id, for an error about it, if that much is readable."""
    try:
        value = json.loads(stored["job_id"])
    except (KeyError, ValueError):
        return "?"
    return value if isinstance(value, str) else "?"


def _decode(record_id: str, name: str, value: bytes | str) -> Any:
    """One stored field's value, checked against its type in `Job`."""
    try:
        decoded = json.loads(value)  # bytes that are not UTF-8 raise a ValueError too
    except ValueError:
        raise CorruptRecord(record_id, name, "not JSON") from None
    kinds = _KINDS[name]
    # bool is an int to isinstance, but a poll count of `true` is still corrupt.
    if not isinstance(decoded, kinds) or (isinstance(decoded, bool) and bool not in kinds):
        expected = " or ".join(kind.__name__ for kind in kinds)
        raise CorruptRecord(record_id, name, f"expected {expected}, got {type(decoded).__name__}")
    enum = _ENUMS.get(name)
    if enum is None:
        return decoded
    try:
        return enum(decoded)
    except ValueError:
        raise CorruptRecord(record_id, name, f"not a {enum.__name__}") from None


def _json_kinds(hint: Any) -> tuple[type, ...]:
    """The JSON value types a field of this type decodes to (an enum is stored as its string)."""
    if isinstance(hint, UnionType):
        return tuple(kind for arg in get_args(hint) for kind in _json_kinds(arg))
    if hint is NoneType:
        return (NoneType,)
    origin = get_origin(hint) or hint
    if origin is float:
        return (float, int)
    if issubclass(origin, Enum):
        return (str,)
    return (origin,)


def _defaults() -> dict[str, str]:
    values = {}
    for spec in fields(Job):
        if spec.default is not MISSING:
            values[spec.name] = spec.default
        elif spec.default_factory is not MISSING:
            values[spec.name] = spec.default_factory()
    return encode_fields(values)


DEFAULTS: Final = _defaults()
"""Each field's default, encoded as the record stores it (a field left out has this value)."""

_HINTS: Final = get_type_hints(Job)
_KINDS: Final = {name: _json_kinds(hint) for name, hint in _HINTS.items()}
_ENUMS: Final[dict[str, type[Enum]]] = {
    name: hint for name, hint in _HINTS.items() if isinstance(hint, type) and issubclass(hint, Enum)
}
# `status` has a default but is always stored (the batch counters read it): missing, it is lost.
_REQUIRED: Final = ("job_id", "params", "status")
