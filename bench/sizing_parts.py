"""The parts a sizing run measures, and how each is read: two Redis servers (the broker and the
job store apart, so each one's commands, memory and CPU are its own), the simulator, a webhook
receiver and imageq's worker processes.

Everything started here is stopped when the `Parts` context exits; every wait is bounded.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Final

import redis

from bench import procfs
from bench.designs import CleanEnvWorker, Round, Timing, imageq_values, start_all, stop_all
from bench.webhook_sink import ArrivalReceiver
from bench.workload import JobSpec
from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import start_simulator_process, stop_simulator_process
from imageq.worker.runtime import connect_store

API_KEY: Final = "sk-bench-sizing-0123456789"
SS: Final = shutil.which("ss") or "/usr/bin/ss"
_SS_BYTES: Final = re.compile(r"\bbytes_(?:sent|received):(\d+)")
WARM_UP_MARGIN_S: Final = 30.0
# kombu's Redis transport publishes every message with one LPUSH (RPUSH: none of imageq's).
PUBLISH_COMMANDS: Final = ("cmdstat_lpush", "cmdstat_rpush")


@dataclass(frozen=True)
class Shape:
    """The workers of a run: processes x threads, polling mode, and the simulator's answer delay."""

    processes: int = 2
    threads: int = 32
    mode: str = "countdown"
    request_delay_s: float = 0.05


@dataclass(frozen=True)
class RedisReading:
    """Cumulative counters of one Redis server, and its memory now."""

    commands: int
    publishes: int
    net_bytes: int
    used_memory: int
    cpu_s: float

    def minus(self, earlier: RedisReading) -> RedisReading:
        """Counters since `earlier`; memory stays the later reading."""
        return RedisReading(
            commands=self.commands - earlier.commands,
            publishes=self.publishes - earlier.publishes,
            net_bytes=self.net_bytes - earlier.net_bytes,
            used_memory=self.used_memory,
            cpu_s=self.cpu_s - earlier.cpu_s,
        )


@dataclass(frozen=True)
class Reading:
    """Cumulative readings of every part at one moment."""

    at: float
    worker_cpu_s: float
    worker_rss: int
    simulator_cpu_s: float
    bench_cpu_s: float
    broker: RedisReading
    store: RedisReading


class Parts:
    """`with Parts(shape, timing) as parts:` starts everything; `parts.read()` reads it all."""

    def __init__(self, shape: Shape, timing: Timing, *, log_dir: Path | None = None) -> None:
        self.shape = shape
        self.timing = timing
        self._log_dir = log_dir
        self._stack = ExitStack()
        self.receiver: ArrivalReceiver
        self.api_url = ""
        self.queue: ImageQueue
        self.workers: list[WorkerProcess] = []
        self._servers: dict[str, RedisServer] = {}
        self._clients: dict[str, redis.Redis] = {}
        self._simulator_pid = 0

    def __enter__(self) -> Parts:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        stack = self._stack
        log_dir = self._log_dir or Path(stack.enter_context(TemporaryDirectory(prefix="sizing-")))
        for role in ("broker", "store"):
            server = stack.enter_context(RedisServer())
            client = redis.Redis.from_url(server.url())
            stack.callback(client.close)
            self._servers[role], self._clients[role] = server, client
        delay = f"fixed:{self.shape.request_delay_s}"
        simulator, self.api_url = start_simulator_process(
            ["--api-key", API_KEY, "--latency", "realistic", "--request-delay", delay]
        )
        stack.callback(stop_simulator_process, simulator)
        self._simulator_pid = simulator.pid
        self.receiver = stack.enter_context(ArrivalReceiver())
        self.api_port = int(self.api_url.rsplit(":", 1)[1])
        self.receiver_port = int(self.receiver.url.split(":")[2].split("/")[0])
        parts = Round(
            redis_url=self._servers["broker"].url().rsplit("/", 1)[0],
            api_url=self.api_url,
            webhook_url=self.receiver.url,
            timing=self.timing,
            processes=self.shape.processes,
            n=0,
            log_dir=log_dir,
        )
        values = imageq_values(parts, concurrency=self.shape.threads)
        values["api"]["key"] = API_KEY
        values["redis"]["store_url"] = self._servers["store"].url(0)
        values["polling"]["mode"] = self.shape.mode
        self.settings = Settings(_env_file=None, **copy.deepcopy(values))
        self.queue = ImageQueue(self.settings)
        env = settings_env(values)
        workers = [
            CleanEnvWorker(env, log_dir / f"w{i}.log", name=f"sizing{i}", loglevel="WARNING")
            for i in range(self.shape.processes)
        ]
        self.workers = start_all(workers)
        stack.callback(stop_all, self.workers)
        self._warm_up()

    def _warm_up(self) -> None:
        """One job through everything before any reading, so one-time costs (the producer's
        and the workers' first connections and imports) are not counted as the jobs'."""
        job_id = self.queue.enqueue(
            "warm-up sim:latency=0.1", aspect_ratio="1:1", resolution="1K", job_id="warm-up"
        )
        self.queue.wait(job_id, timeout_s=self.timing.deadline_s + WARM_UP_MARGIN_S)

    def worker_pids(self) -> list[int]:
        return [pid for worker in self.workers for pid in procfs.tree(worker.pid)]

    def http_bytes(self) -> int:
        """Bytes so far on the open connections to the API and to the webhook receiver."""
        return tcp_bytes(self.api_port) + tcp_bytes(self.receiver_port)

    def read(self) -> Reading:
        """Every cumulative counter now (each Redis server read with one INFO)."""
        pids = self.worker_pids()
        return Reading(
            at=time.monotonic(),
            worker_cpu_s=procfs.cpu_seconds(pids),
            worker_rss=procfs.rss_bytes(pids),
            simulator_cpu_s=procfs.cpu_seconds([self._simulator_pid]),
            bench_cpu_s=time.process_time(),
            broker=self._read_redis("broker"),
            store=self._read_redis("store"),
        )

    def _read_redis(self, role: str) -> RedisReading:
        info = self._clients[role].info("all")
        calls = {key: int(value["calls"]) for key, value in info.items() if key.startswith("cmd")}
        pid = self._servers[role].pid
        return RedisReading(
            # INFO itself is the bench's, not imageq's.
            commands=sum(calls.values()) - calls.get("cmdstat_info", 0),
            publishes=sum(calls.get(name, 0) for name in PUBLISH_COMMANDS),
            net_bytes=int(info["total_net_input_bytes"]) + int(info["total_net_output_bytes"]),
            used_memory=int(info["used_memory"]),
            cpu_s=procfs.cpu_seconds([pid]) if pid else 0.0,
        )

    def enqueue(self, job: JobSpec) -> None:
        """Hand one job to imageq, with the receiver as its webhook."""
        self.queue.enqueue(
            job.prompt,
            aspect_ratio=job.aspect_ratio,
            resolution=job.resolution,
            quality=job.quality,
            job_id=job.job_id,
            webhook_url=self.receiver.url,
        )

    def seed_history(self, history: dict[tuple[str, str], list[float]]) -> None:
        """Earlier generation times per cell, so the adaptive first poll starts warm."""
        store = connect_store(self.settings)
        window = self.settings.polling.adaptive_window
        for (quality, resolution), times in history.items():
            for seconds in times:
                store.add_generation_sample(quality, resolution, seconds, window=window)


def tcp_bytes(port: int) -> int:
    """Bytes sent and received so far on the open TCP connections to loopback `port`, from the
    kernel's per-socket counters (`ss -ti`); connections already closed are not counted."""
    found = subprocess.run(  # noqa: S603 -- a fixed command, no shell
        [SS, "-tinH", "state", "established", "dst", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return sum(int(value) for value in _SS_BYTES.findall(found))


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [float(value) for value in os.getloadavg()]


def idle_cores(seconds: float) -> float:
    """How many of the machine's cores were idle over the next `seconds` (other users' load)."""
    before = procfs.MachineTicks.now()
    time.sleep(seconds)
    busy = procfs.MachineTicks.now().busy_fraction_since(before)
    return (os.cpu_count() or 1) * (1.0 - busy)


@contextmanager
def sampling(read: Callable[[], Reading], every_s: float = 0.5) -> Iterator[list[Reading]]:
    """Sample `read()` every `every_s` in a thread while inside; yields the growing list."""
    samples: list[Reading] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            samples.append(read())

    thread = threading.Thread(target=run, name="sizing-sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(10)


def scaled(timing: Timing, scale: float) -> Timing:
    """A timing with every duration multiplied by `scale`."""
    return Timing(*(scale * value for value in vars(timing).values()))
