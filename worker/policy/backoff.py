"""Backoff for retries (submit, downloads, webhooks) and jitter: pure functions, with the
randomness passed in."""

from __future__ import annotations

from collections.abc import Callable

from imageq.config import RetrySettings

Random = Callable[[], float]
"""A source of uniform floats in [0, 1), such as `random.random`."""


def backoff_delay_s(attempt: int, retry: RetrySettings, rand: Random) -> float:
    """Delay before retry number `attempt` (1-based): capped exponential, with equal jitter.

    The un-jittered delay is base * 2**(attempt-1), capped at max_delay_s; the result lies in
    [half of it, all of it), so concurrent retries spread out but never retry at once.
    """
    ceiling = min(retry.max_delay_s, retry.base_delay_s * 2 ** max(0, attempt - 1))
    return float(ceiling / 2 + rand() * ceiling / 2)


def jitter(jitter_s: float, rand: Random) -> float:
    """A uniform offset in [-jitter_s, +jitter_s)."""
    return (2 * rand() - 1) * jitter_s
