"""The poll-goes-on write's own script (`JobStore.hand_on_poll`, lua/poll_on.lua) against the
general one (`JobStore.apply`, lua/write.lua): the same transition, applied both ways to the same
job in two stores on one Redis, leaves the same keys with the same contents."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from imageq.devenv.redis_server import RedisServer
from imageq.worker.domain import transitions
from imageq.worker.domain.job import Job, JobFields
from imageq.worker.domain.status import JobStatus
from imageq.worker.domain.transitions import Transition
from imageq.worker.errors import JobNotFound
from imageq.worker.messages import PollFacts
from imageq.worker.store.job_store import JobStore

NOW = time.time()
FACTS = PollFacts("task-1", NOW + 180, 3)


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url(3))
    yield client
    client.close()


@pytest.fixture
def stores(client: redis.Redis) -> tuple[JobStore, JobStore]:
    """Two stores (general write, own script) with prefixes of their own."""
    run = uuid.uuid4().hex[:8]
    return (
        JobStore(client, prefix=f"general-{run}", ttl_s=120),
        JobStore(client, prefix=f"own-{run}", ttl_s=120),
    )


def keyspace(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under `prefix` (named without it) with its contents and whether it expires;
    the write's time stamp is checked and set aside (the two writes run a moment apart)."""
    found: dict[str, Any] = {}
    for raw in client.scan_iter(match=f"{prefix}:*"):
        key = _text(raw)
        kind = _text(client.type(key))
        value: Any = kind
        if kind == "hash":
            fields: dict[Any, Any] = client.hgetall(key)
            value = {_text(k): _text(v) for k, v in fields.items()}
            if "updated_at" in value:
                assert abs(json.loads(value.pop("updated_at")) - time.time()) < 60
        elif kind == "zset":
            entries: list[Any] = client.zrange(key, 0, -1, withscores=True)
            value = [(_text(member), score) for member, score in entries]
        ttl = client.ttl(key)
        found[key.removeprefix(prefix)] = (value, ttl > 0 and abs(ttl - 120) <= 2, ttl == -1)
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def submitted(store: JobStore, *, token: int, remote_status: str | None) -> None:
    """A job being polled, as the submit leaves it and a few polls moved it."""
    job = Job(job_id="j1", params={"prompt": "x"}, created_at=NOW - 30)
    assert store.create(job, due_at=NOW)
    changes: JobFields = {
        "status": JobStatus.SUBMITTED,
        "remote_task_id": FACTS.remote_task_id,
        "deadline_at": FACTS.deadline_at,
        "poll_token": token,
        "poll_count": FACTS.poll_count,
        "next_poll_at": NOW - 1,
        "remote_status": remote_status,
    }
    assert store.update("j1", expect={}, changes=changes, due_at=NOW - 1)


def both_ways(stores: tuple[JobStore, JobStore], moving: Transition) -> tuple[bool, bool]:
    general, own = stores
    return bool(general.apply(moving)), own.hand_on_poll(moving)


def same_keyspace(client: redis.Redis, stores: tuple[JobStore, JobStore]) -> dict[str, Any]:
    general, own = (keyspace(client, store._prefix) for store in stores)
    assert general == own
    return own


@pytest.mark.parametrize("before", ["queued", None])
@pytest.mark.parametrize("after", ["running", None])
def test_a_poll_that_goes_on_writes_what_the_general_write_does(
    client: redis.Redis,
    stores: tuple[JobStore, JobStore],
    before: str | None,
    after: str | None,
) -> None:
    """Same hash (a remote status set, replaced or dropped to its default), same due time in
    the in-flight index and the poll schedule, same TTLs."""
    for store in stores:
        submitted(store, token=4, remote_status=before)
    moving = transitions.poll_on(
        "j1", token=4, facts=FACTS, now=NOW, delay_s=4.25, remote_status=after
    )
    assert both_ways(stores, moving) == (True, True)
    keys = same_keyspace(client, stores)
    record, expires, _ = keys[":job:j1"]
    assert expires
    assert (record["poll_token"], record["poll_count"]) == ("5", "4")
    assert ("remote_status" in record) == (after is not None)
    for index in (":in_flight", ":poll_schedule"):
        assert index in keys
    assert stores[1].get("j1").next_poll_at == NOW + 4.25


@pytest.mark.parametrize(
    "case", ["old token", "token not stored", "cancelled"], ids=lambda case: case.replace(" ", "-")
)
def test_a_stale_poll_changes_nothing_either_way(
    client: redis.Redis, stores: tuple[JobStore, JobStore], case: str
) -> None:
    """A message whose token has moved on, or whose job is no longer being polled: both writes
    refuse it and leave everything as it was."""
    for store in stores:
        submitted(store, token=0 if case == "token not stored" else 5, remote_status="queued")
        if case == "cancelled":
            assert store.update("j1", expect={}, changes={"status": JobStatus.CANCELLED})
    token = 4 if case == "old token" else 1
    if case == "cancelled":
        token = 5
    before = same_keyspace(client, stores)
    moving = transitions.poll_on(
        "j1", token=token, facts=FACTS, now=NOW, delay_s=4, remote_status="running"
    )
    assert both_ways(stores, moving) == (False, False)
    assert same_keyspace(client, stores) == before


def test_a_job_that_is_gone_is_not_found_either_way(stores: tuple[JobStore, JobStore]) -> None:
    """No record: both raise `JobNotFound`, and neither creates one."""
    moving = transitions.poll_on("j1", token=1, facts=FACTS, now=NOW, delay_s=4, remote_status=None)
    for store, write in zip(stores, (stores[0].apply, stores[1].hand_on_poll), strict=True):
        with pytest.raises(JobNotFound):
            write(moving)
        assert not store._redis.exists(store.key("j1"))


def test_only_a_poll_that_goes_on_takes_the_own_script(stores: tuple[JobStore, JobStore]) -> None:
    """Any other transition is refused before it reaches Redis."""
    other = Transition("j1", expect={"status": JobStatus.SUBMITTED}, changes={"poll_count": 1})
    with pytest.raises(ValueError, match="not a poll that goes on"):
        stores[1].hand_on_poll(other)
