"""Job and remote-task statuses, each defined once, with their terminal sets."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class JobStatus(StrEnum):
    """Where an imageq job stands."""

    QUEUED = "queued"
    """Accepted by a producer; the submit task has not yet reached the API."""
    SUBMITTED = "submitted"
    """The API accepted it; poll tasks follow it."""
    SUCCEEDED = "succeeded"
    """Finished with outputs."""
    FAILED = "failed"
    """Finished without outputs: refused by the API, or the remote generation failed."""
    TIMED_OUT = "timed_out"
    """Not finished by its deadline."""
    CANCELLED = "cancelled"
    """Stopped on request before it finished."""


TERMINAL_JOB_STATUSES: Final = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED}
)


class RemoteStatus(StrEnum):
    """A remote task's status, whichever word the API used for it."""

    PENDING = "pending"
    """Accepted, not started."""
    RUNNING = "running"
    """Being generated."""
    SUCCEEDED = "succeeded"
    """Finished with output."""
    FAILED = "failed"
    """Finished without output."""
    CANCELLED = "cancelled"
    """Cancelled on the platform."""
    TIMED_OUT = "timed_out"
    """The platform gave up on it."""
    UNKNOWN = "unknown"
    """A word this version does not know; treated as not finished, so polling goes on."""


_WORDS: Final[dict[str, RemoteStatus]] = {
    "submitted": RemoteStatus.PENDING,
    "pending": RemoteStatus.PENDING,
    "queued": RemoteStatus.PENDING,
    "processing": RemoteStatus.RUNNING,
    "running": RemoteStatus.RUNNING,
    "in_progress": RemoteStatus.RUNNING,
    "completed": RemoteStatus.SUCCEEDED,
    "succeeded": RemoteStatus.SUCCEEDED,
    "success": RemoteStatus.SUCCEEDED,
    "failed": RemoteStatus.FAILED,
    "fail": RemoteStatus.FAILED,
    "error": RemoteStatus.FAILED,
    "cancelled": RemoteStatus.CANCELLED,
    "canceled": RemoteStatus.CANCELLED,
    "timeout": RemoteStatus.TIMED_OUT,
}

TERMINAL_REMOTE_STATUSES: Final = frozenset(
    {RemoteStatus.SUCCEEDED, RemoteStatus.FAILED, RemoteStatus.CANCELLED, RemoteStatus.TIMED_OUT}
)


def remote_status(word: object) -> RemoteStatus:
    """Normalise a status word from any documented envelope ("In Progress" -> RUNNING)."""
    if not isinstance(word, str):
        return RemoteStatus.UNKNOWN
    key = word.strip().lower().replace(" ", "_").replace("-", "_")
    return _WORDS.get(key, RemoteStatus.UNKNOWN)
