"""Adaptive first poll: poll first when jobs like this one usually start to be done.

Recent generation times are kept per quality and resolution (a short list in Redis); the first
poll goes at a low percentile of them, so most jobs are done after one or two polls instead of
five, yet hardly any is polled late. Never earlier than `adaptive_min_s` (10 s, the API's own
advice), never later than `adaptive_max_s`; with too few samples the documented schedule holds.
Pure: the samples are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from imageq.config import PollingSettings


def first_poll_base_s(samples: Sequence[float], timing: PollingSettings) -> float:
    """The first poll's delay before jitter: from the samples when there are enough of them."""
    if not timing.adaptive or len(samples) < timing.adaptive_min_samples:
        return timing.first_delay_s
    estimate = percentile(samples, timing.adaptive_percentile)
    return min(max(estimate, timing.adaptive_min_s), timing.adaptive_max_s)


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile by the nearest-rank method (no interpolation): the smallest
    sample with at least `pct` % of them at or below it. `ValueError` for no samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
