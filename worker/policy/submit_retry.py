"""After a failed submit attempt: whether to try again, and when. Pure functions.

An API that does not answer is waited out, not turned into a failure: retryable errors are
retried with capped backoff until `retry.outage_window_s` after the job's first attempt.
"""

from __future__ import annotations

from imageq.config import RetrySettings
from imageq.worker.errors import ApiError, ApiUnreachable
from imageq.worker.policy.backoff import Random, backoff_delay_s


def submit_retry_delay_s(
    error: ApiError,
    *,
    attempt: int,
    first_attempt_at: float,
    now: float,
    retry: RetrySettings,
    max_countdown_s: float,
    rand: Random,
) -> float | None:
    """The delay before attempt `attempt` + 1, or None: the job ends with `error`.

    A final error ends it at once; a retryable one is retried after a capped exponential
    backoff, never sooner than its Retry-After, until the window since the first attempt is
    over. No delay is longer than one countdown (`max_countdown_s`): a longer one would be held
    past the broker's visibility timeout, and asking sooner costs one more 429 at worst.
    """
    if not error.retryable or now - first_attempt_at >= retry.outage_window_s:
        return None
    delay = max(backoff_delay_s(attempt, retry, rand), error.retry_after_s or 0.0)
    return min(delay, max_countdown_s)


def may_have_reached_api(error: ApiError) -> bool:
    """Whether a submit that failed with `error` may still have been taken by the API, so the
    next attempt looks the job up before sending it again.

    No connection, or an HTTP answer below 500 (429 included), means nothing was created; a
    timeout, a dropped connection, a 5xx or an unreadable 2xx may hide an accepted submit.
    """
    if isinstance(error, ApiUnreachable):
        return False
    status = error.http_status
    return status is None or status >= 500 or 200 <= status < 300
