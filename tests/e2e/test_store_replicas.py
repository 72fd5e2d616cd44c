"""The job store's acknowledged writes (`wait_replicas`) on a real master, with and without a
replica: durable writes wait for it, others do not, and no acknowledgement is an error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from imageq.devenv.redis_server import RedisServer
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import WriteNotReplicated
from imageq.worker.store.job_store import JobStore

PARAMS = {"prompt": "castle", "aspect_ratio": "1:1", "resolution": "1K", "quality": "high"}
SYNC = ("--repl-diskless-sync-delay", "0")


@pytest.fixture(scope="module")
def master_and_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    with RedisServer(extra_args=SYNC) as master:
        follow = ("--replicaof", "127.0.0.1", str(master.port))
        with RedisServer(extra_args=(*SYNC, *follow)) as replica:
            client = redis.Redis.from_url(master.url(0))
            give_up = time.monotonic() + 10
            while int(client.wait(1, 100)) < 1:
                assert time.monotonic() < give_up, "the replica never synced"
            client.close()
            yield master, replica


def store_on(server: RedisServer, *, wait_replicas: int, timeout_s: float) -> JobStore:
    client = redis.Redis.from_url(server.url(3))
    return JobStore(
        client, prefix="wait", ttl_s=3600, wait_replicas=wait_replicas, wait_timeout_s=timeout_s
    )


def test_durable_writes_reach_the_replica_before_they_return(
    master_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    """With `wait_replicas` 1 a created job and its terminal write are on the replica the
    moment the calls return."""
    master, replica = master_and_replica
    store = store_on(master, wait_replicas=1, timeout_s=2)
    on_replica = redis.Redis.from_url(replica.url(3))
    job_id = f"acked-{time.monotonic_ns()}"
    assert store.create(Job(job_id, PARAMS, created_at=time.time()))
    assert on_replica.exists(store.key(job_id))
    store.update(job_id, expect={"status": JobStatus.QUEUED}, changes={"status": "succeeded"})
    assert on_replica.hget(store.key(job_id), "status") == b'"succeeded"'


def test_without_a_replica_a_durable_write_fails_and_others_go_on(
    redis_server: RedisServer,
) -> None:
    """No replica to acknowledge: `WriteNotReplicated` after the timeout, the write applied on
    the master; a repeat finds it done and still says it is not confirmed; a poll's
    bookkeeping write does not wait."""
    store = store_on(redis_server, wait_replicas=1, timeout_s=0.05)
    job_id = f"unacked-{time.monotonic_ns()}"
    with pytest.raises(WriteNotReplicated, match="acknowledged by 0 of 1") as raised:
        store.create(Job(job_id, PARAMS, created_at=time.time()))
    assert (raised.value.acknowledged, raised.value.required) == (0, 1)
    assert store.get(job_id).status is JobStatus.QUEUED
    with pytest.raises(WriteNotReplicated):
        store.create(Job(job_id, PARAMS, created_at=time.time()))
    started = time.monotonic()
    written = store.update(job_id, expect={"status": JobStatus.QUEUED}, changes={"poll_count": 1})
    assert written.applied
    assert time.monotonic() - started < 0.05 * 20  # not a wait: well under many timeouts


def test_off_by_default(redis_server: RedisServer) -> None:
    """`wait_replicas` 0 (the default): no WAIT, so a single server works as before."""
    store = JobStore(redis.Redis.from_url(redis_server.url(3)), prefix="wait", ttl_s=3600)
    assert store.create(Job(f"plain-{time.monotonic_ns()}", PARAMS, created_at=time.time()))
