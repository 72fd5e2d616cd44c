"""After a webhook attempt: delivered, retry later, or give up. A pure function of its inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imageq.worker.policy.backoff import Random


@dataclass(frozen=True)
class Delivered:
    """The receiver answered 2xx."""


@dataclass(frozen=True)
class RetryIn:
    """Try again after `delay_s` seconds."""

    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    """Stop: the delivery goes to the dead-letter list with this reason."""

    reason: str


Outcome = Delivered | RetryIn | GiveUp


def next_delivery(
    *,
    attempts_made: int,
    http_status: int | None,
    error: str | None,
    retry_after_s: float | None,
    schedule_s: Sequence[float],
    jitter: float,
    rand: Random,
    final_error: bool = False,
) -> Outcome:
    """Decide after attempt number `attempts_made` (1-based, counted since the last replay).

    2xx delivers. 410 Gone, and errors marked final (an unsafe target), give up at once.
    Anything else (timeouts, refused connections, 3xx since redirects are not followed, other
    4xx and 5xx) is retried on the schedule, delay +/- jitter, never sooner than Retry-After,
    until the schedule runs out.
    """
    if http_status is not None and 200 <= http_status < 300:
        return Delivered()
    last = f"HTTP {http_status}" if http_status is not None else (error or "no answer")
    if http_status == 410:
        return GiveUp("the receiver answered 410 Gone")
    if final_error:
        return GiveUp(f"not retryable: {last}")
    if attempts_made >= len(schedule_s):
        return GiveUp(f"no 2xx after {attempts_made} attempts; the last got {last}")
    delay = schedule_s[attempts_made] * (1 + (2 * rand() - 1) * jitter)
    return RetryIn(max(delay, retry_after_s or 0.0))
