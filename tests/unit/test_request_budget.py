"""The request budget's arithmetic (GCRA turns, booking, priority), the pause after a 429,
the deadline extension, and the simulator's per-key limit: pure functions, no I/O."""

from __future__ import annotations

import pytest

from imageq.config import BudgetSettings
from imageq.simulator.rate_limit import RateLimits
from imageq.simulator.rate_limit import key_digest as sim_key_digest
from imageq.worker.policy.request_budget import (
    Grant,
    Terms,
    deadline_extension_s,
    held,
    on_time,
    pause_s,
    take_turn,
)
from imageq.worker.policy.request_budget import terms_for as terms_late
from imageq.worker.upstream.gate import key_digest

# Burst 4: with no lateness allowed, one is held for the way to the API, three go at once.
BUDGET = BudgetSettings(requests_per_s=10, burst=4, poll_reserve=1, horizon_s=2, late_s=0)


def terms_for(kind: str, budget: BudgetSettings) -> Terms:
    return terms_late(kind, budget, late_s=budget.late_s)  # type: ignore[arg-type]


def run(kind: str, times: list[float], budget: BudgetSettings = BUDGET) -> list[str]:
    """Each request at its time against one bucket: 'go', or the reason it waits."""
    terms = terms_for(kind, budget)
    tat, out = 0.0, list[str]()
    for now in times:
        taken = take_turn(tat, now=now, terms=terms)
        tat = taken.tat
        out.append("go" if taken.grant.allowed else taken.grant.reason)
    return out


def test_an_idle_bucket_lets_the_burst_through_at_once() -> None:
    """Three at once go (burst 4, one held); the fourth books the next turn, 0.1 s later."""
    assert run("poll", [100.0] * 4) == ["go", "go", "go", "booked"]
    taken = take_turn(100.3, now=100.0, terms=terms_for("poll", BUDGET))
    assert taken.grant.wait_s == pytest.approx(0.1)
    assert taken.booked_at == pytest.approx(100.1)


@pytest.mark.parametrize("seconds", [1.0, 10.0])
def test_at_most_burst_plus_rate_times_t_go_in_any_t_seconds(seconds: float) -> None:
    """Asking every millisecond, with booked turns taken when they come: the grants in any
    window of T seconds are at most burst + rate * T, and the rate exactly over a long run."""
    terms = terms_for("poll", BUDGET)
    tat, granted, booked = 0.0, list[float](), list[float]()
    for ms in range(20_000):
        now = 100 + ms / 1000
        while booked and booked[0] <= now:
            granted.append(booked.pop(0))
        taken = take_turn(tat, now=now, terms=terms)
        tat = taken.tat
        if taken.grant.allowed:
            granted.append(now)
        elif taken.booked_at is not None:
            booked.append(taken.booked_at)
    most = max(sum(1 for t in granted if start <= t < start + seconds) for start in granted)
    assert most <= BUDGET.burst + BUDGET.requests_per_s * seconds
    assert len(granted) == pytest.approx(20 * BUDGET.requests_per_s + terms.allowance, abs=2)


@pytest.mark.parametrize(("rate", "burst"), [(40, 3), (40, 4), (10, 5), (100, 10)])
def test_requests_up_to_late_s_late_still_arrive_within_rate_plus_burst(
    rate: float, burst: int
) -> None:
    """Every turn taken up to `late_s` (0.05 s) after it comes: the arrivals in any 1-second
    window stay within rate + burst, because the bucket holds back what lateness can add."""
    budget = BudgetSettings(requests_per_s=rate, burst=burst, late_s=0.05)
    terms = terms_late("poll", budget, late_s=budget.late_s)
    tat, arrivals, ms = 0.0, list[float](), 0
    for ms in range(10_000):
        now = 100 + ms / 1000
        taken = take_turn(tat, now=now, terms=terms)
        tat = taken.tat
        turn = now if taken.grant.allowed else taken.booked_at
        if turn is not None:
            # Worst case: alternately on time and as late as allowed.
            arrivals.append(turn + (budget.late_s if len(arrivals) % 2 else 0.0))
    arrivals.sort()
    most = max(sum(1 for t in arrivals if start <= t < start + 1) for start in arrivals)
    assert most <= rate + burst


def test_held_keeps_what_lateness_can_add_and_leaves_one_to_go() -> None:
    assert held(BudgetSettings(requests_per_s=40, burst=8), late_s=0.05) == 3
    assert held(BudgetSettings(requests_per_s=40, burst=3), late_s=0.05) == 2
    assert held(BudgetSettings(requests_per_s=10, burst=5), late_s=0.05) == 2
    assert held(BudgetSettings(requests_per_s=0, burst=5), late_s=0.05) == 0


def test_a_turn_is_on_time_until_late_s_after_it() -> None:
    grant = Grant(True, turn_at=50.0)
    assert on_time(grant, now=50.05, late_s=0.05)
    assert not on_time(grant, now=50.051, late_s=0.05)
    assert on_time(Grant(True, probe=True, turn_at=50.0), now=99.0, late_s=0.05)


def test_a_turn_too_far_ahead_is_not_booked() -> None:
    """Past the horizon nothing is booked (the bucket is unchanged): ask again when in reach."""
    terms = Terms(interval_s=0.1, allowance=3, horizon_s=2)
    taken = take_turn(105.0, now=100.0, terms=terms)
    assert not taken.grant.allowed
    assert taken.grant.reason == "budget"
    assert taken.tat == 105.0
    assert taken.booked_at is None
    assert taken.grant.wait_s == pytest.approx(5.1 - 0.3 - 2)


def test_polls_first_submits_leave_the_reserve_and_book_half_as_far() -> None:
    """With priority `polls` a submit may use the burst less poll_reserve (and less the one
    held) and half the horizon."""
    assert terms_for("submit", BUDGET) == Terms(0.1, 2, 1.0)
    assert terms_for("poll", BUDGET) == Terms(0.1, 3, 2.0)
    assert run("submit", [100.0] * 3) == ["go", "go", "booked"]
    fifo = BUDGET.model_copy(update={"priority": "none"})
    assert terms_for("submit", fifo) == terms_for("poll", fifo)


def test_a_reserve_as_large_as_the_burst_leaves_submits_one() -> None:
    """Submits are never locked out altogether."""
    budget = BudgetSettings(requests_per_s=1, burst=2, poll_reserve=5)
    assert terms_for("submit", budget).allowance == 1


def test_no_budget_lets_everything_through() -> None:
    """requests_per_s 0: no bucket."""
    assert run("submit", [1.0] * 50, BudgetSettings()) == ["go"] * 50


@pytest.mark.parametrize(
    ("retry_after_s", "strikes", "expected"),
    [
        (5.0, 0, 5.0),  # the server's word, as is
        (5.0, 4, 5.0),  # strikes do not lengthen a Retry-After
        (600.0, 0, 60.0),  # capped
        (None, 0, 2.0),  # the base
        (None, 1, 4.0),
        (None, 3, 16.0),
        (None, 10, 60.0),  # capped
        (-3.0, 0, 0.0),
    ],
)
def test_pause_after_a_429(retry_after_s: float | None, strikes: int, expected: float) -> None:
    """Retry-After when given, else exponential from the base; never above the cap."""
    budget = BudgetSettings(pause_base_s=2, pause_max_s=60)
    assert pause_s(retry_after_s, strikes=strikes, budget=budget) == expected


@pytest.mark.parametrize(
    ("waited_s", "extended_s", "cap_s", "expected"),
    [(5.0, 0.0, 300.0, 5.0), (5.0, 298.0, 300.0, 2.0), (5.0, 300.0, 300.0, 0.0), (5.0, 0, 0, 0)],
)
def test_deadline_extension_up_to_the_cap(
    waited_s: float, extended_s: float, cap_s: float, expected: float
) -> None:
    """A delayed poll moves the deadline by its delay, never past the cap in total."""
    assert deadline_extension_s(waited_s, extended_s=extended_s, cap_s=cap_s) == expected


def test_the_budget_key_is_a_hash_not_the_key() -> None:
    """The Redis key and the simulator's log name the API key by the same digest."""
    digest = key_digest("sk-secret-123")
    assert "sk-secret" not in digest
    assert len(digest) == 16
    assert digest == sim_key_digest("sk-secret-123")


def test_simulator_limit_answers_429_past_the_rate_with_retry_after() -> None:
    """Five a second: the sixth in the same second is refused with Retry-After 1, and a second
    later the key gets in again; refusals do not count against the window."""
    limits = RateLimits(limit_per_s=5)
    answers = [limits.admit("k", now=10.0 + n / 100) for n in range(7)]
    assert answers[:5] == [(True, None)] * 5
    assert answers[5:] == [(False, 1)] * 2
    assert limits.admit("other", now=10.06) == (True, None)
    assert limits.admit("k", now=11.0) == (True, None)


def test_simulator_forced_429s_come_first() -> None:
    """A forced 429 is answered to the next request, with its Retry-After, then it is over."""
    limits = RateLimits()
    limits.force(count=1, retry_after_s=5)
    assert limits.admit("k", now=0) == (False, 5)
    assert limits.admit("k", now=0) == (True, None)
