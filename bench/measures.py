"""What a round measured, computed from what it observed; and medians and ratios over rounds.
Pure: no I/O, no clock."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.webhook_sink import Arrivals
from imageq.worker.policy.adaptive import percentile

KB: Final = 1024
MB: Final = 1024 * 1024


@dataclass(frozen=True)
class Observed:
    """The raw readings of one round, gathered by `bench.round`."""

    n: int
    job_ids: Sequence[str]
    arrivals: Arrivals
    sim_stats: Mapping[str, Any]
    cpu_s: float
    idle_cpu_rate: float
    rss_idle: int
    rss_peak: int
    redis_idle: int
    redis_peak: int
    submit_s: float
    all_notified_s: float | None
    peak_poll_rate: float
    machine_busy: float


def measure(seen: Observed) -> dict[str, float]:
    """The round's metrics; per-job ones divide by N, the jobs put in flight."""
    tasks = seen.sim_stats["tasks"].values()
    completed_at = {task["out_task_id"]: task["completed_at"] for task in tasks}
    created_at = {task["out_task_id"]: task["created_at"] for task in tasks}
    task_of = {task["out_task_id"]: task_id for task_id, task in seen.sim_stats["tasks"].items()}
    queries = seen.sim_stats["queries_by_task_id"]
    accepted = seen.sim_stats["accepted_submits_by_out_task_id"]
    lags, polls, submits, notifications, succeeded = [], [], [], [], 0
    spans: list[tuple[float, float]] = []
    for job_id in seen.job_ids:
        times = seen.arrivals.times.get(job_id, [])
        notifications.append(len(times))
        finished = completed_at.get(job_id)
        if times and finished is not None:
            lags.append(min(times) - finished)
        created = created_at.get(job_id)
        if times and created is not None:
            spans.append((created, min(times)))
        polls.append(queries.get(task_of.get(job_id, ""), 0))
        submits.append(accepted.get(job_id, 0))
        body = seen.arrivals.first_body.get(job_id)
        succeeded += body is not None and _status(body) == "succeeded"
    n = seen.n
    return {
        "completed": succeeded,
        "notified_once": sum(count == 1 for count in notifications),
        "notifications_max": max(notifications, default=0),
        "lag_p50_s": percentile(lags, 50) if lags else math.nan,
        "lag_p99_s": percentile(lags, 99) if lags else math.nan,
        "lag_max_s": max(lags, default=math.nan),
        "polls_per_job": sum(polls) / n,
        "polls_max": max(polls, default=0),
        "submits_per_job": sum(submits) / n,
        "submits_max": max(submits, default=0),
        "cpu_s_per_job": seen.cpu_s / n,
        "idle_cpu_ms_per_s": 1000 * seen.idle_cpu_rate,
        "rss_idle_mb": seen.rss_idle / MB,
        "rss_peak_mb": seen.rss_peak / MB,
        "rss_growth_kb_per_job": (seen.rss_peak - seen.rss_idle) / KB / n,
        "redis_kb_per_job": (seen.redis_peak - seen.redis_idle) / KB / n,
        "submit_s": seen.submit_s,
        "all_notified_s": math.nan if seen.all_notified_s is None else seen.all_notified_s,
        "peak_poll_rate": seen.peak_poll_rate,
        "peak_in_flight": most_at_once(spans),
        "machine_busy_pct": 100 * seen.machine_busy,
    }


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    """The most spans (start, end) open at one instant; one ending as another starts is not
    counted with it. Here: jobs between the API accepting them and their notification."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = open_now = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def _status(body: bytes) -> str | None:
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


def median_of(rounds: Sequence[Mapping[str, float]], key: str) -> float:
    """The median of one metric over rounds, NaNs left out (NaN if nothing is left)."""
    values = [value for value in (r.get(key, math.nan) for r in rounds) if not math.isnan(value)]
    return statistics.median(values) if values else math.nan


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when undefined."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


@dataclass(frozen=True)
class Spread:
    """A figure over repetitions: its median, its lowest and highest value, and how many
    values it stands on (NaNs left out)."""

    median: float
    low: float
    high: float
    count: int

    def text(self, form: str = "{:.2f}", *, one: str | None = "one pair, no spread") -> str:
        """`1.26 (1.20-1.31)`; a single value says so (`one`; None: the bare value); none
        is `-`."""
        if self.count == 0:
            return "-"
        if self.count == 1:
            return (
                form.format(self.median) if one is None else f"{form.format(self.median)} ({one})"
            )
        return f"{form.format(self.median)} ({form.format(self.low)}-{form.format(self.high)})"


NO_SPREAD: Final = Spread(math.nan, math.nan, math.nan, 0)


def spread_of(values: Sequence[float]) -> Spread:
    """Median, min and max of the values that are not NaN."""
    kept = [value for value in values if not math.isnan(value)]
    if not kept:
        return NO_SPREAD
    return Spread(statistics.median(kept), min(kept), max(kept), len(kept))


def ratio_spread(
    pairs: Sequence[tuple[Mapping[str, float], Mapping[str, float]]], key: str
) -> Spread:
    """The per-pair ratios imageq/naive of one metric, each taken within one pair of rounds
    on the same jobs: their median and range."""
    return spread_of([ratio(a.get(key, math.nan), b.get(key, math.nan)) for a, b in pairs])
