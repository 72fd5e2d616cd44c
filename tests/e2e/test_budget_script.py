"""The budget's Lua script on a real Redis: turns, booking, the waiting line, the pause after a
429 with its strikes, and the one probe (the arithmetic is `tests/unit/test_request_budget.py`)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
import redis

from imageq.config import BudgetSettings
from imageq.worker.errors import RateLimited
from imageq.worker.upstream.gate import RequestGate

pytestmark = pytest.mark.e2e


def gate(client: redis.Redis, **budget: object) -> RequestGate:
    """Burst 3 with no lateness allowed: one is held for the way to the API, two go at once."""
    defaults = {"requests_per_s": 10, "burst": 3, "late_s": 0, "pause_on_429": True}
    settings = BudgetSettings(**{**defaults, **budget})
    return RequestGate(client, budget=settings, prefix=f"t{uuid.uuid4().hex}", digest="d")


def test_turns_then_bookings_then_the_waiting_line(store_redis: redis.Redis) -> None:
    """Burst 2 at 10/s: two go, the next ones book turns 0.1 s apart up to the horizon, and
    past it they wait in line, each told a later time than the one before."""
    budget = gate(store_redis, horizon_s=0.35, priority="none")
    grants = [budget.acquire("poll", f"poll:{n}") for n in range(8)]
    assert [g.reason for g in grants] == ["budget"] * 2 + ["booked"] * 3 + ["budget"] * 3
    assert [g.allowed for g in grants[:3]] == [True, True, False]
    booked = [g.wait_s for g in grants[2:5]]
    assert booked == pytest.approx([0.1, 0.2, 0.3], abs=0.02)
    line = [g.wait_s for g in grants[5:]]
    assert line == sorted(line)
    assert line[1] - line[0] == pytest.approx(0.1, abs=0.02)
    again = budget.acquire("poll", "poll:3")
    assert not again.allowed
    assert again.reason == "booked"  # asking early keeps the turn


def test_a_429_pauses_then_one_probe_then_the_rate(store_redis: redis.Redis) -> None:
    """After a 429 with Retry-After every request waits for the pause; then one probe, the
    others wait for it; its success lets the rest through."""
    budget = gate(store_redis, requests_per_s=0)
    first = budget.acquire("submit", "submit:a")
    budget.settle(first, RateLimited("slow down", http_status=429, retry_after_s=0.3))
    paused = budget.acquire("poll", "poll:b")
    assert (paused.allowed, paused.reason) == (False, "pause")
    assert paused.wait_s == pytest.approx(0.3, abs=0.05)
    store_redis.hset(budget._keys[0], "pause_until", "0")  # the pause is over
    probe = budget.acquire("poll", "poll:b")
    assert (probe.allowed, probe.probe) == (True, True)
    waiting = budget.acquire("poll", "poll:c")
    assert (waiting.allowed, waiting.reason) == (False, "probe")
    budget.settle(probe, None)
    assert budget.acquire("poll", "poll:c").allowed


def test_429s_in_a_row_double_the_pause_and_in_flight_ones_do_not(
    store_redis: redis.Redis,
) -> None:
    """Without Retry-After: base, then twice it after a failed probe; a 429 during a pause is
    no new strike. An unused probe lets the next request probe."""
    budget = gate(store_redis, requests_per_s=0, pause_base_s=1)
    no_header = RateLimited("slow down", http_status=429)
    budget.settle(budget.acquire("poll", "p"), no_header)
    budget.settle(budget.acquire("poll", "p"), no_header)  # still paused: in flight before it
    assert budget.acquire("poll", "q").wait_s == pytest.approx(1.0, abs=0.05)
    store_redis.hset(budget._keys[0], "pause_until", "0")
    probe = budget.acquire("poll", "q")
    budget.unused(probe)
    probe = budget.acquire("poll", "r")
    assert probe.probe
    budget.settle(probe, no_header)
    assert budget.acquire("poll", "s").wait_s == pytest.approx(2.0, abs=0.05)


def test_a_late_turn_is_retaken_and_counted_lost(store_redis: redis.Redis) -> None:
    """A request ready more than `late_s` after its turn does not use it: it takes a new turn
    (here the bucket is full, so it books one) and the turn is counted as lost."""
    budget = gate(store_redis, late_s=0.05)
    first = budget.acquire("poll", "poll:a")
    assert first.allowed
    assert budget.retake(first, "poll", "poll:a") is first, "on time: the same grant"
    late = replace(first, turn_at=first.turn_at - 1.0)
    retaken = budget.retake(late, "poll", "poll:a")
    assert retaken is not late
    assert store_redis.hget(f"{budget._keys[0]}", "lost") == b"1"
