"""The resources one worker process shares among its tasks, built once on first use."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from imageq.config import Settings, get_settings
from imageq.worker.outputs.storage import Storage, open_configured_storage
from imageq.worker.redis_clients import redis_client
from imageq.worker.store.job_store import JobStore
from imageq.worker.store.sample_cache import SampleCache
from imageq.worker.upstream.client import ApiClient
from imageq.worker.upstream.gate import OPEN_GATE, Gate, open_gate
from imageq.worker.webhooks.guard import target_policy
from imageq.worker.webhooks.outbound import OutboundClient
from imageq.worker.webhooks.sending import WebhookSender


@dataclass(frozen=True)
class Runtime:
    """Settings, the API client, the job store, the webhook sender and the outbound client
    (webhooks, downloads), plus clock and dice."""

    settings: Settings
    client: ApiClient
    store: JobStore
    webhooks: WebhookSender
    outbound: OutboundClient
    storage: Storage | None
    # Recent generation times per quality and resolution, for the adaptive poll schedule.
    samples: SampleCache
    clock: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random
    # The request budget and the pause on 429 (`imageq.worker.upstream.gate`).
    gate: Gate = OPEN_GATE


def busy_threads(settings: Settings) -> int:
    """How many of the worker's threads may use a connection at once: Celery's, and with the
    poller its largest pools, its notifier and its claiming thread."""
    threads = settings.worker.concurrency
    polling = settings.polling
    if polling.mode == "poller":
        threads += (
            polling.poller_max_threads
            + polling.poller_loop_threads
            + polling.poller_notify_threads
            + 1
        )
    return threads


# redis-py gives each connection a read buffer of 64 KiB, zeroed, so resident, and a poller
# keeps about one store connection per poll thread (120-175 KB each all told). The store's
# answers are a few KB (a claim of 256 polls about 25 KB); a longer one is read in more calls.
STORE_READ_BYTES = 16 * 1024


def connect_store(settings: Settings) -> JobStore:
    """A job store on its own connection pool, sized for every thread that may use it."""
    threads = busy_threads(settings) + 4
    client = redis_client(
        settings.redis,
        "store",
        socket_read_size=STORE_READ_BYTES,
        max_connections=max(settings.redis.max_connections, threads),
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return JobStore(
        client,
        prefix=settings.redis.key_prefix,
        ttl_s=settings.redis.record_ttl_s,
        wait_replicas=settings.redis.wait_replicas,
        wait_timeout_s=settings.redis.wait_timeout_s,
    )


def build_runtime(settings: Settings) -> Runtime:
    outbound = OutboundClient(
        target_policy(settings.webhook),
        user_agent=settings.api.user_agent,
        # Every Celery thread and every poller thread may send a webhook or download at once.
        max_connections=busy_threads(settings),
    )
    store = connect_store(settings)
    return Runtime(
        settings=settings,
        # Every Celery thread and every poller thread may be in an API call at once.
        client=ApiClient(
            settings.api,
            max_connections=busy_threads(settings),
        ),
        store=store,
        webhooks=WebhookSender(outbound, timeout_s=settings.webhook.timeout_s),
        outbound=outbound,
        storage=open_configured_storage(settings.storage) if settings.storage.enabled else None,
        samples=SampleCache(
            store.generation_samples,
            refresh_s=settings.polling.adaptive_refresh_s,
            clock=time.monotonic,
        ),
        gate=open_gate(settings),
    )


@cache
def runtime() -> Runtime:
    """This process's runtime, built on first use (prefork children reset it after the fork)."""
    return build_runtime(get_settings())


def reset_runtime() -> None:
    """Forget the runtime, so the next `runtime()` builds a fresh one (after a fork)."""
    runtime.cache_clear()
