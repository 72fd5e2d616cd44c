"""The job store on a real Redis: create once, compare-and-set, TTL, in-flight index."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from devenv.redis_server import RedisServer
from worker.errors import JobNotFound
from worker.job import Job
from worker.status import JobStatus
from worker.store import JobStore


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    client = redis.Redis.from_url(redis_server.url(3))
    yield JobStore(client, prefix=f"t{uuid.uuid4().hex[:8]}", ttl_s=120)
    client.close()


def new_job(job_id: str = "j1") -> Job:
    return Job(job_id=job_id, params={"prompt": "x"}, created_at=1.0, metadata={"a": [1, 2]})


def test_create_once_and_read_back(store: JobStore) -> None:
    """A job id can be created once; the record reads back equal."""
    assert store.create(new_job()) is True
    assert store.create(new_job()) is False
    assert store.get("j1") == new_job()


def test_missing_job(store: JobStore) -> None:
    """Reading or updating an unknown job raises JobNotFound."""
    with pytest.raises(JobNotFound):
        store.get("nope")
    with pytest.raises(JobNotFound):
        store.update("nope", expect={}, changes={"poll_count": 1})


def test_compare_and_set(store: JobStore) -> None:
    """Changes apply only when every expected field matches."""
    store.create(new_job())
    assert not store.update("j1", expect={"status": JobStatus.SUBMITTED}, changes={"poll_count": 9})
    assert store.get("j1").poll_count == 0
    assert store.update(
        "j1",
        expect={"status": JobStatus.QUEUED, "poll_token": 0},
        changes={"status": JobStatus.SUBMITTED, "poll_token": 1, "error": None},
    )
    job = store.get("j1")
    assert (job.status, job.poll_token, job.error) == (JobStatus.SUBMITTED, 1, None)
    assert job.updated_at > 0


def test_ttl_and_in_flight_index(store: JobStore, redis_server: RedisServer) -> None:
    """Every write refreshes the TTL; due times file the job, `done` removes it."""
    client = redis.Redis.from_url(redis_server.url(3))
    store.create(new_job())
    assert 0 < client.ttl(store.key("j1")) <= 120
    store.update("j1", expect={}, changes={}, due_at=1234.5)
    assert client.zscore(store.in_flight_key, "j1") == 1234.5
    store.update("j1", expect={}, changes={}, done=True)
    assert client.zscore(store.in_flight_key, "j1") is None


def test_racing_writers_one_wins(store: JobStore) -> None:
    """Of 20 threads moving the same token, exactly one succeeds."""
    store.create(new_job())
    wins: list[bool] = []
    barrier = threading.Barrier(20)

    def race() -> None:
        barrier.wait()
        wins.append(store.update("j1", expect={"poll_token": 0}, changes={"poll_token": 1}))

    threads = [threading.Thread(target=race) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert wins.count(True) == 1
    assert len(wins) == 20
