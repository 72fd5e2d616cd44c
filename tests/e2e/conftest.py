"""The end-to-end layer's parts, shared by its tests: a Redis of their own, the simulator, a
webhook receiver and a worker process, with the settings that join them.

Every process started here is stopped here. Delays are shortened through settings, so the
end-to-end tests take seconds, and every wait is on a condition with a bounded timeout. Every
test in this folder is marked `e2e`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer, free_port
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from tests.conftest import API_KEY, DEADLINE_S, WEBHOOK_ATTEMPTS, WEBHOOK_SECRET

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `e2e`, so the marker and the folder agree."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimConfig(api_key=API_KEY, latency="fixed:0.6", seed=7)) as server:
        yield server


@pytest.fixture(scope="session")
def settings_values(
    redis_server: RedisServer,
    simulator: SimulatorServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The settings every end-to-end part shares, with delays shortened for tests."""
    return {
        "api": {
            "base_url": simulator.base_url,
            "key": API_KEY,
            "connect_timeout_s": 2,
            "read_timeout_s": 2,
        },
        "redis": {"broker_url": redis_server.url(0), "store_url": redis_server.url(1)},
        "polling": {
            "first_delay_s": 0.2,
            "interval_s": 0.25,
            "jitter_s": 0.05,
            "deadline_s": DEADLINE_S,
            "adaptive_min_s": 0.2,
            "adaptive_max_s": 2,
        },
        "retry": {"base_delay_s": 0.1, "max_delay_s": 0.5},
        "webhook": {
            "secrets": WEBHOOK_SECRET,
            "timeout_s": 2,
            "schedule_s": ",".join(["0"] + ["0.2"] * (WEBHOOK_ATTEMPTS - 1)),
            "jitter": 0,
            "allow_loopback": True,  # every receiver and the simulator here are on loopback
        },
        "storage": {
            "enabled": True,
            "url": str(tmp_path_factory.mktemp("images")),
            "max_bytes": 2_000_000,
        },
        "observability": {
            "metrics_port": free_port(),
            "log_format": "json",
            "log_task_lines": True,  # some tests wait on Celery's "succeeded" lines
        },
        # Hops of 0.1 s: webhook retries 0.2 s apart take two hops each, so hopping is exercised.
        "worker": {"concurrency": 8, "max_countdown_s": 0.1},
    }


@pytest.fixture(scope="session")
def settings(settings_values: dict[str, Any]) -> Settings:
    return Settings(_env_file=None, **settings_values)


@pytest.fixture(scope="session")
def worker(
    settings_values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with WorkerProcess(settings_env(settings_values), log_path) as process:
        yield process


@pytest.fixture(scope="session")
def queue(settings: Settings) -> ImageQueue:
    return ImageQueue(settings)


@pytest.fixture(scope="session")
def broker(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url(0))


@pytest.fixture(scope="session")
def store_redis(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url(1))


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def job_path(request: pytest.FixtureRequest) -> Path:
    """A webhook path unique to the test."""
    return Path("/hooks") / re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)
