"""Metrics and logs of a real worker: the numbers add up, the lines are JSON with the ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess
from imageq.producers.api import ImageQueue
from imageq.worker.domain.job import Delivery
from tests.conftest import API_KEY, WEBHOOK_SECRET, wait_for

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(after: dict[Any, float], before: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_add_up_over_a_run(
    worker: WorkerProcess,
    queue: ImageQueue,
    receiver: WebhookReceiver,
    settings_values: dict[str, Any],
    job_path: Path,
) -> None:
    """Three jobs (one failing): counters move by exactly what the jobs did."""
    port = settings_values["observability"]["metrics_port"]
    before = scrape(port)
    prompts = ["a castle", "a lake sim:poll429=1", "a fox sim:fail"]
    job_ids = [
        queue.enqueue(
            p, aspect_ratio="1:1", resolution="1K", webhook_url=f"{receiver.base_url}{job_path}"
        )
        for p in prompts
    ]
    wait_for(
        lambda: all(queue.get(j).webhook_state == Delivery.SENT for j in job_ids),
        timeout_s=20,
        what="every webhook",
    )
    jobs = [queue.get(job_id) for job_id in job_ids]
    after = scrape(port)
    assert delta(after, before, "imageq_jobs_submitted_total") == 3
    assert delta(after, before, "imageq_jobs_finished_total", status="succeeded") == 2
    assert delta(after, before, "imageq_jobs_finished_total", status="failed") == 1
    assert delta(after, before, "imageq_api_requests_total", endpoint="submit", status="200") == 3
    assert delta(after, before, "imageq_api_rate_limited_total") == 1
    assert delta(after, before, "imageq_polls_total") == sum(job.poll_count for job in jobs)
    assert delta(after, before, "imageq_polls_per_job_count") == 3
    assert delta(after, before, "imageq_webhook_attempts_total", outcome="delivered") == 3
    assert delta(after, before, "imageq_notification_lag_seconds_count", target="webhook") == 3
    # Cluster-wide: served once by `imageq metrics-exporter` (tests/e2e/test_metrics_e2e.py).
    assert ("imageq_jobs_in_flight", ()) not in after


def test_log_lines_are_json_with_ids_and_no_secrets(
    worker: WorkerProcess, queue: ImageQueue
) -> None:
    """Every line is one JSON object; a job's lines carry its ids; no secret anywhere."""
    job_id = queue.enqueue("a castle", aspect_ratio="1:1", resolution="1K")
    job = queue.wait(job_id, timeout_s=20)
    lines = [line for line in worker.log().splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    assert len(events) > 10
    finished = [e for e in events if e.get("job_id") == job_id and "finished" in e["event"]]
    assert finished, "the job's 'finished' line is missing"
    assert finished[0]["remote_task_id"] == job.remote_task_id
    assert finished[0]["celery_task_id"]
    assert {"timestamp", "level", "logger"} <= finished[0].keys()
    log = worker.log()
    for secret in (API_KEY, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_")):
        assert secret not in log
