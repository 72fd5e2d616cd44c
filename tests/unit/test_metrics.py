"""The metrics' pure parts: outcome labels, the cluster reading turned into families, and a
scrape that still answers when Redis does not."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import urllib3
from prometheus_client.core import Metric
from prometheus_client.registry import REGISTRY

from imageq.worker.errors import DownloadFailed, UnsafeTarget
from imageq.worker.metrics import count_api_request, download_outcome, status_class
from imageq.worker.metrics_cluster import (
    CLUSTER_METRICS,
    ClusterCollector,
    ClusterReading,
    ClusterSources,
    cluster_families,
)
from imageq.worker.outputs.fetching import fetch_image
from imageq.worker.store.job_store import JobStore
from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.outbound import OutboundClient


@pytest.mark.parametrize(
    ("status", "label"),
    [(200, "2xx"), (201, "2xx"), (404, "4xx"), (429, "4xx"), (503, "5xx"), (None, "error")],
)
def test_status_class(status: int | None, label: str) -> None:
    """An API request's outcome is its status class, or 'error' when nothing answered."""
    assert status_class(status) == label


def test_count_api_request_counts_and_times() -> None:
    """One call moves the status counter and the histogram of its endpoint and class."""
    before_count = _value("imageq_api_requests_total", endpoint="submit", status="503")
    before_hist = _value(
        "imageq_api_request_duration_seconds_count", endpoint="submit", outcome="5xx"
    )
    count_api_request("submit", 503, started=0.0)
    assert _value("imageq_api_requests_total", endpoint="submit", status="503") == before_count + 1
    assert (
        _value("imageq_api_request_duration_seconds_count", endpoint="submit", outcome="5xx")
        == before_hist + 1
    )


class _RefusingClient(OutboundClient):
    """The outbound client's refusal, as `webhooks.connecting` raises it before connecting."""

    def request(self, method: str, url: str, **_: Any) -> urllib3.BaseHTTPResponse:
        raise UnsafeTarget("refused to connect to '10.0.0.1': it resolves to a private address")


def _fetch_error(client: OutboundClient) -> DownloadFailed:
    with pytest.raises(DownloadFailed) as caught:
        fetch_image(
            client,
            "http://images.invalid/a.png",
            max_bytes=100,
            connect_timeout_s=1,
            read_timeout_s=1,
            total_timeout_s=1,
        )
    return caught.value


def test_a_refused_address_is_counted_refused() -> None:
    """The guard's refusal, raised through fetching, is told apart from other final errors."""
    assert (
        download_outcome(_fetch_error(_RefusingClient(TargetPolicy(), user_agent="imageq-test")))
        == "refused"
    )


@pytest.mark.parametrize(
    ("error", "label"),
    [
        (None, "saved"),
        (DownloadFailed("GET x: HTTP 404", retryable=True), "failed_retryable"),
        (DownloadFailed("GET x: not an image", retryable=False), "failed_final"),
    ],
)
def test_download_outcome(error: DownloadFailed | None, label: str) -> None:
    """Saved, or failed in a way another attempt may or may not mend."""
    assert download_outcome(error) == label


READING = ClusterReading(
    queue_depths={"imageq.submit": 4, "imageq.poll": 0},
    unacked=7,
    in_flight=9,
    overdue=1,
    slots_held=3,
    polls_scheduled=5,
    polls_due=2,
    oldest_poll_at=990.0,
    dead_letters=6,
)


def _samples(families: list[Metric]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (s.name, tuple(s.labels.values())): s.value for family in families for s in family.samples
    }


def test_cluster_families_of_a_reading() -> None:
    """Each number of the reading under its name; the cap from the settings; lag from now."""
    samples = _samples(list(cluster_families(READING, now=1000.0, cap=4, reserve=1)))
    assert samples[("imageq_queue_depth", ("imageq.submit",))] == 4
    assert samples[("imageq_queue_depth", ("imageq.poll",))] == 0
    assert samples[("imageq_broker_unacked_messages", ())] == 7
    assert samples[("imageq_jobs_in_flight", ())] == 9
    assert samples[("imageq_jobs_overdue", ())] == 1
    assert samples[("imageq_api_slots_held", ())] == 3
    assert samples[("imageq_api_slots_limit", ())] == 4
    assert samples[("imageq_api_slots_interactive_reserve", ())] == 1
    assert samples[("imageq_polls_scheduled", ())] == 5
    assert samples[("imageq_polls_due", ())] == 2
    assert samples[("imageq_poll_lag_seconds", ())] == 10.0
    assert samples[("imageq_dead_letters_stored", ())] == 6


@pytest.mark.parametrize("oldest", [None, 1005.0])
def test_no_poll_lag_when_none_is_due(oldest: float | None) -> None:
    """No poll scheduled, or the earliest still ahead: the lag is 0, never negative."""
    reading = ClusterReading(**{**READING.__dict__, "oldest_poll_at": oldest})
    samples = _samples(list(cluster_families(reading, now=1000.0, cap=0, reserve=0)))
    assert samples[("imageq_poll_lag_seconds", ())] == 0.0


class _DownRedis:
    """A Redis that does not answer (what redis-py raises when it cannot connect)."""

    def pipeline(self, **_: Any) -> Any:
        raise redis.ConnectionError("Error 111 connecting to redis:6379. Connection refused.")


def _down_collector() -> ClusterCollector:
    down: Any = _DownRedis()
    sources = ClusterSources(
        broker=down,
        store=down,
        keys=JobStore(redis.Redis(), prefix="imageq", ttl_s=60),  # key names only
        queues=("imageq.submit",),
    )
    return ClusterCollector(sources, cap=2, reserve=0, grace_s=15, clock=lambda: 1000.0)


def test_a_scrape_answers_when_redis_does_not() -> None:
    """Redis away: redis_up 0 and the scrape time, and no stale or made-up cluster value."""
    samples = _samples(list(_down_collector().collect()))
    assert samples[("imageq_exporter_redis_up", ())] == 0
    assert set(name for name, _ in samples) == {
        "imageq_exporter_redis_up",
        "imageq_exporter_scrape_duration_seconds",
    }


def test_describe_needs_no_redis() -> None:
    """Registration asks `describe`, which names every family without reading Redis."""
    assert [family.name for family in _down_collector().describe()] == list(CLUSTER_METRICS)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
