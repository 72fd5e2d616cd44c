"""One cost round of the sizing benchmark: N jobs at once through fresh parts, and what each
part spent on them, per job.

Two workloads per polling mode:
- `realistic`: completion times from the simulator's realistic mix (x the time scale), the
  adaptive first poll started warm, as `bench.run` does: about five polls per job;
- `one-poll`: every job done before its first poll can come, so each job costs a submit, one
  poll and a webhook. The difference between the two splits each cost into a part per job and
  a part per poll (`bench.sizing_fit`).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Final

import requests

from bench.designs import Timing
from bench.round import wait_until
from bench.sizing_parts import Parts, Shape, load_average, sampling
from bench.workload import make_history, make_jobs
from imageq.config import PollingSettings
from imageq.worker.policy.adaptive import percentile

WORKLOADS: Final = ("realistic", "one-poll")
# Time for the finished jobs' in-flight entries to be cleaned before the retained memory is read.
SETTLE_INTERVALS: Final = 1.0
WAIT_MARGIN_S: Final = 60.0


@dataclass(frozen=True)
class CostPlan:
    """One round: a mode, a workload, N jobs, a repetition (its seed)."""

    mode: str
    workload: str
    n: int
    rep: int
    scale: float
    timing: Timing


def run_cost_round(plan: CostPlan) -> dict[str, Any]:
    """Run the round; every per-job figure divides by N."""
    polling = PollingSettings()
    if plan.workload == "realistic":
        jobs = make_jobs(plan.n, seed=plan.rep, latency="realistic", scale=plan.scale)
        history = make_history(
            polling.adaptive_window, seed=plan.rep, latency="realistic", scale=plan.scale
        )
    else:
        # Done before the earliest first poll the adaptive timing allows (its minimum).
        done_s = 0.5 * polling.adaptive_min_s * plan.scale
        jobs = make_jobs(plan.n, seed=plan.rep, latency=f"fixed:{done_s}", scale=1.0)
        history = {}
    load_before = load_average()
    with Parts(Shape(mode=plan.mode), plan.timing) as parts:
        parts.seed_history(history)
        idle = parts.read()
        with sampling(parts.read) as samples:
            before, http_before = parts.read(), parts.http_bytes()
            for job in jobs:
                parts.enqueue(job)
            limit_s = plan.timing.deadline_s + WAIT_MARGIN_S
            done = wait_until(lambda: parts.receiver.notified() >= plan.n, limit_s=limit_s)
            after, http_after = parts.read(), parts.http_bytes()
        stats = requests.get(f"{parts.api_url}/_sim/stats", timeout=30).json()
        time.sleep(SETTLE_INTERVALS * plan.timing.interval_s)
        settled = parts.read()
        arrivals = parts.receiver.snapshot()
    n = plan.n
    polls = sum(int(count) for count in stats["queries_by_task_id"].values())
    broker, store = after.broker.minus(before.broker), after.store.minus(before.store)
    return {
        "mode": plan.mode,
        "workload": plan.workload,
        "rep": plan.rep,
        "n": n,
        "all_notified": done,
        "notified_once": sum(len(times) == 1 for times in arrivals.times.values()),
        "elapsed_s": after.at - before.at,
        "polls_per_job": polls / n,
        "api_requests_per_job": int(stats["requests"]) / n,
        "worker_cpu_ms_per_job": 1000 * (after.worker_cpu_s - before.worker_cpu_s) / n,
        "simulator_cpu_ms_per_job": 1000 * (after.simulator_cpu_s - before.simulator_cpu_s) / n,
        "bench_cpu_ms_per_job": 1000 * (after.bench_cpu_s - before.bench_cpu_s) / n,
        "broker_cpu_ms_per_job": 1000 * broker.cpu_s / n,
        "store_cpu_ms_per_job": 1000 * store.cpu_s / n,
        "broker_messages_per_job": broker.publishes / n,
        "broker_commands_per_job": broker.commands / n,
        "store_commands_per_job": store.commands / n,
        "redis_net_bytes_per_job": (broker.net_bytes + store.net_bytes) / n,
        "http_bytes_per_job": (http_after - http_before) / n,
        "broker_peak_bytes_per_job": _growth(
            [s.broker.used_memory for s in samples], idle.broker.used_memory
        )
        / n,
        "store_peak_bytes_per_job": _growth(
            [s.store.used_memory for s in samples], idle.store.used_memory
        )
        / n,
        "store_retained_bytes_per_job": (settled.store.used_memory - idle.store.used_memory) / n,
        "worker_rss_kb_per_job": _growth([s.worker_rss for s in samples], idle.worker_rss)
        / 1024
        / n,
        "lag_p99_s": _lag_p99(stats, arrivals.times),
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
    }


def _growth(samples: list[int], idle: int) -> float:
    return float(max([*samples, idle]) - idle)


def _lag_p99(stats: dict[str, Any], times: dict[str, list[float]]) -> float:
    completed = {task["out_task_id"]: task["completed_at"] for task in stats["tasks"].values()}
    lags = [min(times[job]) - completed[job] for job in times if job in completed]
    return percentile(lags, 99) if lags else math.nan


def median(values: list[float]) -> float:
    """The median, NaN for none."""
    return statistics.median(values) if values else math.nan
