"""Poller mode's submits end to end: taken from the submit schedule with no `imageq.submit`
message on the broker, an old producer's message still submitting once, and the submits a
killed worker's poller had claimed taken again by another, each sent once."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.status import JobStatus
from imageq.worker.runtime import connect_store
from tests.conftest import API_KEY, wait_for
from tests.e2e.test_messages_per_job import publishes

pytestmark = pytest.mark.e2e

GRACE_S = 3.0  # the submit claim's lease: how soon a killed poller's claims come back


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimConfig(api_key=API_KEY, latency="fixed:0.5", seed=11)) as server:
        yield server


@pytest.fixture(scope="module")
def values(
    settings_values: dict[str, Any], own_redis: RedisServer, sim: SimulatorServer
) -> dict[str, Any]:
    """Poller mode on a Redis and a simulator of this module's; no beat, so no sweeper: only
    the submit schedule can bring a job's submit back."""
    values = copy.deepcopy(settings_values)
    values["redis"] = {"broker_url": own_redis.url(0), "store_url": own_redis.url(1)}
    values["api"]["base_url"] = sim.base_url
    values["polling"]["mode"] = "poller"
    values["sweep"] = {"grace_s": GRACE_S, "interval_s": 1.0}
    values["storage"] = {"enabled": False}
    values["observability"] = {"metrics_port": 0, "log_task_lines": True}
    return values


def poller_worker(values: dict[str, Any], log_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(settings_env(values), log_path, name=name)


def queue_in(values: dict[str, Any], mode: str) -> ImageQueue:
    return ImageQueue(Settings(_env_file=None, **{**values, "polling": {"mode": mode}}))


def accepted(sim: SimulatorServer, job_ids: list[str]) -> list[int]:
    counts = sim.stats()["accepted_submits_by_out_task_id"]
    return [counts.get(job_id, 0) for job_id in job_ids]


def test_jobs_are_submitted_with_no_submit_message(
    values: dict[str, Any], own_redis: RedisServer, sim: SimulatorServer, tmp_path: Path
) -> None:
    """Interactive and bulk jobs from a poller-mode producer: each succeeds, accepted once,
    and no task message naming any of them reaches the broker (neither submit nor poll)."""
    queue = queue_in(values, "poller")
    tag = f"nomsg-{uuid.uuid4().hex[:6]}"
    with (
        poller_worker(values, tmp_path / "w.log", "nomsg") as worker,
        publishes(own_redis, tag) as counts,
    ):
        job_ids = [
            queue.enqueue(
                "a castle",
                aspect_ratio="1:1",
                resolution="1K",
                job_id=f"{tag}-{n}",
                lane="bulk" if n % 2 else "interactive",
            )
            for n in range(12)
        ]
        jobs = [queue.wait(job_id, timeout_s=30) for job_id in job_ids]
    assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}
    assert accepted(sim, job_ids) == [1] * len(job_ids)
    assert dict(counts) == {}
    assert "imageq.submit[" not in worker.log()


def test_an_old_producers_submit_message_still_submits_once(
    values: dict[str, Any], own_redis: RedisServer, sim: SimulatorServer, tmp_path: Path
) -> None:
    """A countdown-mode producer sends `imageq.submit`: the poller worker's task runs it, the
    job succeeds, submitted once."""
    queue = queue_in(values, "countdown")
    job_id = f"oldmsg-{uuid.uuid4().hex[:6]}"
    with (
        poller_worker(values, tmp_path / "w.log", "oldmsg"),
        publishes(own_redis, job_id) as counts,
    ):
        queue.enqueue("a castle", aspect_ratio="1:1", resolution="1K", job_id=job_id)
        job = queue.wait(job_id, timeout_s=30)
    assert job.status is JobStatus.SUCCEEDED
    assert accepted(sim, [job_id]) == [1]
    assert dict(counts) == {Settings(_env_file=None, **values).worker.submit_queue: 1}


def test_a_killed_pollers_claimed_submits_are_taken_again(
    values: dict[str, Any], own_redis: RedisServer, sim: SimulatorServer, tmp_path: Path
) -> None:
    """A worker is SIGKILLed while its poller's submits are on their way to the API (held
    there): another worker's poller takes them again once their claims lapse, looks each job
    up, adopts the task the API made, and every job succeeds, accepted once."""
    queue = queue_in(values, "poller")
    tag = f"killed-{uuid.uuid4().hex[:6]}"
    with poller_worker(values, tmp_path / "a.log", "killed-a") as first:
        job_ids = [
            queue.enqueue(
                "a castle sim:submitdelay=1.5",
                aspect_ratio="1:1",
                resolution="1K",
                job_id=f"{tag}-{n}",
            )
            for n in range(4)
        ]
        wait_for(
            lambda: all(sim.stats()["submits_by_out_task_id"].get(j) for j in job_ids),
            timeout_s=10,
            what="every submit on its way to the API",
        )
        first.kill()
    store = connect_store(Settings(_env_file=None, **values))
    claims = store.claim_due_submits(now=time.time(), limit=10, lease_s=GRACE_S)
    assert claims == [], "the killed poller's claims are leased: not claimable yet"
    assert {queue.get(j).status for j in job_ids} == {JobStatus.QUEUED}
    with poller_worker(values, tmp_path / "b.log", "killed-b") as second:
        jobs = [queue.wait(job_id, timeout_s=GRACE_S + 30) for job_id in job_ids]
    assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}
    assert accepted(sim, job_ids) == [1] * len(job_ids)
    assert "imageq.submit[" not in second.log()
