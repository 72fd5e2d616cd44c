"""The processes of a soak run, and the means to break each: Redis with AOF (restartable on
its port and directory), the simulator as a child process behind an `ApiGate`, the webhook
receiver, the beat and the workers (SIGKILL and restart).

Everything started here is stopped on exit, whatever happened (Ctrl-C included).
"""

from __future__ import annotations

import copy
import random
import tempfile
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import urlsplit

import requests

from bench.api_gate import ApiGate
from bench.designs import API_KEY, WEBHOOK_SECRET, CleanEnvWorker, start_all, stop_all
from bench.soak_plan import SoakPlan
from bench.soak_receiver import SwitchableReceiver
from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.devenv.worker_process import BeatProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import start_simulator_process, stop_simulator_process

_CONTROL_TIMEOUT_S: Final = 30.0


class CleanEnvBeat(CleanEnvWorker, BeatProcess):
    """The beat (scheduler and sweeper), with no `IMAGEQ_*` variable from the shell."""


class SoakCluster:
    """`with SoakCluster(plan, log_dir) as cluster:` everything runs and is healthy."""

    def __init__(self, plan: SoakPlan, *, log_dir: Path) -> None:
        self._plan = plan
        self._log_dir = log_dir
        self._stack = ExitStack()
        self._rng = random.Random(f"workers-{plan.seed}")
        self.workers: dict[str, CleanEnvWorker] = {}
        self._started: Counter[str] = Counter()
        # Every process this cluster started, so a caller can check that none outlives it.
        self.pids: list[int] = []
        self.values: dict[str, Any] = {}

    def __enter__(self) -> Self:
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
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imageq-soak-")))
        self.redis = stack.enter_context(RedisServer(data_dir=data_dir, append_only=True))
        simulator, self.sim_url = start_simulator_process(
            ["--api-key", API_KEY, "--latency", "realistic", "--seed", str(self._plan.seed)]
        )
        stack.callback(stop_simulator_process, simulator)
        self.pids.append(simulator.pid)
        sim_port = urlsplit(self.sim_url).port
        assert sim_port is not None  # the simulator announces http://host:port
        self.gate = stack.enter_context(ApiGate(sim_port))
        self.receiver = stack.enter_context(SwitchableReceiver())
        self.values = imageq_values(self._plan, self.redis.url(), self.gate.base_url)
        self.settings = Settings(_env_file=None, **copy.deepcopy(self.values))
        self.queue = ImageQueue(self.settings)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        env = settings_env(self.values)
        beat = CleanEnvBeat(env, self._log_dir / "beat.log", name="soak-beat", loglevel="INFO")
        names = [f"w{index}" for index in range(self._plan.workers)]
        self.workers = {name: self._worker(name) for name in names}
        stack.callback(stop_all, [beat])
        stack.callback(lambda: stop_all(list(self.workers.values())))
        start_all([beat, *self.workers.values()])
        self.pids += [beat.pid, *(worker.pid for worker in self.workers.values())]
        self._note_redis()

    def _worker(self, name: str) -> CleanEnvWorker:
        # A log file per process: readiness is read from the log, and a dead predecessor's
        # "ready" line must not pass for the new one's.
        self._started[name] += 1
        log = self._log_dir / f"worker-{name}.{self._started[name]}.log"
        return CleanEnvWorker(settings_env(self.values), log, name=f"soak-{name}", loglevel="INFO")

    def kill_random_worker(self) -> tuple[str, int]:
        """SIGKILL one worker, chosen at random; returns its name and pid."""
        name = self._rng.choice(sorted(self.workers))
        pid = self.workers[name].pid
        self.workers[name].kill()
        return name, pid

    def restart_worker(self, name: str) -> None:
        """A fresh worker process in the dead one's place; returns once it is ready."""
        self.workers[name] = self._worker(name).start()
        self.pids.append(self.workers[name].pid)

    def restart_redis(self) -> None:
        """SIGTERM (Redis writes its AOF on the way down), then start on the same port and
        directory: every key comes back."""
        self.redis.stop()
        self.redis.start()
        self._note_redis()

    def _note_redis(self) -> None:
        if self.redis.pid is not None:
            self.pids.append(self.redis.pid)

    def set_api_faults(
        self, *, rate_429: float = 0, rate_503: float = 0, rate_drop: float = 0
    ) -> None:
        """The simulator's global fault rates (all 0: healthy), through its control route."""
        body = {"rate_429": rate_429, "rate_503": rate_503, "rate_drop": rate_drop}
        answer = requests.post(f"{self.sim_url}/_sim/faults", json=body, timeout=_CONTROL_TIMEOUT_S)
        answer.raise_for_status()

    def sim_stats(self) -> dict[str, Any]:
        """The simulator's counters and tasks (`/_sim/stats`), straight from it, not the gate."""
        answer = requests.get(f"{self.sim_url}/_sim/stats", timeout=_CONTROL_TIMEOUT_S)
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
        return stats


def imageq_values(plan: SoakPlan, redis_url: str, api_url: str) -> dict[str, Any]:
    """Production's settings (imageq's defaults) on this machine's parts, with the plan's
    changes on top; metrics off (two workers on one host would contend for the port)."""
    server = redis_url.rsplit("/", 1)[0]
    values: dict[str, Any] = {
        "api": {"base_url": api_url, "key": API_KEY},
        "redis": {"broker_url": f"{server}/0", "store_url": f"{server}/1"},
        "webhook": {"secrets": WEBHOOK_SECRET, "allow_loopback": True},
        "storage": {"enabled": False},
        "observability": {"metrics_port": 0, "log_format": "json"},
        "worker": {"concurrency": plan.concurrency},
    }
    for group, changes in plan.settings.items():
        values.setdefault(group, {}).update(changes)
    return values
