"""Shared real parts for integration tests: a Redis of their own, the simulator, a worker.

Every process started here is stopped here. Delays are shortened through settings, so the
end-to-end tests take seconds, and every wait is on a condition with a bounded timeout.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
import redis

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer, free_port
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.runtime import Runtime, build_runtime

API_KEY = "sk-test-9f8e7d6c5b4a-never-log-me"
WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA=="
CALLBACK_QUEUE = "imageq.test-callbacks"
DEADLINE_S = 4.0
WEBHOOK_ATTEMPTS = 5


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
            "allow_private_targets": True,  # every receiver here is on loopback
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


def callback_payloads(broker: redis.Redis, job_id: str) -> list[dict[str, Any]]:
    """Callback messages published for a job, read straight from the broker's list."""
    payloads = []
    for raw in broker.lrange(CALLBACK_QUEUE, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        if args and args[0].get("job_id") == job_id:
            payloads.append(args[0])
    return payloads


def step_runtime(
    settings_values: dict[str, Any], *, dbs: tuple[int, int], **sections: Any
) -> Runtime:
    """A runtime for calling steps directly: broker and store on databases `dbs` of the test
    Redis (no worker reads them; the store's emptied), storage off, `sections` overridden."""
    values = copy.deepcopy(settings_values)
    server = values["redis"]["broker_url"].rsplit("/", 1)[0]
    values["redis"] = {"broker_url": f"{server}/{dbs[0]}", "store_url": f"{server}/{dbs[1]}"}
    values["storage"] = {"enabled": False}
    values.update(sections)
    settings = Settings(_env_file=None, **values)
    redis.Redis.from_url(settings.redis.store_url).flushdb()
    return build_runtime(settings)


def wait_for(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout_s`."""
    give_up = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > give_up:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def job_path(request: pytest.FixtureRequest) -> Path:
    """A webhook path unique to the test."""
    return Path("/hooks") / re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)


@pytest.fixture
def bucket() -> Iterator[str]:
    """A fresh name in fsspec's process-wide memory filesystem, removed afterwards."""
    name = f"bucket-{uuid.uuid4().hex[:8]}"
    yield name
    memory = fsspec.filesystem("memory")
    if memory.exists(f"/{name}"):
        memory.rm(f"/{name}", recursive=True)
