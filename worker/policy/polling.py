"""What to do after a poll: pure functions of their inputs.

The poll task carries out what `next_step` decides; the deadline is absolute (epoch seconds)
and lives in the job record, so redeliveries and retries cannot stretch it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from imageq.config import PollingSettings
from imageq.worker.domain.status import JobStatus, RemoteStatus
from imageq.worker.errors import ApiError
from imageq.worker.policy.adaptive import first_poll_base_s, next_poll_gap_s
from imageq.worker.policy.backoff import Random, jitter
from imageq.worker.upstream.responses import RemoteTask


@dataclass(frozen=True)
class PollAgain:
    """Not finished: poll again after `delay_s` seconds."""

    delay_s: float


@dataclass(frozen=True)
class Finish:
    """The job is over, with this status, these output URLs and this error (if any)."""

    status: JobStatus
    output_urls: tuple[str, ...] = ()
    error: dict[str, Any] | None = field(default=None)


Step = PollAgain | Finish


def first_poll_delay_s(
    timing: PollingSettings, rand: Random, *, samples: Sequence[float] = ()
) -> float:
    """Delay from submit to the first poll: `first_delay_s`, or the adaptive estimate from
    recent generation times (`samples`) when there are enough, +/- jitter, never negative."""
    return max(0.0, first_poll_base_s(samples, timing) + jitter(timing.jitter_s, rand))


def next_step(
    *,
    remote: RemoteTask | None,
    error: ApiError | None,
    now: float,
    deadline: float,
    timing: PollingSettings,
    rand: Random,
    outage_window_s: float = 0.0,
    elapsed_s: float | None = None,
    samples: Sequence[float] = (),
) -> Step:
    """Decide after one poll, which returned `remote` or raised `error` (exactly one is set).

    A finished remote task ends the job; a final error fails it; otherwise polling goes on
    every `interval_s` +/- jitter (longer if the API asked via Retry-After), with one last
    check at the deadline itself, after which the job times out. The last check is one the
    API answered: while it fails with a retryable error, polling goes on past the deadline,
    for up to `outage_window_s`, so a job that finished during an outage is reported so.
    Given the time since submit (`elapsed_s`) and recent generation times of the job's kind
    (`samples`, ascending), the gap is placed within that window by them
    (`imageq.worker.policy.adaptive.next_poll_gap_s`) instead of at random.
    """
    if remote is not None and remote.status is RemoteStatus.SUCCEEDED:
        if remote.output_urls:
            return Finish(JobStatus.SUCCEEDED, output_urls=remote.output_urls)
        return Finish(JobStatus.FAILED, error=_error("finished without any output URL"))
    if remote is not None and remote.status in (
        RemoteStatus.FAILED,
        RemoteStatus.CANCELLED,
        RemoteStatus.TIMED_OUT,
    ):
        reason = remote.error or f"the remote task ended as {remote.status_word!r}"
        return Finish(JobStatus.FAILED, error=_error(reason, remote_status=remote.status_word))
    if error is not None and not error.retryable:
        return Finish(JobStatus.FAILED, error=error.to_record())
    last_check_by = deadline + (outage_window_s if error is not None else 0.0)
    if now >= last_check_by:
        return Finish(JobStatus.TIMED_OUT, error=_error(_late(error)))
    placed = None if elapsed_s is None else next_poll_gap_s(samples, elapsed_s, timing)
    delay = placed if placed is not None else timing.interval_s + jitter(timing.jitter_s, rand)
    if error is not None and error.retry_after_s is not None:
        delay = max(delay, min(error.retry_after_s, timing.max_retry_wait_s))
    if now < deadline:
        return PollAgain(delay_s=max(0.0, min(delay, deadline - now)))
    return PollAgain(delay_s=max(0.0, min(delay, last_check_by - now)))


def _late(error: ApiError | None) -> str:
    if error is None:
        return "no result before the deadline"
    return f"no result before the deadline, and no answer since: {error.message}"


def _error(message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "JobError", "message": message, "retryable": False, **extra}
