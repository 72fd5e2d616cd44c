"""Prometheus metrics of the worker: what it did to jobs, to the API and to receivers.

Counters and histograms live in this process's default registry and are served over HTTP by
`serve_metrics` (the worker calls it at start). The threads pool (the default) is one process,
so one registry sees every task; with prefork each child would need Prometheus' multiprocess
mode, which imageq does not set up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

JOBS_SUBMITTED: Final = Counter(
    "imageq_jobs_submitted", "Jobs the API accepted (or that were found there and adopted)."
)
JOBS_FINISHED: Final = Counter(
    "imageq_jobs_finished", "Jobs that reached a terminal status, by status.", ["status"]
)
API_REQUESTS: Final = Counter(
    "imageq_api_requests",
    "Requests to the aireiter API, by endpoint and HTTP status ('error': no answer).",
    ["endpoint", "status"],
)
API_RATE_LIMITED: Final = Counter("imageq_api_rate_limited", "API answers of HTTP 429.")
POLLS: Final = Counter("imageq_polls", "Polls of the API for a job's status.")
POLLS_PER_JOB: Final = Histogram(
    "imageq_polls_per_job",
    "Polls a job took, observed when it ends.",
    buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55),
)
TIME_TO_COMPLETION: Final = Histogram(
    "imageq_time_to_completion_seconds",
    "From enqueue to the terminal status.",
    buckets=(5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300),
)
NOTIFICATION_LAG: Final = Histogram(
    "imageq_notification_lag_seconds",
    "From the terminal status to the notification's delivery, by target.",
    ["target"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 300, 3600),
)
WEBHOOK_ATTEMPTS: Final = Counter(
    "imageq_webhook_attempts", "Webhook attempts, by outcome.", ["outcome"]
)
DEAD_LETTERS: Final = Counter("imageq_dead_letters", "Webhook deliveries given up on.")
SWEEPER_RESENT: Final = Counter(
    "imageq_sweeper_resent", "Pieces of overdue work the sweeper sent again."
)


class InFlightCollector(Collector):
    """`imageq_jobs_in_flight`: read from the job store at scrape time, so it is the same
    whichever worker is scraped."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "imageq_jobs_in_flight", "Jobs with work left to do (the in-flight index)."
        )
        gauge.add_metric([], self._count())
        yield gauge


def serve_metrics(port: int, *, in_flight: Callable[[], int]) -> None:
    """Serve /metrics on `port` (all interfaces, as a scrape target), with the in-flight gauge."""
    REGISTRY.register(InFlightCollector(in_flight))
    start_http_server(port)


SCHEDULED_TICKS_FAILED: Final = Counter(
    "imageq_scheduled_ticks_failed",
    "Scheduled-run ticks a worker could not run, by reason (no schedule file, unknown run, ...).",
    ["reason"],
)
