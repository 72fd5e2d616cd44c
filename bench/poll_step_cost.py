"""What a poll that goes on costs in the worker, before the Celery publish: the poll step as it
was (a token check, HMGET, before the API call, and the general write, lua/write.lua) against
the step as it is for a first delivery on time (no read, the write's own script,
lua/poll_on.lua), in one thread, interleaved.

    python -m bench.poll_step_cost [--polls 1000] [--reps 5]   # bench/results/poll_step/

Both run the same `imageq.worker.steps.poll.poll` against the simulator in a process of its
own (answering at once; its tasks never finish, so every poll goes on) and a Redis of their
own; the "before" store sends the poll-on write through `JobStore.apply`, as the step did. CPU
is this thread's (`time.thread_time`), the API GET with imageq's client included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.producers.jobs import build_job
from imageq.simulator.server import SimulatorProcess
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.transitions import Transition
from imageq.worker.messages import SchedulePoll
from imageq.worker.runtime import Runtime, build_runtime
from imageq.worker.steps.poll import poll
from imageq.worker.steps.submit import submit
from imageq.worker.store.job_store import JobStore

API_KEY: Final = "sk-bench-pollstep-0123456789"
WAYS: Final = ("before: check + write.lua", "now: poll_on.lua only")


class GeneralWriteStore(JobStore):
    """The store as the poll step used it before: the poll-on write through `apply`."""

    def hand_on_poll(self, moving: Transition) -> bool:
        return bool(self.apply(moving))


def _chain(rt: Runtime, *, check_token: bool) -> Callable[[], None]:
    """One job's poll chain: each call runs the next poll of it."""
    job = build_job(rt.settings, "a lighthouse", aspect_ratio="1:1", resolution="1K", now=0)
    job = replace(job, created_at=time.time())
    assert rt.store.create(job, due_at=time.time())
    (first,) = submit(rt, job.job_id)
    assert isinstance(first, SchedulePoll)
    current = [first]

    def one() -> None:
        last = current[0]
        (following,) = poll(rt, job.job_id, last.token, last.facts, check_token=check_token)
        assert isinstance(following, SchedulePoll)
        current[0] = following

    return one


def measure(polls: int, reps: int) -> dict[str, Any]:
    loadavg = [os.getloadavg()[0]]
    runs: list[dict[str, float]] = []
    config = SimConfig(api_key=API_KEY, latency="fixed:100000")
    with RedisServer() as server, SimulatorProcess(config) as simulator:
        settings = Settings(
            _env_file=None,
            api={"key": API_KEY, "base_url": simulator.base_url},
            redis={"broker_url": server.url(0), "store_url": server.url(1)},
            storage={"enabled": False},
            limits={"max_in_flight": 0},
            observability={"metrics_port": 0},
            polling={"deadline_s": 100000},
        )
        before = build_runtime(settings)
        before = replace(before, store=GeneralWriteStore(before.store._redis, prefix="before",
                                                          ttl_s=3600))  # fmt: skip
        now = build_runtime(settings)
        chains = {
            WAYS[0]: _chain(before, check_token=True),
            WAYS[1]: _chain(now, check_token=False),
        }
        for chain in chains.values():  # warm up: connections made, scripts loaded
            for _ in range(50):
                chain()
        for rep in range(reps):
            order = WAYS if rep % 2 == 0 else WAYS[::-1]
            run = {}
            for way in order:
                started = time.thread_time()
                for _ in range(polls):
                    chains[way]()
                run[way] = (time.thread_time() - started) / polls * 1e6
            runs.append(run)
            loadavg.append(os.getloadavg()[0])
    ratios = [run[WAYS[1]] / run[WAYS[0]] for run in runs]
    return {
        "polls": polls,
        "reps": reps,
        "loadavg": [round(value, 2) for value in loadavg],
        "runs": runs,
        "before_us": statistics.median(run[WAYS[0]] for run in runs),
        "now_us": statistics.median(run[WAYS[1]] for run in runs),
        "ratio": [statistics.median(ratios), min(ratios), max(ratios)],
    }


def render(results: dict[str, Any]) -> str:
    ratio = results["ratio"]
    return "\n".join(
        [
            "# The poll step of a poll that goes on: before and now",
            "",
            f"`python -m bench.poll_step_cost --polls {results['polls']} --reps"
            f" {results['reps']}`: one thread, the simulator answering at once in its own"
            " process, a Redis of its own, the two ways in alternating blocks. 1-minute load"
            f" average before and after each repetition: {results['loadavg']}.",
            "",
            "| the poll step, API GET included | CPU µs per poll, median |",
            "|---|---:|",
            f"| {WAYS[0]} | {results['before_us']:.0f} |",
            f"| {WAYS[1]} | {results['now_us']:.0f} |",
            "",
            f"Ratio now / before, per repetition: median {ratio[0]:.3f} ({ratio[1]:.3f} to"
            f" {ratio[2]:.3f}).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=1000, help="polls per block")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/poll_step"))
    args = parser.parse_args()
    results = measure(args.polls, args.reps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
