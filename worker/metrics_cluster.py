"""Cluster-wide metrics, read from Redis at scrape time and served by one process.

Queue depths, jobs in flight, the in-flight cap's use and poll lag are facts about the whole
cluster, not about one worker: exported by every worker they would be counted once per worker
by any `sum()`. So they are not in the workers' registries; `imageq metrics-exporter` serves
them from a registry of its own, as one scrape target (the way redis_exporter or
kube-state-metrics serve the state of what they watch). Each scrape reads them afresh: two
pipelined round trips, one to the broker and one to the job store, of O(1) or O(log N)
commands, whatever the queues hold.

`read_cluster` does the I/O; `cluster_families` turns a reading into metric families and is
pure; `ClusterCollector` joins the two for prometheus_client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from imageq.config import Settings
from imageq.worker.redis_clients import redis_client
from imageq.worker.store.job_store import JobStore

log = logging.getLogger(__name__)

# kombu's Redis transport keeps the messages it has handed out, until their ack, in this hash:
# the running tasks, and every countdown (ETA) message a worker holds until it is due.
UNACKED_KEY: Final = "unacked"

# name -> help, for `describe` (no Redis needed) and for the families `collect` yields.
CLUSTER_METRICS: Final = {
    "imageq_queue_depth": "Messages waiting in a Celery queue of imageq (LLEN of its list).",
    "imageq_broker_unacked_messages": (
        "Messages handed to workers and not yet acknowledged: running tasks and the countdown"
        " (ETA) messages workers hold until due."
    ),
    "imageq_jobs_in_flight": "Jobs with work left to do (the in-flight index).",
    "imageq_jobs_overdue": (
        "Jobs whose next piece of work is overdue by more than the sweeper's grace"
        " (the sweeper sends it again)."
    ),
    "imageq_api_slots_held": "API slots held now: jobs counted against the in-flight cap.",
    "imageq_api_slots_limit": "The in-flight cap (IMAGEQ_LIMITS__MAX_IN_FLIGHT; 0: no cap).",
    "imageq_api_slots_interactive_reserve": (
        "Slots of the cap only interactive jobs may use (IMAGEQ_LIMITS__INTERACTIVE_RESERVE)."
    ),
    "imageq_polls_scheduled": "Jobs with a next poll in the poll schedule.",
    "imageq_polls_due": "Polls whose time has come and that no poller has taken yet.",
    "imageq_poll_lag_seconds": "How long ago the most overdue poll was due (0: none is due).",
    "imageq_dead_letters_stored": "Webhook deliveries given up on and kept for a replay.",
    "imageq_exporter_redis_up": "1 if both the broker and the job store answered this scrape.",
    "imageq_exporter_scrape_duration_seconds": "Time this scrape took to read Redis.",
}


@dataclass(frozen=True)
class ClusterReading:
    """What one scrape read from Redis; `oldest_poll_at` is None when no poll is scheduled."""

    queue_depths: dict[str, int]
    unacked: int
    in_flight: int
    overdue: int
    slots_held: int
    polls_scheduled: int
    polls_due: int
    oldest_poll_at: float | None
    dead_letters: int


@dataclass(frozen=True)
class ClusterSources:
    """Where the cluster's state lives: the broker's queues and the job store's keys."""

    broker: redis.Redis
    store: redis.Redis
    keys: JobStore
    queues: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> ClusterSources:
        """Small clients of their own: a scrape needs one connection to each Redis."""
        options = {"socket_timeout": 5, "socket_connect_timeout": 5, "max_connections": 4}
        store = redis_client(settings.redis, "store", **options)
        prefix, ttl_s = settings.redis.key_prefix, settings.redis.record_ttl_s
        worker = settings.worker
        return cls(
            broker=redis_client(settings.redis, "broker", **options),
            store=store,
            # The store's own key names; the exporter only reads them.
            keys=JobStore(store, prefix=prefix, ttl_s=ttl_s),
            queues=(
                worker.submit_queue,
                worker.bulk_submit_queue,
                worker.poll_queue,
                worker.download_queue,
                worker.notify_queue,
            ),
        )


def read_cluster(sources: ClusterSources, *, now: float, overdue_before: float) -> ClusterReading:
    """Read the cluster's state: one pipeline to the broker, one to the job store."""
    with sources.broker.pipeline(transaction=False) as pipe:
        for queue in sources.queues:
            pipe.llen(queue)
        pipe.hlen(UNACKED_KEY)
        *depths, unacked = pipe.execute()
    keys = sources.keys
    with sources.store.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.in_flight_key)
        pipe.zcount(keys.in_flight_key, "-inf", overdue_before)
        pipe.zcount(keys.slots_key, now, "+inf")
        pipe.zcard(keys.poll_schedule_key)
        pipe.zcount(keys.poll_schedule_key, "-inf", now)
        pipe.zrange(keys.poll_schedule_key, 0, 0, withscores=True)
        pipe.hlen(keys.dead_letters_key)
        in_flight, overdue, slots, scheduled, due, oldest, dead = pipe.execute()
    return ClusterReading(
        queue_depths=dict(zip(sources.queues, map(int, depths), strict=True)),
        unacked=int(unacked),
        in_flight=int(in_flight),
        overdue=int(overdue),
        slots_held=int(slots),
        polls_scheduled=int(scheduled),
        polls_due=int(due),
        oldest_poll_at=float(oldest[0][1]) if oldest else None,
        dead_letters=int(dead),
    )


# Commands one `read_cluster` sends, besides one LLEN per queue (for the scrape-cost figures).
STORE_COMMANDS: Final = 7
BROKER_COMMANDS_BESIDES_QUEUES: Final = 1


def cluster_families(
    reading: ClusterReading, *, now: float, cap: int, reserve: int
) -> Iterator[Metric]:
    """The families of one reading (without the exporter's own two)."""
    depth = _gauge("imageq_queue_depth", labels=["queue"])
    for queue, count in reading.queue_depths.items():
        depth.add_metric([queue], count)
    yield depth
    lag_s = 0.0
    if reading.oldest_poll_at is not None:
        lag_s = max(0.0, now - reading.oldest_poll_at)
    for name, value in (
        ("imageq_broker_unacked_messages", reading.unacked),
        ("imageq_jobs_in_flight", reading.in_flight),
        ("imageq_jobs_overdue", reading.overdue),
        ("imageq_api_slots_held", reading.slots_held),
        ("imageq_api_slots_limit", cap),
        ("imageq_api_slots_interactive_reserve", reserve),
        ("imageq_polls_scheduled", reading.polls_scheduled),
        ("imageq_polls_due", reading.polls_due),
        ("imageq_poll_lag_seconds", lag_s),
        ("imageq_dead_letters_stored", reading.dead_letters),
    ):
        gauge = _gauge(name)
        gauge.add_metric([], value)
        yield gauge


class ClusterCollector(Collector):
    """Reads Redis on every scrape. When Redis does not answer, the scrape still succeeds,
    with `imageq_exporter_redis_up 0` and no other value (an absent value, not a stale one)."""

    def __init__(
        self,
        sources: ClusterSources,
        *,
        cap: int,
        reserve: int,
        grace_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sources = sources
        self._cap = cap
        self._reserve = reserve
        self._grace_s = grace_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> ClusterCollector:
        return cls(
            ClusterSources.from_settings(settings),
            cap=settings.limits.max_in_flight,
            reserve=settings.limits.interactive_reserve,
            grace_s=settings.sweep.grace_s,
        )

    def describe(self) -> Iterator[Metric]:
        """Every family by name, without reading Redis (the registry asks at registration)."""
        for name in CLUSTER_METRICS:
            yield _gauge(name, labels=["queue"] if name == "imageq_queue_depth" else [])

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        now = self._clock()
        families: list[Metric] = []
        up = 1
        try:
            reading = read_cluster(self._sources, now=now, overdue_before=now - self._grace_s)
        except redis.RedisError as error:
            log.warning("cluster metrics: Redis did not answer (%s)", type(error).__name__)
            up = 0
        else:
            families = list(
                cluster_families(reading, now=now, cap=self._cap, reserve=self._reserve)
            )
        yield from families
        for name, value in (
            ("imageq_exporter_redis_up", up),
            ("imageq_exporter_scrape_duration_seconds", time.perf_counter() - started),
        ):
            gauge = _gauge(name)
            gauge.add_metric([], value)
            yield gauge


def cluster_registry(collector: Collector) -> CollectorRegistry:
    """A registry of the cluster metrics alone (no process metrics of the exporter)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve_cluster_metrics(registry: CollectorRegistry, *, port: int, address: str) -> None:
    """Serve `registry` on http://address:port/metrics from a background thread."""
    start_http_server(port, addr=address, registry=registry)


def _gauge(name: str, *, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, CLUSTER_METRICS[name], labels=labels or [])
