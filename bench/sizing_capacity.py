"""The check of the sizing model: the capacity (jobs/s) of this machine running 2 worker
processes x 32 threads, Redis, the simulator and the producer, measured by an offered load that
steps up until imageq no longer keeps up.

Each step offers jobs at a fixed rate (realistic completion times x the time scale, the adaptive
first poll warm) for `step_s` seconds, straight after the one before. A step is kept up with
when every job offered in it was notified, and p99 of its queue wait (the simulator's accept time
minus the enqueue time) and p99 of its notification lag are both within the bound: one poll at
most one interval late (2 x interval + jitter). The steps stop after the first one during which
the backlog of jobs not yet submitted grew past a bound's worth of offered jobs; then the last
jobs are given until the deadline to end.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any, Final

import requests

from bench.designs import Timing
from bench.round import wait_until
from bench.sizing_parts import Parts, Reading, Shape, idle_cores, load_average
from bench.workload import JobSpec, make_history, make_jobs
from imageq.config import PollingSettings
from imageq.worker.policy.adaptive import percentile

IDLE_PROBE_S: Final = 5.0
DRAIN_MARGIN_S: Final = 30.0


def run_capacity(
    shape: Shape,
    timing: Timing,
    *,
    scale: float,
    rates: Sequence[float],
    step_s: float,
    seed: int,
) -> dict[str, Any]:
    """Offer each rate in turn (stopping after the first overload); per step, what it got."""
    history = make_history(
        PollingSettings().adaptive_window, seed=seed, latency="realistic", scale=scale
    )
    bound_s = 2 * timing.interval_s + timing.jitter_s
    steps: list[dict[str, Any]] = []
    enqueued: dict[str, float] = {}
    step_of: dict[str, int] = {}
    with Parts(shape, timing) as parts:
        parts.seed_history(history)
        free_cores = idle_cores(IDLE_PROBE_S)
        load_before = load_average()
        for index, rate in enumerate(rates):
            jobs = _step_jobs(index, rate, step_s, seed=seed, scale=scale)
            before, began = parts.read(), time.time()
            _feed(parts, jobs, rate, enqueued)
            after, ended = parts.read(), time.time()
            step_of.update((job.job_id, index) for job in jobs)
            submitted = len(_stats(parts)["tasks"])
            backlog = len(enqueued) - submitted
            steps.append(_step_reading(index, rate, jobs, before, after, backlog))
            steps[-1]["window"] = [began, ended]
            if backlog > rate * bound_s:
                break
        limit_s = timing.deadline_s + DRAIN_MARGIN_S
        wait_until(lambda: parts.receiver.notified() >= len(enqueued), limit_s=limit_s)
        stats = _stats(parts)
        arrivals = parts.receiver.snapshot()
    accepted = {task["out_task_id"]: task["created_at"] for task in stats["tasks"].values()}
    completed = {task["out_task_id"]: task["completed_at"] for task in stats["tasks"].values()}
    for step in steps:
        mine = [job for job, index in step_of.items() if index == step["step"]]
        waits = [accepted[job] - enqueued[job] for job in mine if job in accepted]
        lags = [
            min(arrivals.times[job]) - completed[job]
            for job in mine
            if job in arrivals.times and completed.get(job) is not None
        ]
        step["queue_wait_p99_s"] = percentile(waits, 99) if waits else math.nan
        step["lag_p99_s"] = percentile(lags, 99) if lags else math.nan
        step["notified"] = sum(job in arrivals.times for job in mine)
        began, ended = step.pop("window")
        firsts = (min(times) for times in arrivals.times.values())
        step["completed_jobs_s"] = sum(began <= at < ended for at in firsts) / (ended - began)
        step["kept_up"] = (
            step["notified"] == len(mine)
            and step["queue_wait_p99_s"] <= bound_s
            and step["lag_p99_s"] <= bound_s
        )
    kept = [step["offered_jobs_s"] for step in steps if step["kept_up"]]
    return {
        "shape": dataclasses.asdict(shape),
        "step_s": step_s,
        "bound_s": bound_s,
        "idle_cores_before": free_cores,
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
        "steps": steps,
        "measured_jobs_s": max(kept, default=0.0),
        "first_not_kept_jobs_s": next(
            (step["offered_jobs_s"] for step in steps if not step["kept_up"]), None
        ),
    }


def judge(check: dict[str, Any], timing: Timing) -> dict[str, Any]:
    """The check's verdicts, from its steps' readings, by two bounds on the p99 of the queue
    wait and of the lag: the project's lag bound (interval + jitter + a quarter interval, as
    the main benchmark's), which the comparison uses, and the loose one the steps stopped by
    (one poll one interval late). Pure; re-run on committed results by `--render`."""
    strict_s = timing.lag_target_s
    loose_s = 2 * timing.interval_s + timing.jitter_s
    steps = []
    for step in check["steps"]:
        complete = step["notified"] == step["jobs"]
        worst = max(step["queue_wait_p99_s"], step["lag_p99_s"])
        steps.append(
            {
                **step,
                "kept_up": complete and worst <= strict_s,
                "kept_up_loose": complete and worst <= loose_s,
            }
        )
    predicted = check["prediction"]["jobs_s"]

    def highest(key: str) -> float:
        return max((step["offered_jobs_s"] for step in steps if step[key]), default=0.0)

    measured, loose = highest("kept_up"), highest("kept_up_loose")
    return {
        **check,
        "steps": steps,
        "lag_bound_s": strict_s,
        "bound_s": loose_s,
        "measured_jobs_s": measured,
        "measured_loose_jobs_s": loose,
        "first_not_kept_jobs_s": next(
            (step["offered_jobs_s"] for step in steps if not step["kept_up"]), None
        ),
        "measured_over_predicted": measured / predicted if predicted else None,
        "loose_over_predicted": loose / predicted if predicted else None,
    }


def _step_jobs(index: int, rate: float, step_s: float, *, seed: int, scale: float) -> list[JobSpec]:
    count = max(1, round(rate * step_s))
    jobs = make_jobs(count, seed=seed * 1000 + index, latency="realistic", scale=scale)
    return [dataclasses.replace(job, job_id=f"cap{index}-{i:05d}") for i, job in enumerate(jobs)]


def _feed(parts: Parts, jobs: Sequence[JobSpec], rate: float, enqueued: dict[str, float]) -> None:
    """Enqueue each job at its time (start + i / rate); late ones go at once."""
    start = time.monotonic()
    for i, job in enumerate(jobs):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        enqueued[job.job_id] = time.time()
        parts.enqueue(job)


def _step_reading(
    index: int, rate: float, jobs: Sequence[JobSpec], before: Reading, after: Reading, backlog: int
) -> dict[str, Any]:
    elapsed = after.at - before.at
    cpu = {
        "worker": after.worker_cpu_s - before.worker_cpu_s,
        "redis": after.broker.cpu_s - before.broker.cpu_s + after.store.cpu_s - before.store.cpu_s,
        "simulator": after.simulator_cpu_s - before.simulator_cpu_s,
        "bench": after.bench_cpu_s - before.bench_cpu_s,
    }
    return {
        "step": index,
        "offered_jobs_s": rate,
        "jobs": len(jobs),
        "fed_jobs_s": len(jobs) / elapsed if elapsed > 0 else math.nan,
        "backlog_after": backlog,
        "cores_used": {part: seconds / elapsed for part, seconds in cpu.items()},
        "loadavg": load_average(),
    }


def _stats(parts: Parts) -> dict[str, Any]:
    document: dict[str, Any] = requests.get(f"{parts.api_url}/_sim/stats", timeout=60).json()
    return document
