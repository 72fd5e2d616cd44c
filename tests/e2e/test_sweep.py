"""The sweeper against a real Redis and the simulator, with the clock moved by hand: each kind
of lost work is sent again, exactly what was lost, and re-sent work runs once."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
import redis

from imageq.producers.jobs import build_job
from imageq.worker.domain.job import Delivery
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import (
    ScheduleCallback,
    SchedulePoll,
    ScheduleWebhook,
    Submit,
)
from imageq.worker.runtime import Runtime
from imageq.worker.steps.poll import poll
from imageq.worker.steps.submit import submit
from imageq.worker.steps.sweep import sweep
from tests.conftest import step_runtime

GRACE_S = 15.0


@pytest.fixture
def rt(settings_values: dict[str, Any]) -> Runtime:
    return step_runtime(settings_values, dbs=(12, 13), sweep={"grace_s": GRACE_S, "interval_s": 5})


def at(rt: Runtime, when: float) -> Runtime:
    return dataclasses.replace(rt, clock=lambda: when)


def stored(rt: Runtime, prompt: str = "a castle sim:latency=30", **options: Any) -> str:
    job = build_job(
        rt.settings, prompt, aspect_ratio="1:1", resolution="1K", now=time.time(), **options
    )
    assert rt.store.create(job, due_at=time.time())
    return job.job_id


def test_job_never_queued_is_submitted(rt: Runtime) -> None:
    """A producer died between storing and queueing: the sweeper sends the submit."""
    job_id = stored(rt)
    assert sweep(at(rt, time.time() + 1)) == []  # not overdue yet
    assert sweep(at(rt, time.time() + GRACE_S + 1)) == [Submit(job_id, "interactive")]
    assert sweep(at(rt, time.time() + GRACE_S + 2)) == []  # postponed: no resend storm


def test_lost_poll_is_sent_again_once(rt: Runtime) -> None:
    """A worker died holding a poll: the sweeper re-sends it with the current token, and of two
    copies of it only one moves the job."""
    job_id = stored(rt)
    (first_poll,) = submit(rt, job_id)
    assert isinstance(first_poll, SchedulePoll)
    job = rt.store.get(job_id)
    assert job.next_poll_at is not None
    late = at(rt, job.next_poll_at + GRACE_S + 1)
    assert sweep(late) == [SchedulePoll(job_id, 1, 0.0)]
    assert len(poll(rt, job_id, 1)) == 1  # the re-sent poll runs
    assert poll(rt, job_id, 1) == []  # the lost one turning up after all does nothing
    assert rt.store.get(job_id).poll_count == 1


def test_job_long_past_its_deadline_is_timed_out_and_notified(rt: Runtime) -> None:
    """No poll got through until well after the deadline: the sweeper ends the job itself."""
    job_id = stored(rt, callback={"task": "x", "args": [], "kwargs": {}, "options": {}})
    submit(rt, job_id)
    job = rt.store.get(job_id)
    assert job.deadline_at is not None
    actions = sweep(at(rt, job.deadline_at + GRACE_S + 1))
    assert actions == [ScheduleCallback(job_id)]
    assert rt.store.get(job_id).status is JobStatus.TIMED_OUT


def test_pending_webhook_is_sent_again_and_settled_jobs_leave_the_index(rt: Runtime) -> None:
    """A finished job whose webhook message was lost gets it re-sent; a settled job is dropped."""
    job_id = stored(rt, webhook_url="http://127.0.0.1:9/hook")
    submit(rt, job_id)
    job = rt.store.get(job_id)
    assert job.deadline_at is not None
    late = job.deadline_at + GRACE_S + 1
    sweep(at(rt, late))  # times it out; its webhook is now pending, and that message "lost"
    assert rt.store.get(job_id).webhook_state == Delivery.PENDING
    assert sweep(at(rt, late + 2 * GRACE_S + 1)) == [ScheduleWebhook(job_id, 1)]
    rt.store.update(job_id, expect={}, changes={"webhook_state": Delivery.SENT})
    assert sweep(at(rt, late + 4 * GRACE_S + 2)) == []
    assert rt.store.due_jobs(before=late + 10 * GRACE_S, limit=10) == []


def test_one_sweep_at_a_time(rt: Runtime) -> None:
    """The sweep lock is taken by one caller per interval."""
    assert rt.store.acquire_lock("sweep-test", ttl_s=5)
    assert not rt.store.acquire_lock("sweep-test", ttl_s=5)


def test_a_corrupt_record_is_logged_and_skipped(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """One record that cannot be decoded neither stops the sweep nor comes back to every
    sweep: it is logged and leaves the index; a step sent to it drops its message."""
    good, bad, also_bad = stored(rt), stored(rt), stored(rt)
    client = redis.Redis.from_url(rt.settings.redis.store_url)
    client.hset(rt.store.key(bad), "status", '"lost"')
    client.hset(rt.store.key(also_bad), "submit_attempts", "{")
    with caplog.at_level("ERROR"):
        assert sweep(at(rt, time.time() + GRACE_S + 1)) == [Submit(good, "interactive")]
        assert submit(rt, also_bad) == []
    assert f"job record '{bad}' is corrupt: status" in caplog.text
    assert f"job record '{also_bad}' is corrupt: submit_attempts" in caplog.text
    assert rt.store.due_jobs(before=time.time() + 10 * GRACE_S, limit=10) == [good]
    client.close()
