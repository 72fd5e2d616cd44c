"""The poller's pool size: a pure rule over one measuring window, and the settings that bound it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imageq.config import Settings
from imageq.worker.poller_sizing import (
    QUIET_WINDOWS,
    RETRY_AFTER,
    PoolLimits,
    Sizing,
    Window,
    next_sizing,
)

LIMITS = PoolLimits(least=16, most=256, cpu_target=0.9)


def window(
    *,
    claims: int = 10,
    full: int = 0,
    peak: int = 16,
    cores: float = 0.3,
    polls: int = 100,
    wall_s: float = 1.0,
) -> Window:
    return Window(
        claims=claims,
        full_claims=full,
        peak_running=peak,
        polls_done=polls,
        cpu_s=cores * wall_s,
        wall_s=wall_s,
    )


def at(size: int) -> Sizing:
    return Sizing(size=size, ceiling=LIMITS.most)


@pytest.mark.parametrize(
    ("size", "seen", "expected"),
    [
        (16, window(full=10, cores=0.3), 24),  # polls wait, CPU to spare: x 1.5 at most
        (16, window(full=5, cores=0.3), 24),  # half the claims full is waiting enough
        (16, window(full=10, cores=0.0), 24),  # no CPU measured yet: the most growth
        (100, window(full=10, cores=0.75, peak=100), 120),  # grow by the spare CPU: 0.9 / 0.75
        (100, window(full=10, cores=0.88, peak=100), 100),  # under 5 % to spare: hold
        (200, window(full=10, cores=0.6, peak=200), 256),  # never above the most
        (16, window(full=4, cores=0.3), 16),  # some claims full, most not: hold
        (100, window(full=10, cores=1.2, peak=100), 75),  # over the target: x 0.75 at most
        (100, window(full=10, cores=1.0, peak=100), 90),  # over by 10 %: 10 % fewer
        (20, window(full=10, cores=2.0, peak=20), 16),  # never below the least
        (100, window(full=0, peak=10), 100),  # one quiet window: hold (the next wave comes)
        (100, window(full=0, peak=60), 100),  # more than half used: hold
        (16, window(claims=0, full=0, peak=0), 16),  # nothing at all: the least
        (64, window(claims=0, full=0, peak=64, cores=0.3), 64),  # all busy, no claim: hold
    ],
)
def test_next_size(size: int, seen: Window, expected: int) -> None:
    """Grows while polls wait and CPU is spare, shrinks over the CPU target or when idle."""
    assert next_sizing(at(size), seen, LIMITS).size == expected


def quiet_for(windows: int, state: Sizing, *, peak: int) -> Sizing:
    for _ in range(windows):
        state = next_sizing(state, window(full=0, peak=peak), LIMITS)
    return state


@pytest.mark.parametrize(
    ("peak", "expected"),
    [(10, 50), (40, 80)],  # halve at most; otherwise towards twice the busiest moment
)
def test_unused_room_is_given_back_after_quiet_windows(peak: int, expected: int) -> None:
    """A lull of a second between waves of polls keeps the size; a long one gives it back."""
    almost = quiet_for(QUIET_WINDOWS - 1, at(100), peak=peak)
    assert almost.size == 100
    assert next_sizing(almost, window(full=0, peak=peak), LIMITS).size == expected


def test_the_shrink_goes_to_twice_the_busiest_quiet_window() -> None:
    state = quiet_for(QUIET_WINDOWS - 2, at(100), peak=10)
    state = next_sizing(state, window(full=0, peak=30), LIMITS)
    assert next_sizing(state, window(full=0, peak=10), LIMITS).size == 60


def test_a_busy_window_starts_the_quiet_count_again() -> None:
    state = quiet_for(QUIET_WINDOWS - 1, at(100), peak=10)
    state = next_sizing(state, window(full=0, peak=60), LIMITS)  # over half the room used
    assert quiet_for(QUIET_WINDOWS - 1, state, peak=10).size == 100
    assert quiet_for(QUIET_WINDOWS, state, peak=10).size == 50


def test_a_growth_that_pays_goes_on_growing() -> None:
    """Polls per second rose with the threads: the growth stays, and the next one is tried."""
    tried = next_sizing(at(16), window(full=10, polls=100), LIMITS)
    assert (tried.size, tried.grown_from, tried.rate_before) == (24, 16, 100.0)
    paid = next_sizing(tried, window(full=10, polls=130, peak=24), LIMITS)
    assert (paid.size, paid.grown_from, paid.rate_before) == (36, 24, 130.0)


def test_a_growth_that_does_not_pay_is_undone_and_kept_from_for_a_while() -> None:
    """Polls still wait but come no faster (a busy host, the GIL): back to the size before,
    which is the ceiling for `RETRY_AFTER` windows; then it tries again."""
    tried = next_sizing(at(16), window(full=10, polls=100), LIMITS)
    undone = next_sizing(tried, window(full=10, polls=110, peak=24), LIMITS)  # + 10 % < 12.5 %
    assert (undone.size, undone.ceiling, undone.grown_from) == (16, 16, None)
    state = undone
    for _ in range(RETRY_AFTER - 1):
        state = next_sizing(state, window(full=10, polls=100), LIMITS)
        assert state.size == 16
    state = next_sizing(state, window(full=10, polls=100), LIMITS)
    assert (state.size, state.ceiling) == (24, 256)


def test_a_growth_that_cleared_the_backlog_stays() -> None:
    """After the growth no poll waited: fewer polls per second is less demand, not a loss."""
    tried = next_sizing(at(16), window(full=10, polls=100), LIMITS)
    after = next_sizing(tried, window(full=0, polls=60, peak=20), LIMITS)
    assert (after.size, after.grown_from) == (24, None)


def test_a_growth_followed_by_a_passing_wave_proves_nothing_and_stays() -> None:
    """Fewer polls per second after a growth, with polls waiting at only some claims: the wave
    of due polls is passing (less demand), not threads polling no faster: the growth is not
    undone, and with polls still waiting at most claims and CPU to spare, it goes on."""
    tried = next_sizing(at(54), window(full=10, polls=495, peak=54), LIMITS)
    assert tried.size == 81
    after = next_sizing(tried, window(claims=12, full=9, polls=300, peak=81), LIMITS)
    assert (after.size, after.ceiling) == (122, LIMITS.most)


def test_grows_from_the_start_to_the_ceiling_in_a_few_windows() -> None:
    """Saturated with CPU to spare, and each growth paying, 16 reaches 256 in 7 windows."""
    state, sizes = Sizing.start(LIMITS), []
    for _ in range(8):
        state = next_sizing(
            state, window(full=10, cores=0.1, peak=state.size, polls=10 * state.size), LIMITS
        )
        sizes.append(state.size)
    assert sizes == [24, 36, 54, 81, 122, 183, 256, 256]


def test_window_rates_of_an_empty_window_are_zero() -> None:
    """A window of no length uses no CPU and polls nothing (no division by zero)."""
    empty = Window(claims=0, full_claims=0, peak_running=0, polls_done=0, cpu_s=0.0, wall_s=0.0)
    assert (empty.cpu_share, empty.poll_rate) == (0.0, 0.0)


def test_fixed_pool_when_least_is_most() -> None:
    """`poller_threads` = `poller_max_threads`: the size never moves."""
    fixed = PoolLimits(least=32, most=32, cpu_target=0.9)
    state = Sizing.start(fixed)
    assert next_sizing(state, window(full=10, cores=0.1, peak=32), fixed).size == 32
    assert next_sizing(state, window(full=0, peak=1), fixed).size == 32


def test_start_above_the_ceiling_is_refused_naming_both() -> None:
    """A starting size over the most is a contradiction, refused with both names."""
    with pytest.raises(ValidationError, match=r"poller_threads \(300\).*poller_max_threads"):
        Settings(_env_file=None, polling={"poller_threads": 300})
    polling = Settings(_env_file=None, polling={"poller_threads": 8, "poller_max_threads": 8})
    assert (polling.polling.poller_threads, polling.polling.poller_max_threads) == (8, 8)
