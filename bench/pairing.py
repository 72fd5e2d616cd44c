"""Rounds grouped for the report: per N and design, and the imageq/naive pairs (the two
rounds of one repetition, on the same jobs, run one after the other). Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.measures import Spread, ratio_spread, spread_of

Result = Mapping[str, Any]


def by_design(results: Sequence[Result], n: int) -> dict[str, list[Result]]:
    """Rounds at N, per design, in repetition order."""
    rounds: dict[str, list[Result]] = {}
    for result in sorted(results, key=lambda r: r["rep"]):
        if result["n"] == n:
            rounds.setdefault(result["design"], []).append(result)
    return rounds


def pairs(results: Sequence[Result], n: int) -> list[tuple[Result, Result]]:
    """(imageq, naive) rounds of the same repetition at N."""
    rounds = by_design(results, n)
    naive = {r["rep"]: r for r in rounds.get("naive", [])}
    return [(r, naive[r["rep"]]) for r in rounds.get("imageq", []) if r["rep"] in naive]


def ns_of(results: Sequence[Result]) -> list[int]:
    return sorted({int(r["n"]) for r in results})


def ratio_spread_at(results: Sequence[Result], n: int, key: str) -> Spread:
    """The per-pair ratios imageq/naive of `key` at N: median, min and max."""
    return ratio_spread(pairs(results, n), key)


def load_range(rounds: Sequence[Result]) -> Spread:
    """The 1-minute load average sampled at each round's start and end, over the rounds (no
    values for rounds of runs that did not sample it)."""
    samples = [r.get(key, math.nan) for r in rounds for key in ("loadavg_start", "loadavg_end")]
    return spread_of(samples)


def load_text(rounds: Sequence[Result]) -> str:
    """`load average 1.20-2.10`, or that it was not measured."""
    found = load_range(rounds)
    if found.count == 0:
        return "load average not measured"
    return f"load average {found.low:.2f}-{found.high:.2f}"
