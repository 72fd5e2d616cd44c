"""One round: a fresh Redis, simulator, receiver and design; N jobs at once; the readings.

Everything started here is stopped here, whatever happens; every wait is bounded.

How each reading is taken:
- worker CPU: utime + stime of the worker processes and their children (/proc), from just
  before the jobs are handed over until the last job's first notification;
- worker RSS and Redis `used_memory`: sampled every 0.5 s; the idle baseline is read after the
  workers said ready and before any job; the peak is the highest sample;
- notifications: the receiver's arrival times per job; lag = first arrival minus the
  simulator's `completed_at` for the job's task (`/_sim/stats`, same machine clock);
- polls and submits: the simulator's own counters per task and per `out_task_id`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests

from bench import procfs
from bench.designs import API_KEY, Round, Timing, make_design, stop_all
from bench.measures import Observed, measure
from bench.webhook_sink import ArrivalReceiver
from bench.workload import make_history, make_jobs
from imageq.config import PollingSettings
from imageq.devenv.redis_server import RedisServer
from imageq.simulator.server import start_simulator_process, stop_simulator_process

SAMPLE_EVERY_S = 0.5
# The simulator's stats list every task; read them less often than RSS, to spare it.
POLL_RATE_EVERY_S = 2.0
IDLE_SAMPLES = 4
# After the last job's first notification, this many intervals to catch a duplicate (a
# forked poll chain would notify within one).
DUPLICATE_GRACE_INTERVALS = 1.0
# How long to wait for the last notification beyond the deadline.
WAIT_MARGIN_S = 60.0


@dataclass(frozen=True)
class RoundPlan:
    """One design at one N, one repetition."""

    design: str
    n: int
    rep: int
    seed: int
    latency: str
    scale: float
    timing: Timing
    request_delay: str
    processes: int
    concurrency: int
    loglevel: str
    log_dir: Path
    polling_mode: str = "countdown"
    pool: str = "threads"
    # Start imageq's adaptive first poll with a window of earlier completion times per cell.
    warm: bool = True


def run_round(plan: RoundPlan) -> dict[str, Any]:
    """Run the round and return its metrics (see `bench.measures.measure`) with its identity."""
    jobs = make_jobs(plan.n, seed=plan.seed, latency=plan.latency, scale=plan.scale)
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer())
        simulator, api_url = start_simulator_process(
            ["--api-key", API_KEY, "--latency", "realistic",
             "--request-delay", plan.request_delay, "--seed", str(plan.seed)]
        )  # fmt: skip
        stack.callback(stop_simulator_process, simulator)
        receiver = stack.enter_context(ArrivalReceiver())
        design = make_design(
            plan.design,
            concurrency=plan.concurrency,
            loglevel=plan.loglevel,
            polling_mode=plan.polling_mode,
            pool=plan.pool,
        )
        stack.callback(design.close)
        parts = Round(
            redis_url=server.url().rsplit("/", 1)[0],
            api_url=api_url,
            webhook_url=receiver.url,
            timing=plan.timing,
            processes=plan.processes,
            n=plan.n,
            history=_history(plan),
            log_dir=plan.log_dir / f"{plan.design}-n{plan.n}-r{plan.rep}",
        )
        workers = design.start(parts)
        stack.callback(stop_all, workers)

        def pids() -> list[int]:
            return [pid for worker in workers for pid in procfs.tree(worker.pid)]

        admin = redis.Redis.from_url(server.url())
        stack.callback(admin.close)
        sampler = Sampler(pids, admin, api_url)
        idle_from, idle_cpu = time.monotonic(), procfs.cpu_seconds(pids())
        rss_idle, redis_idle = sampler.idle_baseline()
        idle_cpu_rate = (procfs.cpu_seconds(pids()) - idle_cpu) / (time.monotonic() - idle_from)
        stack.enter_context(sampler)

        cpu_before, machine_before = procfs.cpu_seconds(pids()), procfs.MachineTicks.now()
        started = time.monotonic()
        design.submit(jobs)
        submit_s = time.monotonic() - started
        limit_s = plan.timing.deadline_s + WAIT_MARGIN_S
        all_notified = wait_until(lambda: receiver.notified() >= plan.n, limit_s=limit_s)
        all_notified_s = time.monotonic() - started if all_notified else None
        cpu_s = procfs.cpu_seconds(pids()) - cpu_before
        machine_busy = procfs.MachineTicks.now().busy_fraction_since(machine_before)
        time.sleep(DUPLICATE_GRACE_INTERVALS * plan.timing.interval_s)
        sim_stats = requests.get(f"{api_url}/_sim/stats", timeout=30).json()
        arrivals = receiver.snapshot()
    observed = Observed(
        n=plan.n,
        job_ids=[job.job_id for job in jobs],
        arrivals=arrivals,
        sim_stats=sim_stats,
        cpu_s=cpu_s,
        idle_cpu_rate=idle_cpu_rate,
        rss_idle=rss_idle,
        rss_peak=max(sampler.rss_peak, rss_idle),
        redis_idle=redis_idle,
        redis_peak=max(sampler.redis_peak, redis_idle),
        submit_s=submit_s,
        all_notified_s=all_notified_s,
        peak_poll_rate=sampler.peak_poll_rate,
        machine_busy=machine_busy,
    )
    generation_s_mean = statistics.mean(job.latency_s for job in jobs)
    return {
        "design": plan.design,
        "n": plan.n,
        "rep": plan.rep,
        "generation_s_mean": generation_s_mean,
        **measure(observed),
    }


def _history(plan: RoundPlan) -> dict[tuple[str, str], list[float]]:
    if not plan.warm:
        return {}
    window = PollingSettings().adaptive_window
    return make_history(window, seed=plan.seed, latency=plan.latency, scale=plan.scale)


class Sampler:
    """Samples worker RSS and Redis memory every 0.5 s, and the rate of polls the simulator
    answers every 2 s, in a background thread while entered."""

    def __init__(self, pids: Callable[[], list[int]], admin: redis.Redis, api_url: str) -> None:
        self._pids = pids
        self._admin = admin
        self._stats_url = f"{api_url}/_sim/stats"
        self.rss_peak = 0
        self.redis_peak = 0
        self.peak_poll_rate = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def idle_baseline(self) -> tuple[int, int]:
        """Median worker RSS and Redis memory over a couple of seconds before any job."""
        rss, memory = [], []
        for _ in range(IDLE_SAMPLES):
            time.sleep(SAMPLE_EVERY_S)
            rss.append(procfs.rss_bytes(self._pids()))
            memory.append(self._redis_used())
        return int(statistics.median(rss)), int(statistics.median(memory))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        last_at, last_polls = time.monotonic(), self._polls()
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.rss_peak = max(self.rss_peak, procfs.rss_bytes(self._pids()))
            self.redis_peak = max(self.redis_peak, self._redis_used())
            now = time.monotonic()
            if now - last_at >= POLL_RATE_EVERY_S:
                polls = self._polls()
                if polls is not None and last_polls is not None:
                    rate = (polls - last_polls) / (now - last_at)
                    self.peak_poll_rate = max(self.peak_poll_rate, rate)
                last_at, last_polls = now, polls

    def _redis_used(self) -> int:
        try:
            return int(self._admin.info("memory")["used_memory"])
        except redis.RedisError:
            return 0

    def _polls(self) -> int | None:
        """Queries answered so far (all tasks), or None if the simulator did not say."""
        try:
            stats = requests.get(self._stats_url, timeout=10).json()
            return sum(int(count) for count in stats["queries_by_task_id"].values())
        except (requests.RequestException, ValueError, KeyError):
            return None


def wait_until(condition: Callable[[], bool], *, limit_s: float) -> bool:
    give_up = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.1)
    return True
