"""The shared in-flight cap, end to end: the API never sees more jobs at once than allowed,
and interactive jobs keep a reserve that a bulk run cannot take."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from imageq.config import Settings
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.status import JobStatus
from tests.conftest import API_KEY, wait_for

pytestmark = pytest.mark.e2e
CAP = 3
RESERVE = 1


@pytest.fixture(scope="module")
def capped(
    settings_values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ImageQueue, SimulatorServer]]:
    """A simulator and a worker of their own, with max_in_flight=3 (1 kept for interactive)."""
    with SimulatorServer(SimConfig(api_key=API_KEY, latency="fixed:0.8", seed=11)) as sim:
        values = copy.deepcopy(settings_values)
        server = values["redis"]["broker_url"].rsplit("/", 1)[0]
        values["redis"] = {"broker_url": f"{server}/8", "store_url": f"{server}/9"}
        values["api"]["base_url"] = sim.base_url
        values["observability"] = {"metrics_port": 0}
        values["limits"] = {
            "max_in_flight": CAP,
            "interactive_reserve": RESERVE,
            "slot_wait_s": 0.1,
        }
        log = tmp_path_factory.mktemp("capped") / "worker.log"
        with WorkerProcess(settings_env(values), log, name="capped"):
            yield ImageQueue(Settings(_env_file=None, **values)), sim


def rows(count: int, prompt: str) -> list[dict[str, Any]]:
    return [
        {"prompt": f"{prompt} {n}", "aspect_ratio": "1:1", "resolution": "1K"} for n in range(count)
    ]


def test_bulk_run_stays_under_the_cap_minus_the_reserve(
    capped: tuple[ImageQueue, SimulatorServer],
) -> None:
    """Twelve bulk jobs: all succeed, and the API never has more than 2 of them at once."""
    queue, sim = capped
    sim.reset()
    report = queue.enqueue_many(rows(12, "bulk"), batch_id="capped-bulk")
    wait_for(lambda: queue.batch(report.batch_id).is_complete, timeout_s=60, what="batch")
    assert queue.batch(report.batch_id).count(JobStatus.SUCCEEDED) == 12
    assert sim.stats()["max_concurrent_unfinished"] == CAP - RESERVE


def test_interactive_job_uses_the_reserve_during_a_bulk_run(
    capped: tuple[ImageQueue, SimulatorServer],
) -> None:
    """While a bulk run fills its share, an interactive job is submitted at once."""
    queue, sim = capped
    sim.reset()
    report = queue.enqueue_many(rows(10, "busy"), batch_id="capped-busy")
    wait_for(
        lambda: queue.batch(report.batch_id).count(JobStatus.SUBMITTED) == CAP - RESERVE,
        timeout_s=10,
        what="the bulk run to fill its share",
    )
    job_id = queue.enqueue("urgent", aspect_ratio="1:1", resolution="1K")
    job = queue.wait(job_id, timeout_s=30)
    assert job.status is JobStatus.SUCCEEDED
    assert job.submitted_at is not None
    assert job.submitted_at - job.created_at < 0.5  # no wait for a bulk job to end
    assert not queue.batch(report.batch_id).is_complete  # the bulk run was still going
    wait_for(lambda: queue.batch(report.batch_id).is_complete, timeout_s=60, what="batch")
    assert sim.stats()["max_concurrent_unfinished"] <= CAP
