"""How many polls the poller runs at once: a pure rule over what one measuring window saw.

A poll mostly waits (on the API, on Redis), so a thread count fixed in advance either leaves the
process's CPU idle while due polls queue, or is larger than needed. The poller instead measures,
over each window, whether due polls were waiting for a thread (its claims took all the room they
had), how many polls it finished and how much CPU the whole process used, and resizes by
`next_sizing`: more polls at once while polls wait and the process is under its CPU share, fewer
when it is over that share or when most of the room went unused.

More threads do not always buy more polls: a process that gets less CPU than its share (a busy
host), or whose threads contend for the GIL, polls no faster with more of them, and each one
costs CPU in switching. So every growth is a trial: if due polls wait all through the next
window and it does not finish more polls per second, the pool goes back to its size before, and
takes that as its ceiling for a while (`RETRY_AFTER` windows), after which it may try again.

Room that goes unused is given back slowly: polls come in waves (a batch handed over at once is
polled again every few seconds), and a pool that shrank in the second between two waves meets
the next one small, while due polls wait for it to grow back window by window. So the size
shrinks for low use only after `QUIET_WINDOWS` windows in a row used less than half of it, and
then towards twice the busiest moment of those windows. Keeping the size costs nothing: it is a
limit, and the threads themselves exit when idle (`poller_pool`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

GROW_AT_MOST = 1.5
"""The most one window grows the pool by (x 1.5 per window: 16 to 256 in 7 windows)."""

SHRINK_AT_MOST = 0.75
"""The most one window shrinks the pool by when the process is over its CPU share."""

HEADROOM = 1.05
"""Below this ratio of CPU target to CPU used, growing would only overshoot: hold instead."""

GAIN_SHARE = 0.25
"""A growth pays if the poll rate rises by at least this share of the growth (x 1.5 more
threads: at least 12.5 % more polls per second), and by at least `GAIN_AT_LEAST`."""

GAIN_AT_LEAST = 0.05
"""The least rise in polls per second that counts as a gain, above the windows' noise."""

RETRY_AFTER = 10
"""Windows a ceiling learned from a growth that did not pay is kept before trying again."""

QUIET_WINDOWS = 10
"""Windows in a row with less than half the room used before the pool shrinks for it."""

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
    polls_done: int
    """Polls finished in the window."""
    cpu_s: float
    """CPU time of the whole process (every thread) over the window."""
    wall_s: float
    """The window's length."""

    @property
    def cpu_share(self) -> float:
        """Cores used on average: CPU seconds per second."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def poll_rate(self) -> float:
        """Polls finished per second."""
        return self.polls_done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def always_full(self) -> bool:
        """Every claim filled its room: polls waited for a thread all through the window."""
        return self.claims > 0 and self.full_claims == self.claims

    @property
    def polls_waited(self) -> bool:
        """At least half the claims filled their room: due polls were waiting for a thread."""
        return self.claims > 0 and 2 * self.full_claims >= self.claims


@dataclass(frozen=True)
class Sizing:
    """The pool's size, and what the rule remembers between windows."""

    size: int
    ceiling: int
    """The most it may grow to now: `PoolLimits.most`, or less after a growth that did not pay."""
    grown_from: int | None = None
    """The size before the last window's growth, while that growth is on trial."""
    rate_before: float = 0.0
    """The poll rate of the window before that growth."""
    windows_at_ceiling: int = 0
    """Windows since the ceiling was lowered."""
    quiet_windows: int = 0
    """Windows in a row, up to the last, that used less than half the room."""
    quiet_peak: int = 0
    """The most polls running at once over those windows."""

    @classmethod
    def start(cls, limits: PoolLimits) -> Sizing:
        return cls(size=limits.least, ceiling=limits.most)


def next_sizing(state: Sizing, window: Window, limits: PoolLimits) -> Sizing:
    """The sizing for the next window, from the one just past; the size stays within `limits`.

    A growth on trial after which polls waited all through the next window, and that did not
    raise the poll rate enough, is undone, and its starting size becomes the ceiling. (With
    some claims not full, polls were not waiting all the time: a lower rate is less demand, a
    wave of polls passing, not threads that poll no faster, and the trial proves nothing.)
    Otherwise: over the CPU target, shrink in proportion (at most by `SHRINK_AT_MOST`); polls
    waiting and CPU to spare, grow in proportion to the spare CPU (at most by `GROW_AT_MOST`, up
    to the ceiling), and put the growth on trial; neither, and less than half the room used at
    the busiest moment of each of the last `QUIET_WINDOWS` windows, shrink towards twice that
    peak.
    """
    state = _relax(state, limits)
    size, cpu = state.size, window.cpu_share
    if state.grown_from is not None and window.always_full and not _paid(state, window):
        back = state.grown_from
        return Sizing(size=back, ceiling=max(limits.least, back))
    kept = replace(state, grown_from=None, rate_before=0.0, quiet_windows=0, quiet_peak=0)
    if cpu > limits.cpu_target:
        wanted = math.floor(size * max(SHRINK_AT_MOST, limits.cpu_target / cpu) + _ROUNDING)
        return replace(kept, size=_within(wanted, limits))
    if window.polls_waited:
        spare = limits.cpu_target / cpu if cpu > 0 else GROW_AT_MOST
        if spare < HEADROOM:
            return kept
        grown = math.ceil(size * min(GROW_AT_MOST, spare) - _ROUNDING)
        wanted = min(_within(grown, limits), max(size, state.ceiling))
        if wanted <= size:
            return kept
        return replace(kept, size=wanted, grown_from=size, rate_before=window.poll_rate)
    if 2 * window.peak_running >= size:
        return kept
    quiet = state.quiet_windows + 1
    peak = max(state.quiet_peak, window.peak_running)
    if quiet < QUIET_WINDOWS:
        return replace(kept, quiet_windows=quiet, quiet_peak=peak)
    return replace(kept, size=_within(max(2 * peak, size // 2), limits))


def _paid(state: Sizing, window: Window) -> bool:
    """The growth on trial raised the poll rate by enough to be worth its threads."""
    assert state.grown_from is not None
    growth = state.size / state.grown_from - 1
    needed = max(GAIN_AT_LEAST, GAIN_SHARE * growth)
    return window.poll_rate >= state.rate_before * (1 + needed)


def _relax(state: Sizing, limits: PoolLimits) -> Sizing:
    """A lowered ceiling is forgotten after `RETRY_AFTER` windows: the load may have changed."""
    if state.ceiling >= limits.most:
        return state
    if state.windows_at_ceiling + 1 >= RETRY_AFTER:
        return replace(state, ceiling=limits.most, windows_at_ceiling=0)
    return replace(state, windows_at_ceiling=state.windows_at_ceiling + 1)


def _within(size: int, limits: PoolLimits) -> int:
    return min(limits.most, max(limits.least, size))
