"""What jobs cost, in the API's credits: reading a reported amount, and estimating a file's
cost and time from recent jobs of the same quality and resolution. Pure: samples are passed in.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from imageq.worker.domain.batch import Batch

BUDGET_REASON: Final = "budget"
"""The `reason` of a job cancelled because its batch's credit budget was reached."""

BUDGET_CANCELLED: Final = {
    "type": "Cancelled",
    "message": "cancelled: the batch's credit budget is reached",
    "retryable": False,
    "reason": BUDGET_REASON,
}

Group = tuple[str, str]
"""(quality, resolution): jobs alike in cost and time."""


def parse_credits(value: object) -> float | None:
    """A reported `credits_used` as a number: an int, a float or a numeric string; None for
    anything else (absent, junk, negative, not finite): an unreadable amount is never an error."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0:
        return None
    return number


@dataclass(frozen=True)
class GroupEstimate:
    """The estimate for the rows of one quality and resolution."""

    quality: str
    resolution: str
    rows: int
    samples: int
    credits_median: float | None
    generation_s_median: float | None
    enough: bool


@dataclass(frozen=True)
class Estimate:
    """A file's expected cost and time: the sum over its rows of their group's medians."""

    groups: tuple[GroupEstimate, ...]
    credits: float | None
    job_seconds: float | None
    wall_s: float | None

    @property
    def enough(self) -> bool:
        return all(group.enough for group in self.groups)


def estimate_file(
    groups: Iterable[Group],
    *,
    credit_samples: Mapping[Group, Sequence[float]],
    time_samples: Mapping[Group, Sequence[float]],
    min_samples: int,
    concurrency: int,
) -> Estimate:
    """Each row costs its group's median credits and takes its median generation time; the
    wall time spreads the job time over `concurrency` jobs at once, and is never shorter than
    the slowest group's one job. A total is None when a group has no sample at all; a group
    with fewer than `min_samples` is marked not enough."""
    counts = Counter(groups)
    parts = []
    for (quality, resolution), rows in sorted(counts.items()):
        credits = credit_samples.get((quality, resolution), ())
        times = time_samples.get((quality, resolution), ())
        parts.append(
            GroupEstimate(
                quality=quality,
                resolution=resolution,
                rows=rows,
                samples=len(credits),
                credits_median=statistics.median(credits) if credits else None,
                generation_s_median=statistics.median(times) if times else None,
                enough=len(credits) >= min_samples and len(times) >= min_samples,
            )
        )
    credits_total = _sum((part.credits_median, part.rows) for part in parts)
    seconds_total = _sum((part.generation_s_median, part.rows) for part in parts)
    wall = None
    if seconds_total is not None:
        slowest = max((part.generation_s_median or 0.0 for part in parts), default=0.0)
        wall = max(seconds_total / max(1, concurrency), slowest)
    return Estimate(tuple(parts), credits_total, seconds_total, wall)


def _sum(pairs: Iterable[tuple[float | None, int]]) -> float | None:
    total = 0.0
    for value, rows in pairs:
        if value is None:
            return None
        total += value * rows
    return total


def batch_credits(batch: Batch) -> dict[str, Any]:
    """A batch's credits for its views (`status`, `batches`, the report): spent, budget, and
    whether the budget has stopped it."""
    return {
        "credits_used": round(batch.credits_used, 6),
        "max_credits": batch.max_credits,
        "budget_reached": batch.budget_reached,
    }


def credits_text(used: float | None, *, budget: float | None = None, reached: bool = False) -> str:
    """Credits for a person: `30`, `30 of 35`, `30 of 35, budget reached`; `-` for none."""
    if used is None:
        return "-"
    text = f"{used:g}" + (f" of {budget:g}" if budget is not None else "")
    return text + (", budget reached" if reached else "")
