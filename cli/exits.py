"""Exit codes scripts can rely on (the package docstring lists them)."""

from __future__ import annotations

from enum import IntEnum

from imageq.worker.domain.status import JobStatus


class Exit(IntEnum):
    OK = 0
    NOT_ALL_SUCCEEDED = 1
    INVALID = 2
    NOT_FOUND = 3
    WAIT_TIMEOUT = 4
    UNAVAILABLE = 5
    INTERRUPTED = 130  # Ctrl-C, as shells report it: what was queued keeps running


def exit_for(statuses: list[JobStatus]) -> Exit:
    """OK when every finished job succeeded; NOT_ALL_SUCCEEDED when any ended otherwise."""
    ended_badly = {JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED}
    return Exit.NOT_ALL_SUCCEEDED if any(s in ended_badly for s in statuses) else Exit.OK
