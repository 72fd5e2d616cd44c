"""The request budget and the pause on 429: pure arithmetic, the reference for `budget.lua`.

The budget is a token bucket kept as GCRA (the generic cell rate algorithm): one number per
API key, the theoretical arrival time `tat` of the next request, moved on by `1 / rate` for
each request let through. A request may go when `tat` is at most `burst` intervals ahead of
now, so the fleet sends at most `burst + rate * T` requests in any T seconds, and at the rate
exactly while there is demand. One number (not a log of timestamps, as a sliding window needs)
makes the Redis script O(1) per request, whatever the rate.

A request that may not go yet books its turn when it is near (`horizon_s`): `tat` moves on as
if it had gone, and it comes back at its turn and goes without asking the bucket again. So a
saturated budget wastes no turns and a waiting request asks once, not in a loop.

What the provider counts is when requests *arrive*, and a request reaches the API a little
after its turn: the countdown that brings it back, a busy worker, the way there. Requests up to
`late_s` late can make any window hold `rate * late_s` more than the bucket let through, so the
bucket keeps that many of the burst in hand (`held`), plus one for the way to the API, and a
request that would go later than `late_s` after its turn takes a new one instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from imageq.config import BudgetSettings

Kind = Literal["submit", "poll"]
Reason = Literal["free", "budget", "booked", "pause", "probe"]


@dataclass(frozen=True)
class Grant:
    """The budget's answer: go now (`allowed`), or come back in `wait_s`; `probe` marks the one
    request after a pause whose answer ends the pause. `turn_at` is when an allowed request's
    turn was, on the asking process's monotonic clock (it may come a little after it)."""

    allowed: bool
    wait_s: float = 0.0
    reason: Reason = "free"
    probe: bool = False
    turn_at: float = 0.0


def on_time(grant: Grant, *, now: float, late_s: float) -> bool:
    """Whether a request allowed by `grant` may still be sent at `now` (monotonic): at most
    `late_s` after its turn. A probe goes alone, so it is never late."""
    return grant.probe or now - grant.turn_at <= late_s


@dataclass(frozen=True)
class Terms:
    """What one kind of request may use of the bucket: `allowance` requests of the burst, and
    booking at most `horizon_s` ahead."""

    interval_s: float
    allowance: int
    horizon_s: float


def held(budget: BudgetSettings, *, late_s: float) -> int:
    """Requests of the burst kept in hand for requests that reach the API up to `late_s` after
    their turn, and one for the way there (the bucket always lets one through)."""
    if budget.requests_per_s <= 0:
        return 0
    wanted = math.ceil(budget.requests_per_s * late_s - 1e-9) + 1
    return min(wanted, budget.burst - 1)


def terms_for(kind: Kind, budget: BudgetSettings, *, late_s: float) -> Terms:
    """Polls use the burst (less what is `held` for late requests) and the whole horizon; with
    priority `polls` a submit leaves `poll_reserve` of it to polls (at least one request for
    itself) and books only half as far ahead, so polls get the turns nearest now."""
    interval_s = 1.0 / budget.requests_per_s if budget.requests_per_s > 0 else 0.0
    burst = budget.burst - held(budget, late_s=late_s)
    if kind == "poll" or budget.priority == "none":
        return Terms(interval_s, burst, budget.horizon_s)
    allowance = max(1, burst - budget.poll_reserve)
    return Terms(interval_s, allowance, budget.horizon_s / 2)


@dataclass(frozen=True)
class Taken:
    """A bucket decision: the grant, and the theoretical arrival time after it."""

    grant: Grant
    tat: float
    booked_at: float | None = None


def take_turn(tat: float, *, now: float, terms: Terms) -> Taken:
    """One request against the bucket whose next theoretical arrival is `tat` (what the
    script does after the pause and probe checks)."""
    if terms.interval_s <= 0:
        return Taken(Grant(True), tat)
    new_tat = max(tat, now) + terms.interval_s
    ahead_s = new_tat - now - terms.allowance * terms.interval_s
    if ahead_s <= 0:
        return Taken(Grant(True, reason="budget"), new_tat)
    if ahead_s <= terms.horizon_s:
        return Taken(Grant(False, ahead_s, "booked"), new_tat, booked_at=now + ahead_s)
    return Taken(Grant(False, ahead_s - terms.horizon_s, "budget"), tat)


def pause_s(retry_after_s: float | None, *, strikes: int, budget: BudgetSettings) -> float:
    """How long the fleet leaves the key alone after a 429: the server's Retry-After, else
    `pause_base_s` doubled for each 429 in a row before it (`strikes`); capped either way."""
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), budget.pause_max_s)
    return min(budget.pause_base_s * 2.0 ** max(0, strikes), budget.pause_max_s)


def deadline_extension_s(waited_s: float, *, extended_s: float, cap_s: float) -> float:
    """How much to move a job's poll deadline for a poll a pause delayed by `waited_s`, when
    it has been moved by `extended_s` already: all of it, up to `cap_s` in total."""
    return max(0.0, min(waited_s, cap_s - extended_s))
