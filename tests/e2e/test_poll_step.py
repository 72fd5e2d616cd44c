"""The poll step against a real Redis and the simulator: a poll message carries the job's facts,
so a poll that goes on reads nothing before asking the API, and a stale message still changes
nothing."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import redis

from imageq.producers.jobs import build_job
from imageq.simulator.server import SimulatorServer
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import POLL_TASK, PollFacts, SchedulePoll, message
from imageq.worker.runtime import Runtime
from imageq.worker.steps.poll import poll, poll_facts
from imageq.worker.steps.submit import submit
from tests.conftest import step_runtime


@pytest.fixture
def rt(settings_values: dict[str, Any]) -> Runtime:
    return step_runtime(settings_values, dbs=(14, 15))


def submitted(rt: Runtime, prompt: str = "a castle sim:latency=30") -> tuple[str, SchedulePoll]:
    job = build_job(rt.settings, prompt, aspect_ratio="1:1", resolution="1K", now=time.time())
    assert rt.store.create(job, due_at=time.time())
    (first,) = submit(rt, job.job_id)
    assert isinstance(first, SchedulePoll)
    return job.job_id, first


def polled(actions: list[Any]) -> SchedulePoll:
    """The one follow-up of a poll that goes on: the next poll."""
    (action,) = actions
    assert isinstance(action, SchedulePoll)
    return action


class CountingRedis:
    """The store's client, noting each method called on it (its Lua scripts hold the client
    itself, so the checked write is not noted: only the reads are)."""

    def __init__(self, client: redis.Redis, calls: list[str]) -> None:
        self._client = client
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if callable(attribute):
            self._calls.append(name)
        return attribute


def test_submit_and_polls_hand_on_the_facts(rt: Runtime) -> None:
    job_id, first = submitted(rt)
    job = rt.store.get(job_id)
    facts = PollFacts(
        job.remote_task_id or "", job.deadline_at or 0, 0, job.submitted_at or 0, "high", "1K"
    )
    assert first.facts == poll_facts(job) == facts
    second = polled(poll(rt, job_id, first.token, first.facts))
    assert second.facts == replace(facts, poll_count=1)
    assert rt.store.get(job_id).poll_count == 1


def test_the_message_round_trips_the_facts(rt: Runtime) -> None:
    facts = PollFacts("task-1", 1_800_000_000.5, 3)
    name, args, options = message(SchedulePoll("j1", 4, 2.5, facts), rt.settings.worker)
    assert (name, options) == (POLL_TASK, {"countdown": 2.5})
    assert args[:2] == ["j1", 4]
    assert PollFacts.from_message(args[2]) == facts
    # Without facts (the sweeper's re-sends), the message is the plain one.
    assert message(SchedulePoll("j1", 4, 0.0), rt.settings.worker)[1] == ["j1", 4]


def test_a_poll_that_goes_on_reads_no_record(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id, first = submitted(rt)
    calls: list[str] = []
    monkeypatch.setattr(rt.store, "_redis", CountingRedis(rt.store._redis, calls))
    polled(poll(rt, job_id, first.token, first.facts))
    assert "hgetall" not in calls
    assert calls == ["hmget"]  # the token check: two small fields
    calls.clear()
    polled(poll(rt, job_id, first.token + 1))  # a message without facts reads the record first
    assert "hgetall" in calls


def test_a_message_known_current_reads_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first delivery on time (`check_token=False`): no read at all, only the checked write."""
    job_id, first = submitted(rt)
    calls: list[str] = []
    monkeypatch.setattr(rt.store, "_redis", CountingRedis(rt.store._redis, calls))
    second = polled(poll(rt, job_id, first.token, first.facts, check_token=False))
    assert calls == []
    assert rt.store.get(job_id).poll_token == second.token


def test_an_unchecked_stale_message_moves_nothing(rt: Runtime, simulator: SimulatorServer) -> None:
    """Were a stale message not checked (a job cancelled after its poll was sent), it costs one
    request and its write still changes nothing."""
    job_id, first = submitted(rt)
    second = polled(poll(rt, job_id, first.token, first.facts, check_token=False))
    task_id = rt.store.get(job_id).remote_task_id
    assert task_id is not None
    asked = simulator.stats()["queries_by_task_id"][task_id]
    assert poll(rt, job_id, first.token, first.facts, check_token=False) == []
    assert simulator.stats()["queries_by_task_id"][task_id] == asked + 1
    job = rt.store.get(job_id)
    assert (job.poll_token, job.poll_count) == (second.token, 1)


def test_stale_messages_with_facts_change_nothing(rt: Runtime) -> None:
    job_id, first = submitted(rt)
    second = polled(poll(rt, job_id, first.token, first.facts))
    assert poll(rt, job_id, first.token, first.facts) == []  # the first message again
    assert rt.store.get(job_id).poll_count == 1
    assert rt.store.update(
        job_id, expect={"status": JobStatus.SUBMITTED}, changes={"status": JobStatus.CANCELLED}
    )
    assert poll(rt, job_id, second.token, second.facts) == []  # the job was cancelled
    cancelled = rt.store.get(job_id)
    assert (cancelled.status, cancelled.poll_count) == (JobStatus.CANCELLED, 1)


def test_a_finishing_poll_reads_the_record_and_checks_it(rt: Runtime) -> None:
    job_id, first = submitted(rt, "a castle sim:latency=0")
    poll(rt, job_id, first.token, first.facts)
    done = rt.store.get(job_id)
    assert (done.status, done.poll_count) == (JobStatus.SUCCEEDED, 1)
    assert poll(rt, job_id, first.token, first.facts) == []  # a duplicate finishes nothing
    assert rt.store.get(job_id).finished_at == done.finished_at


def test_a_redelivered_poll_of_a_finished_job_asks_the_api_nothing(
    rt: Runtime, simulator: SimulatorServer
) -> None:
    """A finished job's old poll message, back after a worker was lost (the broker hands it
    out again after its visibility timeout), exits on a token check: no API request."""
    job_id, first = submitted(rt, "a castle sim:latency=0")
    poll(rt, job_id, first.token, first.facts)
    done = rt.store.get(job_id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.remote_task_id is not None
    asked = simulator.stats()["queries_by_task_id"][done.remote_task_id]
    assert poll(rt, job_id, first.token, first.facts) == []
    assert poll(rt, job_id, first.token + 1, first.facts) == []
    assert simulator.stats()["queries_by_task_id"][done.remote_task_id] == asked


def test_a_stale_poll_of_a_job_in_flight_asks_the_api_nothing(
    rt: Runtime, simulator: SimulatorServer
) -> None:
    """A copy of an earlier poll of a job still being polled exits the same way."""
    job_id, first = submitted(rt)
    polled(poll(rt, job_id, first.token, first.facts))
    task_id = rt.store.get(job_id).remote_task_id
    assert task_id is not None
    asked = simulator.stats()["queries_by_task_id"][task_id]
    assert poll(rt, job_id, first.token, first.facts) == []
    assert simulator.stats()["queries_by_task_id"][task_id] == asked


@pytest.mark.parametrize(("sample_s", "chance", "gap_s"), [(0.1, 0.5, 0.2), (1000.0, 0.7, 0.3)])
def test_recent_times_place_the_next_poll(
    settings_values: dict[str, Any], sample_s: float, chance: float, gap_s: float
) -> None:
    """With enough recent times of the job's kind in the store, the next poll is placed in its
    window by them (interval 0.25 +/- 0.05 s here): all of them finishing within the interval
    puts it at the near end, none at the far end; the samples are read once, at the submit."""
    polling = {**settings_values["polling"], "adaptive_chance": chance}
    rt = step_runtime(settings_values, dbs=(14, 15), polling=polling)
    for _ in range(rt.settings.polling.adaptive_min_samples):
        rt.store.add_generation_sample("high", "1K", sample_s, window=100)
    frozen = replace(rt, clock=lambda: 1_800_000_000.0)  # elapsed 0 at the poll: no race
    job_id, first = submitted(frozen)
    assert first.facts is not None
    assert (first.facts.quality, first.facts.resolution) == ("high", "1K")
    calls: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rt.store, "_redis", CountingRedis(rt.store._redis, calls))
        second = polled(poll(frozen, job_id, first.token, first.facts))
    assert second.countdown_s == pytest.approx(gap_s)
    assert "lrange" not in calls
