"""A whole imageq of its own for fault-injection tests: Redis (AOF on, restartable on the same
port), the simulator, a webhook receiver, workers and the beat (which runs the sweeper), with
the means to break each of them and to check, at the end, that nothing was lost or doubled."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import BeatProcess, WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorProcess, SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.job import Delivery, Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.webhooks.signing import webhook_id

API_KEY = "sk-faults-0123456789abcdef"
SECRET = "whsec_ZmF1bHQtaW5qZWN0aW9uLXdlYmhvb2stc2VjcmV0"
RESULTS = Path("var/fault-results.jsonl")


def base_settings(
    redis_url: str, api_url: str, *, sweep: dict[str, float], polling_mode: str = "countdown"
) -> dict[str, Any]:
    return {
        "api": {"base_url": api_url, "key": API_KEY, "connect_timeout_s": 2, "read_timeout_s": 3},
        "redis": {"broker_url": f"{redis_url}/0", "store_url": f"{redis_url}/1"},
        "polling": {
            "first_delay_s": 1,
            "interval_s": 1,
            "jitter_s": 0.2,
            "deadline_s": 90,
            "adaptive_min_s": 1,
            "adaptive_max_s": 10,
            "mode": polling_mode,
        },
        "retry": {"base_delay_s": 0.2, "max_delay_s": 2},
        "webhook": {
            "secrets": SECRET,
            "timeout_s": 2,
            "schedule_s": "0,1,1,2,2,3,5,5,10,10",
            "allow_loopback": True,  # the receiver and the simulator are on loopback
        },
        "sweep": sweep,
        "observability": {"metrics_port": 0, "log_format": "json"},
        "worker": {"concurrency": 16, "max_countdown_s": 5},
        "schedule": {"loop_interval_s": 1, "lock_timeout_s": 5},
    }


@dataclass
class Cluster:
    """The running parts; built by `cluster()`."""

    root: Path
    redis: RedisServer
    simulator: SimulatorServer | SimulatorProcess
    receiver: WebhookReceiver
    values: dict[str, Any]
    queue: ImageQueue
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    beat: BeatProcess | None = None

    @property
    def env(self) -> dict[str, str]:
        return settings_env(self.values)

    def start_worker(self, name: str) -> WorkerProcess:
        log = self.root / f"worker-{name}.log"
        self.workers[name] = WorkerProcess(self.env, log, name=name).start()
        return self.workers[name]

    def start_beat(self) -> None:
        self.beat = BeatProcess(self.env, self.root / "beat.log").start()

    def enqueue(self, count: int, prompt: str = "a castle") -> list[str]:
        return [
            self.queue.enqueue(
                f"{prompt} {n}",
                aspect_ratio="1:1",
                resolution="1K",
                webhook_url=f"{self.receiver.base_url}/hooks",
            )
            for n in range(count)
        ]

    def jobs(self, job_ids: list[str]) -> list[Job]:
        return [self.queue.get(job_id) for job_id in job_ids]

    def wait(self, job_ids: list[str], predicate: Any, *, timeout_s: float, what: str) -> float:
        """Wait until `predicate(job)` holds for every job; return the seconds it took."""
        started = time.monotonic()
        while not all(predicate(job) for job in self.jobs(job_ids)):
            if time.monotonic() - started > timeout_s:
                stuck = [job for job in self.jobs(job_ids) if not predicate(job)]
                sample = [(job.job_id, job.status, job.poll_count) for job in stuck[:5]]
                raise AssertionError(f"{len(stuck)} job(s) not {what} in {timeout_s} s: {sample}")
            time.sleep(0.2)
        return time.monotonic() - started

    def time_to_progress(self, job_ids: list[str], *, timeout_s: float) -> float:
        """Seconds until every job that was in flight now has polled again or finished."""
        before = {job.job_id: job.poll_count for job in self.jobs(job_ids) if not job.is_terminal}
        return self.wait(
            list(before),
            lambda job: job.is_terminal or job.poll_count > before[job.job_id],
            timeout_s=timeout_s,
            what="progressing",
        )

    def settle(self, job_ids: list[str], *, timeout_s: float) -> None:
        self.wait(job_ids, lambda job: job.is_terminal, timeout_s=timeout_s, what="terminal")
        self.wait(
            job_ids,
            lambda job: job.webhook_state == Delivery.SENT,
            timeout_s=timeout_s,
            what="notified",
        )

    def check(self, job_ids: list[str], status: JobStatus = JobStatus.SUCCEEDED) -> None:
        """The promises: every job ended as expected, was accepted by the API once, and its
        result was delivered once."""
        jobs = self.jobs(job_ids)
        assert [job.status for job in jobs] == [status] * len(jobs)
        accepted = self.simulator.stats()["accepted_submits_by_out_task_id"]
        doubles = {job_id: accepted.get(job_id, 0) for job_id in job_ids}
        assert set(doubles.values()) == {1}, {k: v for k, v in doubles.items() if v != 1}
        delivered = self.receiver.accepted()
        counts = {job_id: delivered.get(webhook_id(job_id), 0) for job_id in job_ids}
        assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}

    def record(self, scenario: str, n: int, **measures: float) -> None:
        """Keep the scenario's numbers for the report (var/fault-results.jsonl)."""
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as out:
            row = {"scenario": scenario, "n": n, "at": time.time(), **measures}
            out.write(json.dumps(row) + "\n")

    def stop_processes(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        if self.beat is not None:
            self.beat.stop()

    def restart_redis(self) -> None:
        """Stop Redis (it writes its AOF on the way down) and start it on the same port/dir."""
        self.redis.stop()
        self.redis.start()

    def drop_connections(self) -> int:
        """CLIENT KILL every other client: workers, beat and producers must reconnect."""
        admin = redis.Redis.from_url(self.redis.url())
        killed = sum(int(admin.client_kill_filter(_type=kind)) for kind in ("normal", "pubsub"))
        admin.close()
        return killed


@contextmanager
def cluster(
    root: Path,
    *,
    workers: int = 1,
    beat: bool = True,
    sweep: dict[str, float] | None = None,
    latency: str = "uniform:4,8",
    polling_mode: str = "countdown",
    overrides: dict[str, dict[str, Any]] | None = None,
    simulator_process: bool = False,
) -> Iterator[Cluster]:
    """Start everything (Redis with AOF on a fixed directory, so it can be restarted), and stop
    everything at the end, whatever happened. `simulator_process`: the simulator in a child
    process, so the test's own work cannot delay its clock (for tests that count arrivals)."""
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer(data_dir=root / "redis", append_only=True))
        config = SimConfig(api_key=API_KEY, latency=latency)
        sim: SimulatorServer | SimulatorProcess
        if simulator_process:
            sim = stack.enter_context(SimulatorProcess(config))
        else:
            sim = stack.enter_context(SimulatorServer(config))
        receiver = stack.enter_context(WebhookReceiver())
        values = base_settings(
            server.url().rsplit("/", 1)[0],
            sim.base_url,
            sweep=sweep or {"interval_s": 1, "grace_s": 3},
            polling_mode=polling_mode,
        )
        for group, changes in (overrides or {}).items():
            values[group] = {**values.get(group, {}), **changes}
        settings = Settings(_env_file=None, **copy.deepcopy(values))
        parts = Cluster(root, server, sim, receiver, values, ImageQueue(settings))
        stack.callback(parts.stop_processes)
        for index in range(workers):
            parts.start_worker(f"w{index}")
        if beat:
            parts.start_beat()
        yield parts
