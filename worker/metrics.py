"""Prometheus metrics of one worker process: what it did to jobs, to the API and to receivers.

Counters and histograms live in this process's default registry and are served over HTTP by
`serve_metrics` (the worker calls it at start). The threads pool (the default) is one process,
so one registry sees every task; with prefork each child would need Prometheus' multiprocess
mode, which imageq does not set up.

Only what this process did is here: numbers about the whole cluster (queue depths, jobs in
flight, the in-flight cap's use, poll lag) are read from Redis by `metrics_cluster`, served
once by `imageq metrics-exporter`, so a `sum()` over workers never counts them twice.
"""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import Counter, Histogram, start_http_server

from imageq.worker.domain.status import TERMINAL_JOB_STATUSES
from imageq.worker.errors import DownloadFailed, UnsafeTarget

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
API_REQUEST_DURATION: Final = Histogram(
    "imageq_api_request_duration_seconds",
    "Time of one request to the aireiter API, answered or not, by endpoint (submit, query,"
    " task) and outcome (2xx, 4xx, 5xx ... by HTTP status class; 'error': no answer).",
    ["endpoint", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 20, 30),
)
API_RATE_LIMITED: Final = Counter("imageq_api_rate_limited", "API answers of HTTP 429.")
CREDITS_USED: Final = Counter(
    "imageq_credits_used",
    "Credits the API reported for finished jobs, by quality and resolution.",
    ["quality", "resolution"],
)
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
DOWNLOADS: Final = Counter(
    "imageq_downloads",
    "Attempts to save one output image, by outcome: saved, failed_retryable, failed_final,"
    " refused (the address guard refused the URL).",
    ["outcome"],
)
SUBMIT_SLOT_WAITS: Final = Counter(
    "imageq_submit_slot_waits",
    "Submits put off because the in-flight cap was reached (each waits and asks again).",
)

DOWNLOAD_OUTCOMES: Final = ("saved", "failed_retryable", "failed_final", "refused")

# Each known series starts at 0, so rate() and increase() see its first event: a series born
# at 1 (a first failure, say) looks unchanged to them until it moves again.
for _status in TERMINAL_JOB_STATUSES:
    JOBS_FINISHED.labels(str(_status))
for _outcome in ("delivered", "failed"):  # worker/steps/webhook_attempt.py
    WEBHOOK_ATTEMPTS.labels(_outcome)
for _outcome in DOWNLOAD_OUTCOMES:
    DOWNLOADS.labels(_outcome)
for _endpoint in ("submit", "task", "query"):  # worker/upstream/client.py
    for _outcome in ("2xx", "4xx", "5xx", "error"):
        API_REQUEST_DURATION.labels(_endpoint, _outcome)


def status_class(status: int | None) -> str:
    """The outcome label of an API request: '2xx', '4xx' ... by HTTP status, 'error' if none."""
    return "error" if status is None else f"{status // 100}xx"


def count_api_request(endpoint: str, status: int | None, *, started: float) -> None:
    """Count one API request that began at `started` (time.monotonic) and ended now, with
    its HTTP status (None: no answer), in the request counter and the latency histogram."""
    API_REQUESTS.labels(endpoint, "error" if status is None else str(status)).inc()
    API_REQUEST_DURATION.labels(endpoint, status_class(status)).observe(time.monotonic() - started)


def download_outcome(error: DownloadFailed | None) -> str:
    """The outcome label of one output's save: 'refused' when the address guard refused a hop
    (fetching raises that `from None`, so the refusal is the error's context), else by
    whether another attempt may help."""
    if error is None:
        return "saved"
    if isinstance(error.__context__, UnsafeTarget):
        return "refused"
    return "failed_retryable" if error.retryable else "failed_final"


def serve_metrics(port: int) -> None:
    """Serve this process's /metrics on `port` (all interfaces, as a scrape target)."""
    start_http_server(port)


SCHEDULED_TICKS_FAILED: Final = Counter(
    "imageq_scheduled_ticks_failed",
    "Scheduled-run ticks a worker could not run, by reason (no schedule file, unknown run, ...).",
    ["reason"],
)

BUDGET_WAITS: Final = Counter(
    "imageq_budget_waits",
    "API requests put off by the request budget or the pause on 429 (never dropped), by kind"
    " (submit, poll) and reason (budget: no turn near; booked: a turn booked ahead; pause;"
    " probe: another worker's probe is out).",
    ["kind", "reason"],
)
BUDGET_WAIT_SECONDS: Final = Histogram(
    "imageq_budget_wait_seconds",
    "How long the request budget or the pause on 429 put off one API request, by kind.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
BUDGET_LATE_TURNS: Final = Counter(
    "imageq_budget_late_turns",
    "Turns of the request budget lost because the request was not ready to go until more than"
    " `budget.late_s` after its turn (it took a new turn), by kind.",
    ["kind"],
)
API_PAUSES: Final = Counter(
    "imageq_api_pauses",
    "429 answers this worker recorded as a fleet-wide pause of the API key.",
)
DEADLINE_EXTENSION_SECONDS: Final = Counter(
    "imageq_deadline_extension_seconds",
    "Seconds added to jobs' poll deadlines for polls a pause on 429 delayed.",
)
for _kind in ("submit", "poll"):
    BUDGET_WAIT_SECONDS.labels(_kind)
    BUDGET_LATE_TURNS.labels(_kind)
    for _reason in ("budget", "booked", "pause", "probe"):
        BUDGET_WAITS.labels(_kind, _reason)
