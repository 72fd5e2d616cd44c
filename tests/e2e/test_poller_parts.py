"""The poller in this process against a real Redis and the simulator: follow-ups leave the poll
threads, follow-ups lost with the process are re-sent by the sweeper, and the pool grows while
polls wait, within its CPU share."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from imageq.devenv.redis_server import RedisServer
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.producers.jobs import build_job
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.job import Delivery
from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from imageq.worker.messages import Actions, ScheduleCallback, ScheduleWebhook
from imageq.worker.poller import Clock, Poller
from imageq.worker.runtime import Runtime
from imageq.worker.steps.submit import submit
from imageq.worker.steps.sweep import sweep
from imageq.worker.steps.webhook_attempt import webhook
from imageq.worker.webhooks.signing import webhook_id
from tests.conftest import API_KEY, step_runtime, wait_for

pytestmark = pytest.mark.e2e

GRACE_S = 15.0
CALLBACK = {"task": "x", "args": [], "kwargs": {}, "options": {}}


def poller_runtime(
    settings_values: dict[str, Any], *, api: SimulatorServer | None = None, **polling: Any
) -> Runtime:
    """A poller-mode runtime with short ticks, on `api` if given (else the session's
    simulator)."""
    if api is not None:
        settings_values = {
            **settings_values,
            "api": {**settings_values["api"], "base_url": api.base_url},
        }
    return step_runtime(
        settings_values,
        dbs=(12, 13),
        polling={**settings_values["polling"], "mode": "poller", "poller_tick_s": 0.02, **polling},
        sweep={"grace_s": GRACE_S, "interval_s": 5},
    )


@pytest.fixture
def rt(settings_values: dict[str, Any]) -> Runtime:
    return poller_runtime(settings_values)


def submitted(rt: Runtime, prompt: str, **options: Any) -> str:
    """A job stored and submitted: its first poll is in the poll schedule."""
    job = build_job(
        rt.settings, prompt, aspect_ratio="1:1", resolution="1K", now=time.time(), **options
    )
    assert rt.store.create(job, due_at=time.time())
    submit(rt, job.job_id)
    return job.job_id


@pytest.fixture
def running() -> Iterator[list[Poller]]:
    """Pollers a test starts; stopped after it, pass or fail."""
    pollers: list[Poller] = []
    yield pollers
    for poller in pollers:
        poller.stop()


def start(
    pollers: list[Poller], rt: Runtime, send_now: Any, *, cpu_clock: Clock = time.process_time
) -> Poller:
    later: list[Actions] = []
    poller = Poller(rt, send_now=send_now, send_later=later.append, cpu_clock=cpu_clock)
    pollers.append(poller)
    poller.start()
    return poller


def test_follow_ups_run_off_the_poll_threads(
    rt: Runtime, receiver: WebhookReceiver, running: list[Poller]
) -> None:
    """A poll that finishes a job hands the webhook to a notifier thread, which delivers it once."""
    threads: list[str] = []

    def send_now(actions: Actions) -> None:
        threads.append(threading.current_thread().name)
        for action in actions:
            if isinstance(action, ScheduleWebhook):
                webhook(rt, action.job_id, action.attempt)

    job_id = submitted(rt, "a castle", webhook_url=f"{receiver.base_url}/hooks/notifier")
    start(running, rt, send_now)
    wait_for(
        lambda: rt.store.get(job_id).webhook_state == Delivery.SENT,
        timeout_s=10,
        what="the webhook delivered",
    )
    assert threads
    assert all(name.startswith("imageq-notify") for name in threads)
    assert receiver.accepted()[webhook_id(job_id)] == 1


def test_follow_ups_lost_with_the_process_are_sent_again_by_the_sweeper(
    rt: Runtime, receiver: WebhookReceiver, running: list[Poller]
) -> None:
    """The process dies with a finished job's follow-ups still queued in memory: the terminal
    write left them pending in the in-flight index, so the sweeper sends them again, and the
    webhook reaches the receiver once."""
    lost: list[Actions] = []
    job_id = submitted(
        rt,
        "a castle",
        callback=CALLBACK,
        webhook_url=f"{receiver.base_url}/hooks/lost",
    )
    poller = start(running, rt, lost.append)  # handed over, never sent: lost with the process
    wait_for(lambda: lost, timeout_s=10, what="the follow-ups handed over")
    poller.stop()
    job = rt.store.get(job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert (job.callback_state, job.webhook_state) == (Delivery.PENDING, Delivery.PENDING)
    assert sweep(rt) == []  # not before the grace
    late = dataclasses.replace(rt, clock=lambda: time.time() + GRACE_S + 1)
    resent = sweep(late)
    assert resent == [ScheduleCallback(job_id), ScheduleWebhook(job_id, 1)]
    assert webhook(rt, job_id, 1) == []
    assert webhook(rt, job_id, 1) == []  # the lost one turning up after all sends nothing
    assert rt.store.get(job_id).webhook_state == Delivery.SENT
    assert receiver.accepted()[webhook_id(job_id)] == 1


@pytest.fixture(scope="module")
def slow_api() -> Iterator[SimulatorServer]:
    """A simulator that takes 50 ms to answer, so two threads cannot keep up with 20 jobs."""
    config = SimConfig(api_key=API_KEY, latency="fixed:30", request_delay="fixed:0.05", seed=3)
    with SimulatorServer(config) as sim:
        yield sim


@pytest.mark.parametrize(("cores", "grows"), [(0.0, True), (2.0, False)])
def test_the_pool_grows_while_polls_wait_within_its_cpu_share(
    settings_values: dict[str, Any],
    slow_api: SimulatorServer,
    running: list[Poller],
    cores: float,
    grows: bool,
) -> None:
    """Twenty jobs polled every 0.25 s by two threads on a 50 ms API: polls wait, so the pool
    grows to what the polls need; a process over its CPU share stays at the least instead.

    The CPU clock is given (`cores` per second): this test process also runs Redis clients and
    the simulator's threads, so its own CPU use is not the poller's."""
    rt = poller_runtime(
        settings_values,
        api=slow_api,
        poller_threads=2,
        poller_max_threads=12,
        poller_sizing_s=0.2,
        deadline_s=60,
    )
    for n in range(20):
        submitted(rt, f"a castle {n}")
    before = polls_made(slow_api)
    poller = start(running, rt, list, cpu_clock=lambda: cores * time.monotonic())
    if grows:
        # 80 polls/s at 50 ms each keep about 4 threads busy: it grows past that
        wait_for(lambda: poller.size >= 5, timeout_s=10, what="the pool grown to the demand")
        assert poller.size <= 12
    else:
        # 60 polls at 50 ms on two threads take 1.5 s or more: several windows of waiting polls
        wait_for(lambda: polls_made(slow_api) >= before + 60, timeout_s=10, what="60 polls")
        assert poller.size == 2


def polls_made(sim: SimulatorServer) -> int:
    return sum(sim.stats()["queries_by_task_id"].values())


def test_a_claimed_poll_that_goes_on_reads_no_record(
    settings_values: dict[str, Any],
    slow_api: SimulatorServer,
    redis_server: RedisServer,
    running: list[Poller],
) -> None:
    """The claim brings each poll its facts: 40 polls of jobs that go on reach the API without
    reading a job record (no HGETALL on the Redis server; without the facts each poll makes
    one)."""
    rt = poller_runtime(settings_values, api=slow_api, poller_threads=4, deadline_s=60)
    for n in range(10):
        submitted(rt, f"a castle {n}")
    admin = redis.Redis.from_url(redis_server.url(12))
    reads_before = record_reads(admin)
    before = polls_made(slow_api)
    start(running, rt, list)
    wait_for(lambda: polls_made(slow_api) >= before + 40, timeout_s=15, what="40 polls")
    assert record_reads(admin) == reads_before
    admin.close()


def record_reads(client: redis.Redis) -> int:
    """HGETALL calls the server has run (every database)."""
    return int(client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))


def test_poll_threads_leave_when_idle_and_come_back(
    settings_values: dict[str, Any], running: list[Poller]
) -> None:
    """Six jobs polled to their end: then every poll thread leaves within `poller_idle_s`
    (0.3 s); three more jobs start threads again and are polled to their end too."""
    rt = poller_runtime(settings_values, poller_idle_s=0.3)
    poller = start(running, rt, list)
    for round_ in range(2):
        jobs = [submitted(rt, f"a tower {round_}.{n}") for n in range(6 - 3 * round_)]
        wait_for(finished(rt, jobs), timeout_s=20, what=f"round {round_}'s jobs to end")
        wait_for(lambda: poller.threads == 0, timeout_s=10, what="every poll thread gone")
        assert not [t for t in threading.enumerate() if t.name.startswith("imageq-poll_")]


def finished(rt: Runtime, jobs: list[str]) -> Callable[[], bool]:
    return lambda: all(rt.store.get(job).status in TERMINAL_JOB_STATUSES for job in jobs)


@pytest.fixture(scope="module")
def slower_api() -> Iterator[SimulatorServer]:
    """A simulator that takes half a second to answer each request."""
    config = SimConfig(api_key=API_KEY, latency="fixed:30", request_delay="fixed:0.5", seed=5)
    with SimulatorServer(config) as sim:
        yield sim


@pytest.mark.parametrize("event_loop", [True, False])
def test_a_poll_waiting_for_the_api_holds_no_thread(
    settings_values: dict[str, Any],
    slower_api: SimulatorServer,
    running: list[Poller],
    event_loop: bool,
) -> None:
    """Forty jobs polled at once on an API that answers in 0.5 s: with the event loop their GETs
    wait on one thread and four threads handle the answers, as fast as forty threads that each
    wait for theirs (four of those would take 10 s for 80 polls)."""
    rt = poller_runtime(
        settings_values,
        api=slower_api,
        poller_threads=40,
        poller_max_threads=40,
        poller_event_loop=event_loop,
        poller_loop_threads=4,
        interval_s=0.5,
        jitter_s=0.1,
        deadline_s=60,
    )
    for n in range(40):
        submitted(rt, f"a castle {n}")
    before = polls_made(slower_api)
    started_at = time.monotonic()
    poller = start(running, rt, list)
    peak: list[int] = []

    def polled_twice() -> bool:
        peak.append(poller.threads)
        return polls_made(slower_api) >= before + 80

    wait_for(polled_twice, timeout_s=20, what="80 polls")
    assert time.monotonic() - started_at < 5
    if event_loop:
        assert max(peak) <= 4
    else:
        assert max(peak) >= 30
