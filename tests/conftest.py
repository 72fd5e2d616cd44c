"""What the layers share: the test key and secrets, the bounded `wait_for`, the helpers that
end-to-end tests import (`callback_payloads`, `step_runtime`), and a memory:// bucket.

Nothing here starts a process or opens a socket: the fixtures that do (Redis, the simulator, a
worker) are in tests/e2e/conftest.py, and tests/unit/conftest.py refuses both outright.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
import pytest
import redis

from imageq.config import Settings
from imageq.worker.runtime import Runtime, build_runtime

API_KEY = "sk-test-9f8e7d6c5b4a-never-log-me"
WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA=="
CALLBACK_QUEUE = "imageq.test-callbacks"
DEADLINE_S = 4.0
WEBHOOK_ATTEMPTS = 5


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
def bucket() -> Iterator[str]:
    """A fresh name in fsspec's process-wide memory filesystem, removed afterwards."""
    name = f"bucket-{uuid.uuid4().hex[:8]}"
    yield name
    memory = fsspec.filesystem("memory")
    if memory.exists(f"/{name}"):
        memory.rm(f"/{name}", recursive=True)


_LOCAL_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo_without_dns(
    host: Any, port: Any = None, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> Any:
    """`socket.getaddrinfo` that answers literal addresses and `localhost` only: a test that
    looks a name up gets "unknown name" instead of a DNS query leaving the machine."""
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or str(name).lower() in _LOCAL_NAMES:
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    try:
        return _real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise socket.gaierror(socket.EAI_NONAME, f"no DNS in tests: {name!r}") from None


@pytest.fixture(autouse=True, scope="session")
def _no_dns() -> Iterator[None]:
    # Tests send nothing beyond loopback, DNS queries included; a test that needs a name to
    # resolve passes its own resolver (the guard takes one) or patches this.
    socket.getaddrinfo = _getaddrinfo_without_dns
    yield
    socket.getaddrinfo = _real_getaddrinfo
