"""The poller's pool size: a pure rule over one measuring window, and the settings that bound it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imageq.config import Settings
from imageq.worker.poller_sizing import PoolLimits, Window, next_pool_size

LIMITS = PoolLimits(least=16, most=256, cpu_target=0.9)


def window(
    *, claims: int = 10, full: int = 0, peak: int = 16, cores: float = 0.3, wall_s: float = 1.0
) -> Window:
    return Window(
        claims=claims, full_claims=full, peak_running=peak, cpu_s=cores * wall_s, wall_s=wall_s
    )


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
        (100, window(full=0, peak=10), 50),  # idle: halve at most per window
        (100, window(full=0, peak=40), 80),  # idle: towards twice the peak
        (100, window(full=0, peak=60), 100),  # more than half used: hold
        (16, window(claims=0, full=0, peak=0), 16),  # nothing at all: the least
        (64, window(claims=0, full=0, peak=64, cores=0.3), 64),  # all busy, no claim: hold
    ],
)
def test_next_pool_size(size: int, seen: Window, expected: int) -> None:
    """Grows while polls wait and CPU is spare, shrinks over the CPU target or when idle."""
    assert next_pool_size(size, seen, LIMITS) == expected


def test_grows_from_the_start_to_the_ceiling_in_a_few_windows() -> None:
    """Saturated with CPU to spare, 16 reaches 256 in 7 windows, and stays."""
    size, sizes = 16, []
    for _ in range(8):
        size = next_pool_size(size, window(full=10, cores=0.1, peak=size), LIMITS)
        sizes.append(size)
    assert sizes == [24, 36, 54, 81, 122, 183, 256, 256]


def test_an_empty_window_has_no_cpu_share() -> None:
    """A window of no length uses no CPU (no division by zero)."""
    assert Window(claims=0, full_claims=0, peak_running=0, cpu_s=0.0, wall_s=0.0).cpu_share == 0


def test_fixed_pool_when_least_is_most() -> None:
    """`poller_threads` = `poller_max_threads`: the size never moves."""
    fixed = PoolLimits(least=32, most=32, cpu_target=0.9)
    assert next_pool_size(32, window(full=10, cores=0.1, peak=32), fixed) == 32
    assert next_pool_size(32, window(full=0, peak=1), fixed) == 32


def test_start_above_the_ceiling_is_refused_naming_both() -> None:
    """A starting size over the most is a contradiction, refused with both names."""
    with pytest.raises(ValidationError, match=r"poller_threads \(300\).*poller_max_threads"):
        Settings(_env_file=None, polling={"poller_threads": 300})
    polling = Settings(_env_file=None, polling={"poller_threads": 8, "poller_max_threads": 8})
    assert (polling.polling.poller_threads, polling.polling.poller_max_threads) == (8, 8)
