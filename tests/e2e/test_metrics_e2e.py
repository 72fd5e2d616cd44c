"""The metrics an operator charts, from two real workers and `imageq metrics-exporter`: queue
depth, the API latency histogram, download outcomes, the in-flight cap's use, and every
cluster-wide gauge served once, by the exporter alone."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer, free_port
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.worker.domain.status import JobStatus
from imageq.worker.metrics_cluster import CLUSTER_METRICS
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CAP = 2
JOBS = 5


def scrape(port: int) -> Samples:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(targets: list[Samples], name: str, **labels: str) -> float:
    """The sum over targets of one series (0 where a target lacks it), as `sum()` would."""
    key = (name, tuple(sorted(labels.items())))
    return sum(samples.get(key, 0.0) for samples in targets)


@pytest.fixture(scope="module")
def values(settings_values: dict[str, Any], redis_server: RedisServer) -> dict[str, Any]:
    """Databases of this module's own, so no other test's worker takes its jobs; a cap of 2."""
    mine = copy.deepcopy(settings_values)
    mine["redis"] = {"broker_url": redis_server.url(11), "store_url": redis_server.url(12)}
    mine["limits"] = {"max_in_flight": CAP, "slot_wait_s": 0.1}
    return mine


@pytest.fixture(scope="module")
def exporter_port(
    values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """`imageq metrics-exporter` on loopback, in a process of its own."""
    port = free_port()
    log = tmp_path_factory.mktemp("exporter") / "exporter.log"
    command = [sys.executable, "-m", "imageq.cli", "metrics-exporter", "--json"]
    command += ["--address", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, **settings_env(values)}
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(port), timeout_s=30, what="the exporter to answer")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).ok
    except requests.ConnectionError:
        return False


def test_cluster_metrics_from_two_workers_and_one_exporter(
    values: dict[str, Any],
    exporter_port: int,
    simulator: SimulatorServer,
    tmp_path: Path,
) -> None:
    """Five jobs through two workers under a cap of 2: every number matches what happened."""
    queue = ImageQueue(Settings(_env_file=None, **values))
    prompts = [f"a lighthouse {n}" for n in range(JOBS - 1)] + ["a harbour sim:file404=1"]
    job_ids = [queue.enqueue(p, aspect_ratio="1:1", resolution="1K") for p in prompts]

    # No worker yet: the jobs wait in the submit queue, in flight, holding no slot.
    waiting = scrape(exporter_port)
    assert value(waiting, "imageq_queue_depth", queue="imageq.submit") == JOBS
    assert value(waiting, "imageq_queue_depth", queue="imageq.poll") == 0
    assert value(waiting, "imageq_jobs_in_flight") == JOBS
    assert value(waiting, "imageq_api_slots_held") == 0
    assert value(waiting, "imageq_api_slots_limit") == CAP
    assert value(waiting, "imageq_exporter_redis_up") == 1

    ports = [free_port(), free_port()]
    workers = [
        WorkerProcess(
            settings_env(
                {**values, "observability": {**values["observability"], "metrics_port": p}}
            ),
            tmp_path / f"worker-{name}.log",
            name=name,
        )
        for name, p in zip(("a", "b"), ports, strict=True)
    ]
    try:
        for worker in workers:
            worker.start()
        # The cap is used to the full while the five jobs pass two at a time, never beyond it.
        seen_held = wait_for(
            lambda: _held_at_cap(exporter_port), timeout_s=30, what="both slots held"
        )
        assert seen_held == CAP
        jobs = [queue.wait(job_id, timeout_s=40) for job_id in job_ids]
        assert all(job.status is JobStatus.SUCCEEDED for job in jobs)
        wait_for(
            lambda: value(scrape(exporter_port), "imageq_jobs_in_flight") == 0,
            timeout_s=20,
            what="no job in flight",
        )
        cluster = scrape(exporter_port)
        by_worker = [scrape(port) for port in ports]
    finally:
        for worker in workers:
            worker.stop()

    assert value(cluster, "imageq_queue_depth", queue="imageq.submit") == 0
    assert value(cluster, "imageq_api_slots_held") == 0
    assert value(cluster, "imageq_polls_scheduled") == 0
    assert value(cluster, "imageq_poll_lag_seconds") == 0

    # The API latency histogram counts each request the simulator saw, per endpoint.
    stats = simulator.stats()
    submits = sum(stats["submits_by_out_task_id"][job.out_task_id] for job in jobs)
    queries = sum(stats["queries_by_task_id"][job.remote_task_id] for job in jobs)
    assert submits == JOBS
    histogram = "imageq_api_request_duration_seconds_count"
    assert total(by_worker, histogram, endpoint="submit", outcome="2xx") == submits
    polled = total(by_worker, histogram, endpoint="task", outcome="2xx")
    assert polled == queries == sum(job.poll_count for job in jobs)

    # Downloads: every output saved; the file404 job's first try failed, retryably.
    outputs = sum(len(job.outputs) for job in jobs)
    assert total(by_worker, "imageq_downloads_total", outcome="saved") == outputs
    assert total(by_worker, "imageq_downloads_total", outcome="failed_retryable") == 1
    assert total(by_worker, "imageq_downloads_total", outcome="failed_final") == 0

    # Five submits at once against a cap of two: some had to wait for a slot.
    assert total(by_worker, "imageq_submit_slot_waits_total") >= JOBS - CAP

    # Each cluster-wide gauge is served exactly once: by the exporter, by no worker.
    for name in CLUSTER_METRICS:
        serving = [s for s in [cluster, *by_worker] if any(key[0] == name for key in s)]
        assert serving == [cluster], name
    for samples in by_worker:
        assert ("imageq_jobs_submitted_total", ()) in samples


def _held_at_cap(port: int) -> float | None:
    held = value(scrape(port), "imageq_api_slots_held")
    assert held <= CAP
    return held if held == CAP else None


def test_exporter_once_json_reads_the_same_gauges(
    values: dict[str, Any], exporter_port: int
) -> None:
    """`--once --json` prints one reading with every cluster gauge, times in ISO 8601 UTC."""
    command = [sys.executable, "-m", "imageq.cli", "metrics-exporter", "--once", "--json"]
    env = {**os.environ, **settings_env(values)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reading = json.loads(done.stdout)
    assert reading["redis_up"] is True
    assert reading["collected_at"].endswith("Z")
    names = {sample["name"] for sample in reading["samples"]}
    assert names == set(CLUSTER_METRICS)
    served = scrape(exporter_port)
    assert {key[0] for key in served} == names
