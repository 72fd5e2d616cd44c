"""The two designs under test: how to start each one's workers and hand it the round's jobs.

imageq runs as `celery -A imageq.worker.app worker` (devenv's WorkerProcess) with settings passed as
`IMAGEQ_*` variables; the naive design as `celery -A bench.naive worker -P gevent`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from celery import Celery

from bench import naive
from bench.workload import JobSpec
from imageq.config import PollingSettings, Settings
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.worker.runtime import connect_store

API_KEY: Final = "sk-bench-0123456789abcdef"
# A made-up key and secret, for the simulator and receiver of a local benchmark only.
WEBHOOK_SECRET: Final = "whsec_YmVuY2htYXJrLXdlYmhvb2stc2VjcmV0LTEyMzQ="  # noqa: S105
_REPO: Final = Path(__file__).resolve().parent.parent


# The 1 s to notify, as a share of production's 4 s interval.
NOTIFY_SLACK_PER_INTERVAL: Final = 0.25


@dataclass(frozen=True)
class Timing:
    """The polling schedule both designs follow, in seconds."""

    first_delay_s: float
    interval_s: float
    jitter_s: float
    deadline_s: float

    @property
    def lag_target_s(self) -> float:
        """The issue's bound on notification lag p99, "poll interval + 1 s": the longest gap
        between two polls (interval + jitter), then 1 s to notify. The second scales with the
        schedule too, which makes the bound stricter than production's when times are scaled."""
        return self.interval_s + self.jitter_s + self.interval_s * NOTIFY_SLACK_PER_INTERVAL


# The documented schedule: first poll after 15 s, then every 4 s, +/- 1 s; give up after 180 s.
PRODUCTION: Final = Timing(first_delay_s=15.0, interval_s=4.0, jitter_s=1.0, deadline_s=180.0)


@dataclass(frozen=True)
class Round:
    """Where one round's parts live, and how its workers are shaped."""

    redis_url: str
    api_url: str
    webhook_url: str
    timing: Timing
    processes: int
    n: int
    log_dir: Path
    # Earlier completion times per (quality, resolution), to start adaptive timing warm.
    history: Mapping[tuple[str, str], Sequence[float]] = field(default_factory=dict)


class Design(Protocol):
    """A design under test: started on a round's Redis and simulator, then given jobs."""

    name: str

    def start(self, parts: Round) -> list[WorkerProcess]:
        """Start the design's worker processes and return once all are ready."""

    def submit(self, jobs: Sequence[JobSpec]) -> None:
        """Hand every job to the design, all at once."""

    def close(self) -> None:
        """Release the producer's connections."""


class CleanEnvWorker(WorkerProcess):
    """A worker that inherits no `IMAGEQ_*` or `NAIVE_*` variable from the benchmark's shell,
    so a developer's own settings cannot leak into the measurement."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        name: str,
        loglevel: str,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(env, log_path, name=name, extra_args=extra_args)
        self._loglevel = loglevel
        self._env = {
            key: value
            for key, value in self._env.items()
            if key in env or not key.startswith(("IMAGEQ_", "NAIVE_"))
        }

    def command(self) -> list[str]:
        level = f"--loglevel={self._loglevel}"
        return [level if arg.startswith("--loglevel=") else arg for arg in super().command()]


class _NaiveWorker(CleanEnvWorker):
    def __init__(
        self, env: dict[str, str], log_path: Path, *, name: str, loglevel: str, concurrency: int
    ) -> None:
        super().__init__(env, log_path, name=name, loglevel=loglevel)
        self._concurrency = concurrency
        # Not imageq's malloc tunables: the naive design runs as its shell starts it.
        if "GLIBC_TUNABLES" not in os.environ:
            self._env.pop("GLIBC_TUNABLES", None)

    def command(self) -> list[str]:
        imageq = super().command()
        return [
            *imageq[:3], "-A", "bench.naive", *imageq[5:],
            "-P", "gevent", "-c", str(self._concurrency), "-Q", naive.QUEUE,
        ]  # fmt: skip


def start_all(workers: Sequence[WorkerProcess]) -> list[WorkerProcess]:
    """Start the processes side by side (each start waits for its worker to say ready)."""
    with ThreadPoolExecutor(len(workers)) as pool:
        futures = [pool.submit(worker.start) for worker in workers]
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        stop_all(workers)
        raise RuntimeError(f"a worker did not start: {errors[0]}")
    return list(workers)


def stop_all(workers: Sequence[WorkerProcess]) -> None:
    """Warm shutdown of every process at once (each waits for its own)."""
    with ThreadPoolExecutor(max(1, len(workers))) as pool:
        list(pool.map(lambda worker: worker.stop(), workers))


def imageq_values(parts: Round, *, concurrency: int, pool: str = "threads") -> dict[str, Any]:
    """imageq's settings for a round: the production schedule (scaled), threads, metrics off
    (two workers on one host would contend for its port)."""
    return {
        "api": {"base_url": parts.api_url, "key": API_KEY},
        "redis": {"broker_url": f"{parts.redis_url}/0", "store_url": f"{parts.redis_url}/1"},
        "polling": polling_values(parts.timing),
        "webhook": {"secrets": WEBHOOK_SECRET, "allow_loopback": True},
        "storage": {"enabled": False},
        "limits": {"max_in_flight": 0},
        "observability": {"metrics_port": 0},
        "worker": {"pool": pool, "concurrency": concurrency},
    }


def polling_values(timing: Timing) -> dict[str, Any]:
    """The polling group: every duration of it at its default, shrunk as the round's interval
    is from the production one (so any schedule knob imageq has or gains shrinks with the
    rest); then the round's own timing."""
    scale = timing.interval_s / PRODUCTION.interval_s
    scaled = {
        name: value * scale
        for name, value in PollingSettings().model_dump().items()
        if name.endswith("_s") and isinstance(value, float | int) and not isinstance(value, bool)
    }
    return {**scaled, **vars(timing)}


class Imageq:
    """imageq: two (or more) worker processes on the threads pool."""

    name = "imageq"

    def __init__(
        self, *, concurrency: int, loglevel: str, polling_mode: str, pool: str = "threads"
    ) -> None:
        self._concurrency = concurrency
        self._pool = pool
        self._loglevel = loglevel
        self._polling_mode = polling_mode
        self._queue: ImageQueue | None = None
        self._webhook_url = ""

    def start(self, parts: Round) -> list[WorkerProcess]:
        values = imageq_values(parts, concurrency=self._concurrency, pool=self._pool)
        values["polling"]["mode"] = self._polling_mode
        settings = Settings(_env_file=None, **copy.deepcopy(values))
        store = connect_store(settings)
        for (quality, resolution), times in parts.history.items():
            for seconds in times:
                store.add_generation_sample(
                    quality, resolution, seconds, window=settings.polling.adaptive_window
                )
        self._queue = ImageQueue(settings, store=store)
        self._webhook_url = parts.webhook_url
        env = settings_env(values)
        return start_all(
            [
                CleanEnvWorker(
                    env,
                    parts.log_dir / f"imageq-{index}.log",
                    name=f"imageq{index}",
                    loglevel=self._loglevel,
                    extra_args=("-P", self._pool),  # on the command line: gevent patches
                )
                for index in range(parts.processes)
            ]
        )

    def submit(self, jobs: Sequence[JobSpec]) -> None:
        assert self._queue is not None, "start() first"
        for job in jobs:
            self._queue.enqueue(
                job.prompt,
                aspect_ratio=job.aspect_ratio,
                resolution=job.resolution,
                quality=job.quality,
                job_id=job.job_id,
                webhook_url=self._webhook_url,
            )

    def close(self) -> None:
        self._queue = None


class Naive:
    """The naive sleeping design (bench/naive.py): gevent workers, a greenlet per job."""

    name = "naive"

    def __init__(self, *, loglevel: str) -> None:
        self._loglevel = loglevel
        self._app: Celery | None = None
        self._webhook_url = ""

    def start(self, parts: Round) -> list[WorkerProcess]:
        # Each process can take every job, so an uneven split between them never queues one.
        concurrency = parts.n
        broker_url = f"{parts.redis_url}/2"
        config = naive.NaiveConfig(
            broker_url=broker_url,
            concurrency=concurrency,
            api_url=parts.api_url,
            api_key=API_KEY,
            webhook_secret=WEBHOOK_SECRET,
            **vars(parts.timing),
        )
        env = {**config.env(), "PYTHONPATH": _pythonpath()}
        self._app = naive.create_app(broker_url, concurrency=1)
        self._webhook_url = parts.webhook_url
        return start_all(
            [
                _NaiveWorker(
                    env,
                    parts.log_dir / f"naive-{index}.log",
                    name=f"naive{index}",
                    loglevel=self._loglevel,
                    concurrency=concurrency,
                )
                for index in range(parts.processes)
            ]
        )

    def submit(self, jobs: Sequence[JobSpec]) -> None:
        assert self._app is not None, "start() first"
        with self._app.producer_or_acquire() as producer:
            for job in jobs:
                self._app.send_task(
                    naive.RUN_TASK,
                    args=[job.job_id, job.params(), self._webhook_url],
                    queue=naive.QUEUE,
                    producer=producer,
                )

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


def _pythonpath() -> str:
    """The repository first, so `-A bench.naive` imports (bench is not an installed package)."""
    return os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))


DESIGNS: Final = ("imageq", "naive")


def make_design(
    name: str,
    *,
    concurrency: int,
    loglevel: str,
    polling_mode: str = "countdown",
    pool: str = "threads",
) -> Design:
    """A fresh design object by name; `concurrency` is imageq's threads per process."""
    if name == "imageq":
        return Imageq(
            concurrency=concurrency, loglevel=loglevel, polling_mode=polling_mode, pool=pool
        )
    if name == "naive":
        return Naive(loglevel=loglevel)
    raise ValueError(f"unknown design {name!r}: expected one of {', '.join(DESIGNS)}")
