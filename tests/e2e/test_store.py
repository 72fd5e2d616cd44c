"""The job store on a real Redis: create once, compare-and-set, TTL, in-flight index."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from imageq.devenv.redis_server import RedisServer
from imageq.worker.domain import submits
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import CorruptRecord, JobNotFound
from imageq.worker.messages import PollFacts
from imageq.worker.steps.poll import poll_facts
from imageq.worker.store.job_store import JobStore, Slot


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
    """Every write refreshes the TTL; due times file the job, `settled` removes it."""
    client = redis.Redis.from_url(redis_server.url(3))
    store.create(new_job())
    assert 0 < client.ttl(store.key("j1")) <= 120
    store.update("j1", expect={}, changes={}, due_at=1234.5)
    assert client.zscore(store.in_flight_key, "j1") == 1234.5
    store.update("j1", expect={}, changes={}, settled=True)
    assert client.zscore(store.in_flight_key, "j1") is None


def test_racing_writers_one_wins(store: JobStore) -> None:
    """Of 20 threads moving the same token, exactly one succeeds."""
    store.create(new_job())
    wins: list[bool] = []
    barrier = threading.Barrier(20)

    def race() -> None:
        barrier.wait()
        wins.append(bool(store.update("j1", expect={"poll_token": 0}, changes={"poll_token": 1})))

    threads = [threading.Thread(target=race) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert wins.count(True) == 1
    assert len(wins) == 20


def test_api_slots_cap_and_release(store: JobStore) -> None:
    """At most `limit` slots are held; a finished job frees its slot; expired slots lapse."""
    for job_id in ("a", "b", "c"):
        store.create(new_job(job_id))
    far = time.time() + 60
    assert store.update("a", expect={}, changes={}, slot=Slot(limit=2, expires_at=far))
    assert store.update("b", expect={}, changes={}, slot=Slot(limit=2, expires_at=far))
    refused = store.update("c", expect={}, changes={"poll_count": 5}, slot=Slot(2, far))
    assert (refused.applied, refused.no_slot) == (False, True)
    assert store.get("c").poll_count == 0
    assert store.update("a", expect={}, changes={}, slot=Slot(limit=2, expires_at=far))  # held
    assert store.slots_in_use() == 2
    store.update("a", expect={}, changes={}, free_slot=True)
    assert store.update("c", expect={}, changes={}, slot=Slot(limit=2, expires_at=far))
    store.update("b", expect={}, changes={}, slot_expires_at=time.time() - 1)
    assert store.slots_in_use() == 1


def test_batch_counts_follow_statuses_and_complete_once(store: JobStore) -> None:
    """Counters move with each status change; only the write finishing the last job completes."""
    assert store.create_batch(Batch("b1", total=2, created_at=1.0))
    assert not store.create_batch(Batch("b1", total=99))
    for job_id in ("x", "y"):
        store.create(replace(new_job(job_id), batch_id="b1"))
    assert store.get_batch("b1") == Batch("b1", total=2, created_at=1.0, counts={"queued": 2})
    first = store.update("x", expect={}, changes={"status": JobStatus.SUCCEEDED})
    assert not first.batch_complete
    again = store.update("x", expect={}, changes={"status": JobStatus.SUCCEEDED})
    assert not again.batch_complete
    last = store.update("y", expect={}, changes={"status": JobStatus.FAILED})
    assert last.batch_complete
    batch = store.get_batch("b1")
    assert batch is not None
    assert batch.counts == {"queued": 0, "succeeded": 1, "failed": 1}
    assert (batch.finished, batch.is_complete) == (2, True)
    late = store.update("y", expect={}, changes={"status": JobStatus.CANCELLED})
    assert not late.batch_complete


def test_defaults_are_not_stored(store: JobStore, redis_server: RedisServer) -> None:
    """A field at its default is left out of the hash (and read back as the default); setting
    one back to its default drops it; compare-and-set and the poll claim see the default."""
    client = redis.Redis.from_url(redis_server.url(3), decode_responses=True)
    store.create(new_job())
    assert sorted(client.hkeys(store.key("j1"))) == [
        "created_at",
        "job_id",
        "metadata",
        "params",
        "status",
    ]
    assert store.update(
        "j1",
        expect={"poll_token": 0, "webhook_lease_until": 0.0, "outputs": []},
        changes={"poll_token": 1, "next_poll_at": 5.0, "webhook_lease_until": 9.0},
    )
    assert client.hget(store.key("j1"), "poll_token") == "1"
    assert store.update(
        "j1", expect={"poll_token": 1}, changes={"poll_token": 0, "webhook_lease_until": 0.0}
    )
    stored = client.hkeys(store.key("j1"))
    assert "poll_token" not in stored
    assert "webhook_lease_until" not in stored
    assert store.get("j1") == replace(
        new_job(), next_poll_at=5.0, updated_at=store.get("j1").updated_at
    )
    claimed = store.claim_due_polls(now=10.0, limit=5, lease_s=1.0)
    assert [(poll.job_id, poll.token) for poll in claimed] == [("j1", 0)]
    client.close()


def test_apply_carries_out_a_transition_once(store: JobStore) -> None:
    """A transition's checked write and its index options go through `apply`; applied again
    (a stale copy), its expectations no longer hold and nothing changes."""
    store.create(new_job())
    far = time.time() + 60
    claim = submits.claim_submit(
        store.get("j1"),
        now=time.time(),
        lease_s=30,
        send_s=None,
        slot=Slot(limit=1, expires_at=far),
    )
    assert claim is not None
    assert store.apply(claim)
    assert store.get("j1").submit_attempts == 1
    assert store.slots_in_use() == 1
    assert not store.apply(claim)
    assert store.get("j1").submit_attempts == 1


def test_a_corrupt_record_is_named_by_get_and_skipped_by_get_many(
    store: JobStore, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """`get` raises CorruptRecord naming the job and the field; `get_many` logs it and gives
    None, as for a record that is gone, so one bad record cannot stop a sweep."""
    client = redis.Redis.from_url(redis_server.url(3))
    store.create(new_job("bad"))
    store.create(new_job("good"))
    client.hset(store.key("bad"), "poll_count", '"seven"')
    with pytest.raises(CorruptRecord) as caught:
        store.get("bad")
    assert (caught.value.record_id, caught.value.field) == ("bad", "poll_count")
    with caplog.at_level("ERROR", logger="imageq.worker.store.job_store"):
        assert store.get_many(["bad", "good", "gone"]) == [None, new_job("good"), None]
    assert "job record 'bad' is corrupt: poll_count" in caplog.text
    client.close()


def test_a_corrupt_poll_token_does_not_stop_the_poll_claims(
    store: JobStore, redis_server: RedisServer
) -> None:
    """A record whose poll token is not a number is left out of the claim and out of the
    indexes; the other due polls are claimed as ever."""
    client = redis.Redis.from_url(redis_server.url(3))
    for job_id in ("bad", "good"):
        store.create(new_job(job_id), due_at=1.0)
        assert store.update(job_id, expect={}, changes={"next_poll_at": 5.0, "poll_token": 2})
    client.hset(store.key("bad"), "poll_token", '"two"')
    claimed = store.claim_due_polls(now=10.0, limit=5, lease_s=1.0)
    assert [(poll.job_id, poll.token) for poll in claimed] == [("good", 2)]
    assert client.zscore(store.poll_schedule_key, "bad") is None
    assert client.zscore(store.in_flight_key, "bad") is None
    client.close()


def test_a_claim_carries_what_the_poll_needs(store: JobStore, redis_server: RedisServer) -> None:
    """The poller's claim reads a submitted job's poll facts in the same step, equal to those the
    record gives; a job that is not submitted, or whose facts do not read, comes without them
    (its poll reads the record, as before)."""
    client = redis.Redis.from_url(redis_server.url(3))
    params = {"prompt": "x", "aspect_ratio": "1:1", "resolution": "1K", "quality": "high"}
    submitted = {
        "status": JobStatus.SUBMITTED,
        "remote_task_id": "t-1",
        "deadline_at": 200.5,
        "submitted_at": 20.25,
        "poll_count": 3,
        "poll_token": 4,
        "next_poll_at": 5.0,
    }
    for job_id in ("live", "queued", "odd"):
        store.create(replace(new_job(job_id), params=params), due_at=1.0)
    assert store.update("live", expect={}, changes=submitted)
    assert store.update("odd", expect={}, changes=submitted)
    assert store.update("queued", expect={}, changes={"next_poll_at": 5.0})
    client.hset(store.key("odd"), "deadline_at", '"soon"')
    claimed = {poll.job_id: poll for poll in store.claim_due_polls(now=10.0, limit=5, lease_s=1)}
    assert claimed["live"].facts == poll_facts(store.get("live"))
    assert claimed["live"].facts == PollFacts("t-1", 200.5, 3, 20.25, "high", "1K")
    assert claimed["live"].token == 4
    assert claimed["queued"].facts is None
    assert claimed["odd"].facts is None
    client.close()
