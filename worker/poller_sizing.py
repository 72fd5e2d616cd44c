"""How many polls the poller runs at once: a pure rule over what one measuring window saw.

A poll mostly waits (on the API, on Redis), so a thread count fixed in advance either leaves the
process's CPU idle while due polls queue, or is larger than needed. The poller instead measures,
over each window, whether due polls were waiting for a thread (its claims took all the room they
had) and how much CPU the whole process used, and resizes by `next_pool_size`: more polls at
once while polls wait and the process is under its CPU share, fewer when it is over that share
or when most of the room went unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GROW_AT_MOST = 1.5
"""The most one window grows the pool by (x 1.5 per window: 16 to 256 in 7 windows)."""

SHRINK_AT_MOST = 0.75
"""The most one window shrinks the pool by when the process is over its CPU share."""

HEADROOM = 1.05
"""Below this ratio of CPU target to CPU used, growing would only overshoot: hold instead."""

_ROUNDING = 1e-9  # 0.9 / 0.75 * 100 is 120.00000000000003 in floats: not a reason for 121


@dataclass(frozen=True)
class PoolLimits:
    """The bounds of the pool and the CPU share (of one core) the process should stay under."""

    least: int
    most: int
    cpu_target: float


@dataclass(frozen=True)
class Window:
    """What the poller saw over one measuring window."""

    claims: int
    """Claims made with room for at least one poll."""
    full_claims: int
    """Of those, the ones that took all the room they had: more polls may have been due."""
    peak_running: int
    """The most polls running (claimed, not yet done) at once."""
    cpu_s: float
    """CPU time of the whole process (every thread) over the window."""
    wall_s: float
    """The window's length."""

    @property
    def cpu_share(self) -> float:
        """Cores used on average: CPU seconds per second."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def polls_waited(self) -> bool:
        """At least half the claims filled their room: due polls were waiting for a thread."""
        return self.claims > 0 and 2 * self.full_claims >= self.claims


def next_pool_size(size: int, window: Window, limits: PoolLimits) -> int:
    """The pool size for the next window, within `limits`.

    Over the CPU target: shrink in proportion (at most by `SHRINK_AT_MOST`). Polls waiting and
    CPU to spare: grow in proportion to the spare CPU (at most by `GROW_AT_MOST`), since the
    CPU a pool uses grows about with the polls it runs. Neither, and less than half the room
    used at the busiest moment: shrink towards twice that peak. Otherwise keep the size.
    """
    cpu = window.cpu_share
    if cpu > limits.cpu_target:
        wanted = math.floor(size * max(SHRINK_AT_MOST, limits.cpu_target / cpu) + _ROUNDING)
    elif window.polls_waited:
        spare = limits.cpu_target / cpu if cpu > 0 else GROW_AT_MOST
        grown = math.ceil(size * min(GROW_AT_MOST, spare) - _ROUNDING)
        wanted = grown if spare >= HEADROOM else size
    elif 2 * window.peak_running < size:
        wanted = max(2 * window.peak_running, size // 2)
    else:
        wanted = size
    return min(limits.most, max(limits.least, wanted))
