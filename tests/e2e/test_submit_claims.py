"""Poller mode's submit schedule on a real Redis: the creating write files the submit, the claim
takes interactive submits before bulk ones and leases them, drops entries with nothing to
submit, and a claim given up goes only while it is still the claim's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from imageq.devenv.redis_server import RedisServer
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import Submit
from imageq.worker.store.job_store import JobStore

pytestmark = pytest.mark.e2e


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    client = redis.Redis.from_url(redis_server.url(3))
    yield JobStore(client, prefix=f"t{uuid.uuid4().hex[:8]}", ttl_s=120)
    client.close()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url(3))
    yield client
    client.close()


def new_job(job_id: str, lane: str = "interactive") -> Job:
    return Job(job_id=job_id, params={"prompt": "x"}, created_at=1.0, lane=lane)


def test_the_creating_write_files_the_submit_in_its_lane(
    store: JobStore, client: redis.Redis
) -> None:
    """With `schedule_submit` the job is in its lane's schedule at its due time; without it (or
    held, with no due time) in none."""
    assert store.create(new_job("i"), due_at=5.0, schedule_submit=True)
    assert store.create(new_job("b", "bulk"), due_at=6.0, schedule_submit=True)
    assert store.create(new_job("plain"), due_at=7.0)
    assert store.create(new_job("held"), schedule_submit=True)
    interactive, bulk = (store.submit_schedule_key(lane) for lane in ("interactive", "bulk"))
    assert client.zrange(interactive, 0, -1, withscores=True) == [(b"i", 5.0)]
    assert client.zrange(bulk, 0, -1, withscores=True) == [(b"b", 6.0)]
    # A second create of a known id writes nothing, its schedule entry included.
    assert not store.create(new_job("plain"), due_at=8.0, schedule_submit=True)
    assert client.zscore(interactive, "plain") is None


def test_interactive_submits_are_claimed_first_and_leased(
    store: JobStore, client: redis.Redis
) -> None:
    """Bulk gets the room interactive leaves; a claimed submit is not claimed again until its
    lease ends, and then it is (a lost poller's claim comes back)."""
    for n in range(3):
        store.create(new_job(f"b{n}", "bulk"), due_at=1.0 + n, schedule_submit=True)
    for n in range(2):
        store.create(new_job(f"i{n}"), due_at=5.0 + n, schedule_submit=True)
    store.create(new_job("later"), due_at=50.0, schedule_submit=True)
    claimed = store.claim_due_submits(now=10.0, limit=3, lease_s=20.0)
    assert [(c.job_id, c.lane) for c in claimed] == [
        ("i0", "interactive"),
        ("i1", "interactive"),
        ("b0", "bulk"),
    ]
    assert {c.lease_until for c in claimed} == {30.0}
    assert client.zscore(store.submit_schedule_key("bulk"), "b0") == 30.0
    again = store.claim_due_submits(now=11.0, limit=10, lease_s=20.0)
    assert [c.job_id for c in again] == ["b1", "b2"]
    assert store.claim_due_submits(now=12.0, limit=10, lease_s=20.0) == []
    lapsed = store.claim_due_submits(now=30.0, limit=10, lease_s=20.0)
    assert sorted(c.job_id for c in lapsed) == ["b0", "i0", "i1"]


def test_entries_with_nothing_to_submit_are_dropped(store: JobStore, client: redis.Redis) -> None:
    """A job submitted or cancelled since, held, or gone is not claimed and leaves the schedule;
    a queued one beside them is claimed."""
    for job_id in ("submitted", "cancelled", "held", "gone", "queued"):
        store.create(new_job(job_id), due_at=1.0, schedule_submit=True)
    assert store.update("submitted", expect={}, changes={"status": JobStatus.SUBMITTED})
    assert store.update("cancelled", expect={}, changes={"status": JobStatus.CANCELLED})
    assert store.update("held", expect={}, changes={"held": True})
    client.delete(store.key("gone"))
    claimed = store.claim_due_submits(now=2.0, limit=10, lease_s=5.0)
    assert [c.job_id for c in claimed] == ["queued"]
    assert client.zrange(store.submit_schedule_key("interactive"), 0, -1) == [b"queued"]


def test_a_claim_given_up_goes_only_while_it_is_the_claims(
    store: JobStore, client: redis.Redis
) -> None:
    """`release_submit` drops the entry the claim leased; an entry filed again since (a retry,
    the sweeper) stays, at its own time."""
    for job_id in ("done", "refiled"):
        store.create(new_job(job_id), due_at=1.0, schedule_submit=True)
    done, refiled = store.claim_due_submits(now=2.0, limit=10, lease_s=5.25)
    store.schedule_submits([Submit("refiled", "interactive", countdown_s=3.0)], now=2.0)
    store.release_submit(done)
    store.release_submit(refiled)
    key = store.submit_schedule_key("interactive")
    assert client.zrange(key, 0, -1, withscores=True) == [(b"refiled", 5.0)]


def test_schedule_submits_files_each_lane(store: JobStore, client: redis.Redis) -> None:
    """Put-offs, retries and the sweeper's submits land in their lanes' schedules."""
    store.schedule_submits(
        [Submit("a", "interactive", 1.5), Submit("b", "bulk"), Submit("a", "interactive", 4.0)],
        now=100.0,
    )
    assert client.zrange(store.submit_schedule_key("interactive"), 0, -1, withscores=True) == [
        (b"a", 101.5)
    ]
    assert client.zrange(store.submit_schedule_key("bulk"), 0, -1, withscores=True) == [
        (b"b", 100.0)
    ]


def test_unindex_takes_a_job_out_of_the_submit_schedules(
    store: JobStore, client: redis.Redis
) -> None:
    """A record gone or corrupt leaves the submit schedule with the other indexes."""
    store.create(replace(new_job("x"), lane="bulk"), due_at=1.0, schedule_submit=True)
    store.unindex("x")
    assert client.zcard(store.submit_schedule_key("bulk")) == 0


def test_the_pollers_claim_takes_due_polls_first_then_submits_in_one_step(
    store: JobStore, client: redis.Redis
) -> None:
    """`claim_due` fills the room with due polls, then with due submits (interactive first),
    each with its own lease; no room left after the polls, no submit claimed."""
    for n in range(2):
        store.create(new_job(f"p{n}"), due_at=1.0)
        assert store.update(f"p{n}", expect={}, changes={"next_poll_at": 2.0 + n})
    store.create(new_job("s-bulk", "bulk"), due_at=1.0, schedule_submit=True)
    store.create(new_job("s-int"), due_at=3.0, schedule_submit=True)
    polls, none = store.claim_due(now=5.0, limit=2, poll_lease_s=1.0, submit_lease_s=9.0)
    assert ([p.job_id for p in polls], none) == (["p0", "p1"], [])
    assert client.zscore(store.poll_schedule_key, "p0") == 6.0
    polls, submits = store.claim_due(now=5.5, limit=3, poll_lease_s=1.0, submit_lease_s=9.0)
    assert polls == []
    assert [(s.job_id, s.lane, s.lease_until) for s in submits] == [
        ("s-int", "interactive", 14.5),
        ("s-bulk", "bulk", 14.5),
    ]
    assert client.zscore(store.submit_schedule_key("bulk"), "s-bulk") == 14.5
