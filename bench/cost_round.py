"""The stage of a CPU-cost round, shared by the benchmarks that compare variants of one worker
setting (`budget_cost`, `events_cost`): a fresh Redis, the simulator (realistic completion
times, answers after 50 ms), a webhook receiver, and the settings of two imageq worker
processes with 32 threads each; then the hand-over of the same jobs, measured.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import requests

from bench import procfs
from bench.designs import Round, Timing, imageq_values
from bench.round import wait_until
from bench.webhook_sink import ArrivalReceiver
from bench.workload import JobSpec
from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.producers.api import ImageQueue
from imageq.simulator.server import start_simulator_process, stop_simulator_process


@dataclass
class Stage:
    """What a round runs against. `values` are the workers' settings, for the variant to
    change before it starts them; `stack` stops whatever the round adds to it."""

    stack: ExitStack
    scratch: Path
    api_url: str
    receiver: ArrivalReceiver
    parts: Round
    values: dict[str, Any]


@dataclass(frozen=True)
class HandOver:
    """The jobs handed over at once: whether all were notified, the workers' CPU and the
    time from the hand-over to the last webhook, and the simulator's counters."""

    all_notified: bool
    cpu_s: float
    elapsed_s: float
    stats: dict[str, Any]


@contextmanager
def stage(prefix: str, *, api_key: str, n: int, timing: Timing) -> Iterator[Stage]:
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(TemporaryDirectory(prefix=prefix)))
        server = stack.enter_context(RedisServer())
        simulator, api_url = start_simulator_process(
            ["--api-key", api_key, "--latency", "realistic", "--request-delay", "fixed:0.05"]
        )
        stack.callback(stop_simulator_process, simulator)
        receiver = stack.enter_context(ArrivalReceiver())
        parts = Round(
            redis_url=server.url().rsplit("/", 1)[0],
            api_url=api_url,
            webhook_url=receiver.url,
            timing=timing,
            processes=2,
            n=n,
            log_dir=scratch,
        )
        values = imageq_values(parts, concurrency=32)
        values["api"]["key"] = api_key
        yield Stage(stack, scratch, api_url, receiver, parts, values)


def hand_over(at: Stage, jobs: Sequence[JobSpec], pids: Callable[[], list[int]]) -> HandOver:
    """Enqueue every job at once and wait for the last webhook (or the deadline), measuring
    the CPU of the processes `pids` names over that time."""
    queue = ImageQueue(Settings(_env_file=None, **copy.deepcopy(at.values)))
    cpu_before = procfs.cpu_seconds(pids())
    handed_over = time.monotonic()
    for job in jobs:
        queue.enqueue(
            job.prompt,
            aspect_ratio=job.aspect_ratio,
            resolution=job.resolution,
            quality=job.quality,
            job_id=job.job_id,
            webhook_url=at.receiver.url,
        )
    done = wait_until(
        lambda: at.receiver.notified() >= len(jobs), limit_s=at.parts.timing.deadline_s + 60
    )
    cpu_s = procfs.cpu_seconds(pids()) - cpu_before
    elapsed_s = time.monotonic() - handed_over
    stats = requests.get(f"{at.api_url}/_sim/stats", timeout=30).json()
    return HandOver(done, cpu_s, elapsed_s, stats)
