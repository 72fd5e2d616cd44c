"""Property tests that need a real Redis and worker: the producer stores and queues exactly the
valid jobs, and no fault marker leaves a job stuck. The strategies are those of
tests/unit/test_fuzz.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from hypothesis import given

from imageq.config import Settings
from imageq.devenv.worker_process import WorkerProcess
from imageq.producers.api import ImageQueue
from imageq.producers.jobs import check_reference_urls
from imageq.worker.domain.params import GenerationParams
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import InvalidParams
from tests.conftest import DEADLINE_S
from tests.unit.test_fuzz import IO, PARAMS, check_params, outcome

PUBLIC = "93.184.216.34"


def _no_dns(real: Callable[..., Any]) -> Callable[..., Any]:
    """`getaddrinfo` that reads literal addresses as usual and answers every name with PUBLIC:
    enqueue resolves reference hosts, and generated names must not reach a DNS server."""

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        try:
            return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port or 0))]

    return getaddrinfo


@pytest.fixture(scope="module")
def isolated(settings_values: dict[str, Any]) -> Iterator[tuple[ImageQueue, Settings]]:
    """A queue on databases 10/11 of the test Redis, which no worker consumes; names resolve
    to a public address without asking DNS."""
    server = settings_values["redis"]["broker_url"].rsplit("/", 1)[0]
    values = {
        **settings_values,
        "redis": {"broker_url": f"{server}/10", "store_url": f"{server}/11"},
    }
    isolated_settings = Settings(_env_file=None, **values)
    queue = ImageQueue(isolated_settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _no_dns(socket.getaddrinfo))
        yield queue, isolated_settings
    queue._app.close()


@IO
@given(PARAMS)
def test_enqueue_stores_and_queues_exactly_valid_jobs(
    isolated: tuple[ImageQueue, Settings], call: dict[str, Any]
) -> None:
    """A refused job leaves no record and no message; an accepted one exactly one of each."""
    queue, isolated_settings = isolated
    broker = redis.Redis.from_url(isolated_settings.redis.broker_url)
    store = redis.Redis.from_url(isolated_settings.redis.store_url)
    try:
        broker.flushdb()
        store.flushdb()
        expected: GenerationParams | InvalidParams = check_params(call)
        if isinstance(expected, GenerationParams):
            # Valid parameters may still name a refused address (a generated "https://1/x"
            # is 0.0.0.1): enqueue's own guard decides, as build_job applies it.
            images = expected.reference_images
            refused = outcome(
                lambda: check_reference_urls(isolated_settings, images), InvalidParams
            )
            expected = refused if isinstance(refused, InvalidParams) else expected
        options = {**call, "extra_params": call["extra"]}
        del options["extra"]
        job_id = outcome(lambda: queue.enqueue(**options), InvalidParams)
        if isinstance(job_id, InvalidParams):
            assert isinstance(expected, InvalidParams)
            assert job_id.field == expected.field
            assert broker.llen(isolated_settings.worker.submit_queue) == 0
            assert store.dbsize() == 0
        else:
            assert isinstance(expected, GenerationParams)
            assert broker.llen(isolated_settings.worker.submit_queue) == 1
            assert list(store.scan_iter("imageq:job:*")) == [f"imageq:job:{job_id}".encode()]
            assert queue.get(job_id).status is JobStatus.QUEUED
    finally:
        broker.close()
        store.close()


# -- no stuck job -----------------------------------------------------------------------------

FAULTS = ("sim:pollgarbage=3", "sim:polldrop=2", "sim:poll503=2", "sim:submit503=1")
# Every job is terminal by its deadline (timed_out at worst); the rest is slack.
BOUND_S = DEADLINE_S + 1


@pytest.mark.e2e
def test_no_fault_marker_leaves_a_job_stuck(worker: WorkerProcess, queue: ImageQueue) -> None:
    """Each fault the simulator injects still ends in `succeeded` within a bounded wait (the
    jobs run side by side, so the bound is one job's, not their sum)."""
    jobs = {
        marker: queue.enqueue(f"a lighthouse {marker}", aspect_ratio="2:3", resolution="1K")
        for marker in FAULTS
    }
    give_up = time.monotonic() + BOUND_S
    for marker, job_id in jobs.items():
        job = queue.wait(job_id, timeout_s=max(0.0, give_up - time.monotonic()))
        assert (marker, job.status) == (marker, JobStatus.SUCCEEDED)
        assert job.outputs


@pytest.mark.e2e
def test_huge_retry_after_leaves_no_job_stuck(worker: WorkerProcess, queue: ImageQueue) -> None:
    """A 429 asking for a wait of 1e12 s still lets the job finish within the bound."""
    marker = "sim:submit429=1 sim:retry_after=1000000000000"
    job_id = queue.enqueue(f"a lighthouse {marker}", aspect_ratio="2:3", resolution="1K")
    try:
        assert queue.wait(job_id, timeout_s=BOUND_S).is_terminal
    finally:
        queue.cancel(job_id)  # a no-op once finished; otherwise the stuck job is closed
