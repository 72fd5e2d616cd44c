"""The poller mode end to end: polls taken from the schedule in Redis, no message per poll."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from imageq.config import Settings
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.job import Delivery
from imageq.worker.domain.status import JobStatus
from imageq.worker.webhooks.signing import webhook_id
from tests.conftest import API_KEY, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def polled(
    settings_values: dict[str, Any],
    receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ImageQueue, SimulatorServer, WorkerProcess]]:
    """Two workers in poller mode on databases and a simulator of their own."""
    with SimulatorServer(SimConfig(api_key=API_KEY, latency="uniform:0.5,2", seed=5)) as sim:
        values = copy.deepcopy(settings_values)
        server = values["redis"]["broker_url"].rsplit("/", 1)[0]
        values["redis"] = {"broker_url": f"{server}/2", "store_url": f"{server}/4"}
        values["api"]["base_url"] = sim.base_url
        values["polling"]["mode"] = "poller"
        values["observability"] = {"metrics_port": 0, "log_task_lines": True}
        logs = tmp_path_factory.mktemp("poller")
        env = settings_env(values)
        with (
            WorkerProcess(env, logs / "a.log", name="poller-a") as first,
            WorkerProcess(env, logs / "b.log", name="poller-b"),
        ):
            yield ImageQueue(Settings(_env_file=None, **values)), sim, first


def test_jobs_complete_once_without_poll_messages(
    polled: tuple[ImageQueue, SimulatorServer, WorkerProcess], receiver: WebhookReceiver
) -> None:
    """Thirty jobs over two pollers: each succeeds, is accepted once, notified once, and no
    poll ever went through Celery."""
    queue, sim, worker = polled
    job_ids = [
        queue.enqueue(
            f"a castle {n}",
            aspect_ratio="1:1",
            resolution="1K",
            webhook_url=f"{receiver.base_url}/hooks/poller",
        )
        for n in range(30)
    ]
    wait_for(
        lambda: all(queue.get(j).webhook_state == Delivery.SENT for j in job_ids),
        timeout_s=60,
        what="every job notified",
    )
    jobs = [queue.get(job_id) for job_id in job_ids]
    assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}
    accepted = sim.stats()["accepted_submits_by_out_task_id"]
    assert {accepted[job_id] for job_id in job_ids} == {1}
    delivered = receiver.accepted()
    assert {delivered[webhook_id(job_id)] for job_id in job_ids} == {1}
    queries = sim.stats()["queries_by_task_id"]
    assert all(queries[job.remote_task_id or ""] == job.poll_count for job in jobs)
    assert "imageq.poll[" not in worker.log()  # no poll task message was ever run
