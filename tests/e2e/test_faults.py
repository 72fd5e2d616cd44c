"""Fault injection: each scenario runs 50 jobs on a cluster of real processes, breaks one part
on purpose mid-run, and checks that every job still ended right, was accepted by the API once,
and had its result delivered once. Recovery times go to var/fault-results.jsonl."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from imageq.simulator.server import SimulatorServer
from imageq.worker.domain.job import Delivery
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import POLL_TASK
from tests.e2e.cluster import Cluster, cluster

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(240)]
N = 50
SETTLE_S = 150


def in_flight(parts: Cluster, job_ids: list[str]) -> None:
    """Wait until every job is submitted and has been polled at least once."""
    parts.wait(
        job_ids,
        lambda job: job.status is JobStatus.SUBMITTED and job.poll_count >= 1,
        timeout_s=60,
        what="polling",
    )


@pytest.mark.parametrize(
    ("mode", "scenario"),
    [("countdown", "worker SIGKILL, restart"), ("poller", "poller mode: worker SIGKILL, restart")],
)
def test_worker_sigkill_mid_polling_then_restart(tmp_path: Path, mode: str, scenario: str) -> None:
    """SIGKILL loses every countdown the worker held (or, with the poller, the polls it had
    claimed); with the default sweep settings every in-flight job polls again within 30 s."""
    sweep = {"interval_s": 5.0, "grace_s": 15.0}
    with cluster(tmp_path, sweep=sweep, latency="uniform:8,14", polling_mode=mode) as parts:
        job_ids = parts.enqueue(N)
        in_flight(parts, job_ids)
        parts.workers["w0"].kill()
        killed = time.monotonic()
        parts.start_worker("w1")
        parts.time_to_progress(job_ids, timeout_s=60)
        recovery_s = time.monotonic() - killed
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        parts.record(scenario, N, recovery_s=round(recovery_s, 1))
        assert recovery_s <= 30


def test_worker_sigterm_with_a_second_worker_taking_over(tmp_path: Path) -> None:
    """A warm shutdown hands back what the worker held; the other worker carries on."""
    with cluster(tmp_path, workers=2) as parts:
        job_ids = parts.enqueue(N)
        in_flight(parts, job_ids)
        stopped = time.monotonic()
        parts.workers["w0"].stop()
        parts.time_to_progress(job_ids, timeout_s=60)
        recovery_s = time.monotonic() - stopped
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        parts.record("worker SIGTERM, second worker", N, recovery_s=round(recovery_s, 1))


def test_redis_restarted_mid_run(tmp_path: Path) -> None:
    """Redis goes down and comes back (AOF on): workers reconnect, the sweeper re-sends what
    was lost, and every job finishes once."""
    with cluster(tmp_path) as parts:
        job_ids = parts.enqueue(N)
        in_flight(parts, job_ids)
        restarted = time.monotonic()
        parts.restart_redis()
        parts.time_to_progress(job_ids, timeout_s=90)
        recovery_s = time.monotonic() - restarted
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        parts.record("Redis restart (AOF)", N, recovery_s=round(recovery_s, 1))


def test_beat_outlives_redis_down(tmp_path: Path) -> None:
    """Redis is down for several of beat's loops (so a tick lands in the outage): beat stays
    up, says why it waits, and sends the sweeper again once Redis is back. (redbeat alone
    raises, and beat exits: no sweeper until someone restarts it.)"""
    with cluster(tmp_path) as parts:
        assert parts.beat is not None
        log = parts.root / "beat.log"
        parts.redis.stop()
        _wait_for_text(log, "Redis unavailable", after=0, limit_s=30)
        time.sleep(3)  # the outage itself: beat's loop is 1 s, so three more ticks fail
        mark = log.stat().st_size
        parts.redis.start()
        _wait_for_text(log, "Sending due task", after=mark, limit_s=30)
        assert parts.beat.running


def _wait_for_text(path: Path, text: str, *, after: int, limit_s: float) -> None:
    give_up = time.monotonic() + limit_s
    while time.monotonic() < give_up:
        if text.encode() in path.read_bytes()[after:]:
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {path.name} within {limit_s} s")


def test_broker_connections_dropped(tmp_path: Path) -> None:
    """CLIENT KILL drops every connection to Redis mid-run; everyone reconnects."""
    with cluster(tmp_path) as parts:
        job_ids = parts.enqueue(N)
        in_flight(parts, job_ids)
        dropped = time.monotonic()
        killed = parts.drop_connections()
        assert killed > 0
        parts.time_to_progress(job_ids, timeout_s=90)
        recovery_s = time.monotonic() - dropped
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        parts.record("CLIENT KILL", N, recovery_s=round(recovery_s, 1), killed=killed)


def test_api_outage_429_5xx_and_drops(tmp_path: Path) -> None:
    """For a while the API answers 429, 503 or nothing to a third of requests: every job
    still finishes, none is submitted twice."""
    with cluster(tmp_path) as parts:
        parts.simulator.set_faults(rate_429=0.15, rate_503=0.15, rate_drop=0.1)
        job_ids = parts.enqueue(N)
        parts.wait(job_ids, lambda job: job.poll_count >= 2 or job.is_terminal,
                   timeout_s=90, what="polled through the outage")  # fmt: skip
        parts.simulator.set_faults()
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        retried = sum(job.submit_attempts > 1 for job in parts.jobs(job_ids))
        parts.record("API 429/5xx/drops", N, submits_retried=retried)
        assert retried > 0  # the outage really hit the submits


def test_ambiguous_submits_are_adopted_not_repeated(tmp_path: Path) -> None:
    """Every submit's answer is lost after the API accepted it: each job is looked up and
    adopted; the API accepts each job once."""
    with cluster(tmp_path) as parts:
        job_ids = parts.enqueue(N, prompt="a castle sim:submitdrop=1")
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        assert {job.submit_attempts for job in parts.jobs(job_ids)} == {2}
        parts.record("ambiguous submit", N)


def test_webhook_receiver_down_for_a_while(tmp_path: Path) -> None:
    """The receiver answers 503 for a while: deliveries are retried, each lands once."""
    with cluster(tmp_path) as parts:
        parts.receiver.down = True
        job_ids = parts.enqueue(N)
        parts.wait(job_ids, lambda job: len(job.webhook_attempts) >= 2,
                   timeout_s=90, what="retrying their webhook")  # fmt: skip
        parts.receiver.down = False
        back = time.monotonic()
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        assert all(job.webhook_state == Delivery.SENT for job in parts.jobs(job_ids))
        parts.record(
            "webhook receiver down", N, delivered_after_s=round(time.monotonic() - back, 1)
        )


def test_every_poll_message_delivered_twice(tmp_path: Path) -> None:
    """A copy of each job's pending poll message is sent: no chain forks, one result each."""
    with cluster(tmp_path) as parts:
        job_ids = parts.enqueue(N)
        in_flight(parts, job_ids)
        for job in parts.jobs(job_ids):
            if job.status is JobStatus.SUBMITTED:
                parts.queue._app.send_task(POLL_TASK, args=[job.job_id, job.poll_token])
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        queries = parts.simulator.stats()["queries_by_task_id"]
        for job in parts.jobs(job_ids):
            assert job.remote_task_id is not None
            assert queries[job.remote_task_id] <= job.poll_count + 1  # one chain each
        parts.record("poll message twice", N)


def test_api_unreachable_longer_than_the_old_retry_budget(tmp_path: Path) -> None:
    """The API host goes down (connections refused, open ones dropped) while half the jobs
    are being submitted and the other half are polling, and stays down past those jobs'
    deadlines and past the six attempts a submit used to get. The outage is waited out: every
    job is submitted once and succeeds (those whose deadline passed get their last check when
    the API answers again), none fails."""
    overrides = {"polling": {"deadline_s": 8}, "retry": {"outage_window_s": 60}}
    with cluster(tmp_path, latency="uniform:2,4", overrides=overrides) as parts:
        polling = parts.enqueue(N // 2, prompt="polled through")
        in_flight(parts, polling)
        assert isinstance(parts.simulator, SimulatorServer)  # in this process: it can go down
        parts.simulator.refuse_connections()
        down = time.monotonic()
        submitting = parts.enqueue(N // 2, prompt="submitted through")
        try:
            # Down until every deadline of the polling half has passed and every submit has
            # been tried more often than the old budget (6 attempts) allowed.
            parts.wait(polling, lambda job: time.time() > (job.deadline_at or 0) + 1,
                       timeout_s=60, what="past their deadline")  # fmt: skip
            parts.wait(submitting, lambda job: job.submit_attempts > 6,
                       timeout_s=60, what="retried past the old budget")  # fmt: skip
            assert all(not job.is_terminal for job in parts.jobs(polling + submitting))
        finally:
            parts.simulator.accept_connections()
        outage_s = time.monotonic() - down
        job_ids = polling + submitting
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        parts.record("API unreachable", N, outage_s=round(outage_s, 1))


def test_worker_sigkill_mid_submit(tmp_path: Path) -> None:
    """A worker is SIGKILLed while its submit requests are held by the API (which creates the
    tasks all the same): with the default sweep settings every job resumes within 30 s, is
    adopted by a lookup, and is submitted exactly once."""
    sweep = {"interval_s": 5.0, "grace_s": 15.0}
    overrides = {"api": {"read_timeout_s": 8}}
    with cluster(tmp_path, sweep=sweep, latency="uniform:2,4", overrides=overrides) as parts:
        job_ids = parts.enqueue(5, prompt="a castle sim:submitdelay=6")
        # Sent: the simulator holds each job's submit now (its task is created 6 s in).
        held = parts.simulator.stats
        parts.wait(job_ids, lambda job: job.job_id in held()["submits_by_out_task_id"],
                   timeout_s=30, what="sent")  # fmt: skip
        parts.workers["w0"].kill()
        killed = time.monotonic()
        parts.start_worker("w1")
        parts.wait(job_ids, lambda job: job.status is not JobStatus.QUEUED,
                   timeout_s=60, what="submitted")  # fmt: skip
        resumed_s = time.monotonic() - killed
        parts.settle(job_ids, timeout_s=SETTLE_S)
        parts.check(job_ids)
        assert all(job.submit_attempts >= 2 for job in parts.jobs(job_ids))  # taken over
        parts.record("worker SIGKILL mid-submit", 5, recovery_s=round(resumed_s, 1))
        assert resumed_s <= 30
