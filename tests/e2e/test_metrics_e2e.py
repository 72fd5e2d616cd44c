"""The metrics an operator charts, from two real workers and `imageq metrics-exporter`: queue
depth, the API latency histogram, download outcomes, the in-flight cap's use, and every
cluster-wide gauge served once, by the exporter alone."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
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
SCHEMA = Path(__file__).parents[2] / "cli" / "schemas" / "metrics-exporter.json"
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
def exporter_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Where the exporter's stdout and stderr go."""
    folder = tmp_path_factory.mktemp("exporter")
    return folder / "stdout.txt", folder / "stderr.txt"


@pytest.fixture(scope="module")
def exporter_port(values: dict[str, Any], exporter_files: tuple[Path, Path]) -> Iterator[int]:
    """`imageq metrics-exporter` on loopback, in a process of its own."""
    port = free_port()
    command = [sys.executable, "-m", "imageq.cli", "metrics-exporter", "--json"]
    command += ["--address", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, **settings_env(values)}
    stdout, stderr = exporter_files
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
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
    sampler = SlotSampler(exporter_port)
    sampler.start()
    try:
        for worker in workers:
            worker.start()
        jobs = [queue.wait(job_id, timeout_s=40) for job_id in job_ids]
        assert all(job.status is JobStatus.SUCCEEDED for job in jobs)
        # The cap was used to the full while the five jobs passed two at a time, never beyond.
        assert sampler.stop() == CAP
        wait_for(
            lambda: value(scrape(exporter_port), "imageq_jobs_in_flight") == 0,
            timeout_s=20,
            what="no job in flight",
        )
        cluster = scrape(exporter_port)
        by_worker = [scrape(port) for port in ports]
    finally:
        sampler.stop()
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


class SlotSampler:
    """Scrapes the exporter every 20 ms in a thread and keeps the most slots seen held."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.most_held = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float:
        self._done.set()
        self._thread.join(timeout=5)
        return self.most_held

    def _run(self) -> None:
        while not self._done.wait(0.02):
            held = value(scrape(self._port), "imageq_api_slots_held")
            self.most_held = max(self.most_held, held)


def test_exporter_once_json_reads_the_same_gauges(
    values: dict[str, Any], exporter_port: int
) -> None:
    """`--once --json` prints one reading with every cluster gauge, times in ISO 8601 UTC."""
    command = [sys.executable, "-m", "imageq.cli", "metrics-exporter", "--once", "--json"]
    env = {**os.environ, **settings_env(values)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reading = json.loads(done.stdout)
    jsonschema.validate(reading, json.loads(SCHEMA.read_text()))
    assert reading["redis_up"] is True
    assert reading["collected_at"].endswith("Z")
    names = {sample["name"] for sample in reading["samples"]}
    assert names == set(CLUSTER_METRICS)
    served = scrape(exporter_port)
    assert {key[0] for key in served} == names


def test_exporter_says_where_it_serves(
    exporter_port: int, exporter_files: tuple[Path, Path]
) -> None:
    """Serving with --json: one JSON object on stdout, by the schema, naming its URL."""
    stdout, _ = exporter_files
    wait_for(stdout.read_text, timeout_s=10, what="the exporter's line")
    (line,) = stdout.read_text().splitlines()
    said = json.loads(line)
    jsonschema.validate(said, json.loads(SCHEMA.read_text()))
    assert said["serving"] == f"http://127.0.0.1:{exporter_port}/metrics"
    assert said["metrics"] == sorted(CLUSTER_METRICS)
