"""The fault suite's cluster (`tests/e2e/cluster.py`) on a Redis Sentinel group instead of one
Redis: a master, a replica and three sentinels on loopback, with passwords on both sides, and
imageq configured from the sentinels alone."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from imageq.config import Settings
from imageq.devenv.redis_sentinel import SentinelGroup
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from tests.e2e.cluster import API_KEY, Cluster, base_settings

REDIS_PASSWORD = "redis-failover-pw-0123456789"
SENTINEL_PASSWORD = "sentinel-failover-pw-9876543210"


def sentinel_redis_settings(group: SentinelGroup, *, wait_replicas: int) -> dict[str, Any]:
    """The `redis` settings group for imageq on `group`: no server address, only sentinels."""
    return {
        # With sentinels only the database number of these URLs is used.
        "broker_url": "redis://sentinel/0",
        "store_url": "redis://sentinel/1",
        "sentinels": ",".join(group.sentinel_addresses),
        "sentinel_master": group.master_name,
        "password": REDIS_PASSWORD,
        "sentinel_password": SENTINEL_PASSWORD,
        "wait_replicas": wait_replicas,
        "wait_timeout_s": 1.0,
    }


@contextmanager
def sentinel_cluster(
    root: Path,
    *,
    workers: int = 1,
    latency: str = "uniform:4,8",
    wait_replicas: int = 1,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 3000,
) -> Iterator[tuple[Cluster, SentinelGroup]]:
    """Start the group, the simulator, a webhook receiver, workers and beat; stop them all."""
    with ExitStack() as stack:
        group = stack.enter_context(
            SentinelGroup(
                password=REDIS_PASSWORD,
                sentinel_password=SENTINEL_PASSWORD,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                log_dir=root,
            )
        )
        sim = stack.enter_context(SimulatorServer(SimConfig(api_key=API_KEY, latency=latency)))
        receiver = stack.enter_context(WebhookReceiver())
        values = base_settings(
            "redis://unused", sim.base_url, sweep={"interval_s": 1, "grace_s": 3}
        )
        values["redis"] = sentinel_redis_settings(group, wait_replicas=wait_replicas)
        settings = Settings(_env_file=None, **copy.deepcopy(values))
        parts = Cluster(root, group.master, sim, receiver, values, ImageQueue(settings))
        stack.callback(parts.stop_processes)
        for index in range(workers):
            parts.start_worker(f"w{index}")
        parts.start_beat()
        yield parts, group
