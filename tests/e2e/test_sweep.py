"""The sweeper against a real Redis and the simulator, with the clock moved by hand: each kind
of lost work is sent again, exactly what was lost, and re-sent work runs once."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
import redis

from imageq.producers.jobs import build_job
from imageq.simulator.server import SimulatorServer
from imageq.worker.domain import submits
from imageq.worker.domain.job import Delivery, Downloads
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import (
    ScheduleCallback,
    ScheduleDownload,
    SchedulePoll,
    ScheduleWebhook,
    Submit,
)
from imageq.worker.policy.leases import Step, lease_s, resume_bound_s, submit_send_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.poll import poll
from imageq.worker.steps.submit import submit
from imageq.worker.steps.sweep import sweep
from tests.conftest import step_runtime

GRACE_S = 15.0
WINDOW_S = 60.0
CALLBACK = {"task": "x", "args": [], "kwargs": {}, "options": {}}


@pytest.fixture
def rt(settings_values: dict[str, Any]) -> Runtime:
    return step_runtime(
        settings_values,
        dbs=(12, 13),
        sweep={"grace_s": GRACE_S, "interval_s": 5},
        retry={"base_delay_s": 0.1, "max_delay_s": 0.5, "outage_window_s": WINDOW_S},
    )


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
    """No poll got through until well after the deadline and the outage window (its last
    check): the sweeper ends the job itself. Within the window it only re-sends the poll."""
    job_id = stored(rt, callback={"task": "x", "args": [], "kwargs": {}, "options": {}})
    submit(rt, job_id)
    job = rt.store.get(job_id)
    assert job.deadline_at is not None
    assert sweep(at(rt, job.deadline_at + GRACE_S + 1)) == [SchedulePoll(job_id, 1, 0.0)]
    actions = sweep(at(rt, job.deadline_at + GRACE_S + WINDOW_S + 1))
    assert actions == [ScheduleCallback(job_id)]
    assert rt.store.get(job_id).status is JobStatus.TIMED_OUT


def test_pending_webhook_is_sent_again_and_settled_jobs_leave_the_index(rt: Runtime) -> None:
    """A finished job whose webhook message was lost gets it re-sent; a settled job is dropped."""
    job_id = stored(rt, webhook_url="http://127.0.0.1:9/hook")
    submit(rt, job_id)
    job = rt.store.get(job_id)
    assert job.deadline_at is not None
    late = job.deadline_at + GRACE_S + WINDOW_S + 1
    sweep(at(rt, late))  # times it out; its webhook is now pending, and that message "lost"
    assert rt.store.get(job_id).webhook_state == Delivery.PENDING
    assert sweep(at(rt, late + 2 * GRACE_S + 1)) == [ScheduleWebhook(job_id, 1)]
    rt.store.update(job_id, expect={}, changes={"webhook_state": Delivery.SENT})
    assert sweep(at(rt, late + 4 * GRACE_S + 2)) == []
    assert rt.store.due_jobs(before=late + 10 * GRACE_S, limit=10) == []


def test_one_sweep_at_a_time(rt: Runtime) -> None:
    """The sweep lock: one holder at a time, released by its holder only."""
    token = rt.store.acquire_lock("sweep-test", ttl_s=5)
    assert token is not None
    assert rt.store.acquire_lock("sweep-test", ttl_s=5) is None
    rt.store.release_lock("sweep-test", "someone else's token")
    assert rt.store.acquire_lock("sweep-test", ttl_s=5) is None  # not released by another
    rt.store.release_lock("sweep-test", token)
    assert rt.store.acquire_lock("sweep-test", ttl_s=5) is not None  # free once released


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


def first_resend(rt: Runtime, since: float) -> tuple[float, list[Any]]:
    """Sweep every interval from `since`, as the beat does; when (s after) and what the first
    sweep that sends anything sends."""
    interval_s = rt.settings.sweep.interval_s
    for tick in range(1, 30):
        if actions := sweep(at(rt, since + tick * interval_s)):
            return tick * interval_s, actions
    raise AssertionError("nothing was ever re-sent")


@pytest.mark.parametrize("step", ["download", "callback", "webhook"])
@pytest.mark.parametrize("webhook_timeout_s", [2.0, 25.0])
def test_a_lost_workers_delivery_work_resumes_within_its_bound(
    settings_values: dict[str, Any], step: Step, webhook_timeout_s: float
) -> None:
    """A worker claimed a download, a callback or a webhook attempt and died: the sweeper hands
    the work on once its lease has ended, within the step's resume bound (20 s by default; a
    webhook whose timeout is longer than the grace is held as long as its request)."""
    rt = step_runtime(
        settings_values,
        dbs=(12, 13),
        sweep={"grace_s": GRACE_S, "interval_s": 5},
        webhook={**settings_values["webhook"], "timeout_s": webhook_timeout_s},
    )
    job_id = stored(rt, callback=CALLBACK, webhook_url="http://127.0.0.1:9/hook")
    claimed_at = time.time()
    lease_until = claimed_at + lease_s(rt.settings, step)
    finished = {"status": JobStatus.SUCCEEDED, "finished_at": claimed_at}
    work: dict[str, dict[str, Any]] = {
        "download": {"downloads_state": Downloads.PENDING, "download_lease_until": lease_until},
        "callback": {"callback_state": Delivery.SENDING, "callback_lease_until": lease_until},
        "webhook": {
            "webhook_state": Delivery.PENDING,
            "webhook_next_at": claimed_at,
            "webhook_lease_until": lease_until,
        },
    }
    rt.store.update(job_id, expect={}, changes={**finished, **work[step]}, due_at=claimed_at)
    after_s, actions = first_resend(rt, claimed_at)
    assert after_s <= resume_bound_s(rt.settings, step)
    assert after_s >= lease_s(rt.settings, step)  # never while the worker may still be at it
    expected = {
        "download": ScheduleDownload(job_id, 1),
        "callback": ScheduleCallback(job_id),
        "webhook": ScheduleWebhook(job_id, 1),
    }
    assert actions == [expected[step]]


def test_a_lost_submit_resumes_by_a_lookup_and_is_sent_once(
    settings_values: dict[str, Any], simulator: SimulatorServer
) -> None:
    """A worker claimed a submit, sent it and died. Within the bound another attempt takes
    over; while the dead worker's request may still land (the default 30 s read timeout) it
    only looks the job up, and it sends the submit itself once that window has closed: the
    API accepts the job once."""
    rt = step_runtime(
        settings_values,
        dbs=(12, 13),
        sweep={"grace_s": GRACE_S, "interval_s": 5},
        api={**settings_values["api"], "read_timeout_s": 30},
    )
    job_id = stored(rt)
    claimed_at = time.time()
    send_s = submit_send_s(rt.settings.api)
    lease = lease_s(rt.settings, "submit")
    claim = submits.claim_submit(
        rt.store.get(job_id), now=claimed_at, lease_s=lease, send_s=send_s, slot=None
    )
    assert claim is not None
    assert rt.store.apply(claim)  # ... and the worker is gone
    after_s, actions = first_resend(rt, claimed_at)
    assert after_s <= resume_bound_s(rt.settings, "submit")
    assert actions == [Submit(job_id, "interactive")]
    (wait,) = submit(at(rt, claimed_at + after_s), job_id)  # a lookup; nothing found
    assert isinstance(wait, Submit)
    assert claimed_at + after_s + wait.countdown_s >= claimed_at + send_s
    assert job_id not in simulator.stats()["accepted_submits_by_out_task_id"]
    (first_poll,) = submit(at(rt, claimed_at + send_s + 0.2), job_id)
    assert isinstance(first_poll, SchedulePoll)
    assert simulator.stats()["accepted_submits_by_out_task_id"][job_id] == 1


def test_a_lost_submit_that_landed_is_adopted_at_once(
    rt: Runtime, simulator: SimulatorServer
) -> None:
    """The dead worker's submit reached the API: the attempt that takes over finds it by the
    job id and adopts it, long before the request window would close."""
    job_id = stored(rt)
    claimed_at = time.time()
    claim = submits.claim_submit(
        rt.store.get(job_id),
        now=claimed_at,
        lease_s=lease_s(rt.settings, "submit"),
        send_s=submit_send_s(rt.settings.api),
        slot=None,
    )
    assert claim is not None
    assert rt.store.apply(claim)
    landed = rt.client.submit(job_id, claim.applied_to(rt.store.get(job_id)).generation_params)
    after_s, _ = first_resend(rt, claimed_at)
    (first_poll,) = submit(at(rt, claimed_at + after_s), job_id)
    assert isinstance(first_poll, SchedulePoll)
    assert rt.store.get(job_id).remote_task_id == landed.task_id
    assert simulator.stats()["accepted_submits_by_out_task_id"][job_id] == 1
