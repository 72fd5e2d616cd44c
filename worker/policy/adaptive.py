"""Adaptive schedule: poll when jobs like this one are likely to be done.

Recent generation times are kept per quality and resolution (a short list in Redis). The first
poll goes at a low percentile of them, so most jobs are done after one or two polls instead of
five, yet hardly any is polled late: never earlier than `adaptive_floor_s` (10 s, the API's own
advice, unless the user set a lower first delay), never later than `adaptive_max_s`.

Each later poll stays in the documented window, `interval_s` +/- `jitter_s`, placed by the
same samples: with p the share of the samples still running at the elapsed time that finish
within the next `interval_s` (the chance this job does), the gap is `interval_s *
sqrt(adaptive_chance / p)`, clamped to the window. That is the square-root rule for inspection
intervals: minimising polls per second plus a price on expected lag gives a gap inversely
proportional to the square root of the hazard. So polls come sooner where completions are
likely and at the window's far end where they are not (or where no sample is left). The gap
follows each job's own age, so jobs submitted together keep the spread their first poll's
jitter gave them.

With too few samples, or `adaptive` off, the documented schedule holds. Pure: samples are
passed in.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

from imageq.config import PollingSettings


def first_poll_base_s(samples: Sequence[float], timing: PollingSettings) -> float:
    """The first poll's delay before jitter: from the samples when there are enough of them."""
    if not timing.adaptive or len(samples) < timing.adaptive_min_samples:
        return timing.first_delay_s
    estimate = percentile(samples, timing.adaptive_percentile)
    return min(max(estimate, timing.adaptive_floor_s), timing.adaptive_max_s)


def next_poll_gap_s(
    ordered: Sequence[float], elapsed_s: float, timing: PollingSettings
) -> float | None:
    """The gap to the next poll of a job `elapsed_s` after its submit, placed by `ordered`
    (recent generation times of its kind, ascending); None when the samples do not decide it
    (too few, or `adaptive` off) and the documented random jitter applies."""
    if not timing.adaptive or len(ordered) < timing.adaptive_min_samples:
        return None
    shortest = timing.interval_s - timing.jitter_s
    longest = timing.interval_s + timing.jitter_s
    done = bisect_right(ordered, elapsed_s)
    running = len(ordered) - done
    finishing = bisect_right(ordered, elapsed_s + timing.interval_s) - done
    if finishing <= 0:
        return longest
    gap = timing.interval_s * math.sqrt(timing.adaptive_chance * running / finishing)
    return min(max(gap, shortest), longest)


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile by the nearest-rank method (no interpolation): the smallest
    sample with at least `pct` % of them at or below it. `ValueError` for no samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
