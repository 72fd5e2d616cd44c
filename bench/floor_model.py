"""The per-poll and per-job floors, from the CPU per call of each piece (`bench.floor`), and a
round's CPU as a multiple of them. Pure: no I/O.

What is counted, per poll: one API GET, one parse of its answer, one compare-and-set (the
poll's checked write, which also records the final status on the last poll).

Per job: one API POST (the submit), polls per job x the per-poll floor (the round's own polls
per job, the simulator's count), one webhook POST (delivered at the first attempt), the job's
four other compare-and-sets (a claim before the submit and its record after; a claim before
the webhook and its record after: the least that keeps "submitted once, notified once" across
a lost worker), and one Celery message (the job's own, which a worker must take from the
broker; counted at the cost of a publish with a countdown, as a receive is not measured
alone). Not counted: reading the job record, the countdown design's publish of each next poll
(`with_poll_publishes` adds it), logs, metrics, events, downloads, retries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# The pieces the floor is made of, in report order, with their labels.
FLOOR_PIECES: Final = ("api_get", "api_post", "webhook_post", "cas", "parse", "publish")
LABELS: Final = {
    "api_get": "API GET (imageq's client, `get_task`)",
    "api_post": "API POST submit (imageq's client, `submit`)",
    "webhook_post": "webhook POST (imageq's sender)",
    "cas": "compare-and-set (the job store's write, as a poll makes it)",
    "parse": "`json.loads` of an answer",
    "publish": "Celery publish with a countdown",
    "get_requests": "GET, raw requests.Session",
    "get_urllib3": "GET, raw urllib3 pool",
    "poll_check": "poll check (HMGET of the token)",
}
# How many of each piece one poll costs at least, and one job beyond its polls.
PER_POLL: Final = {"api_get": 1, "parse": 1, "cas": 1}
PER_JOB: Final = {"api_post": 1, "webhook_post": 1, "cas": 4, "publish": 1}


@dataclass(frozen=True)
class Floor:
    """CPU µs per call of each floor piece, from the run's start and end measurements."""

    start_us: Mapping[str, float]
    end_us: Mapping[str, float]

    @property
    def piece_us(self) -> dict[str, float]:
        """Per piece, the mean of the start and end figures (the start's alone if the end is
        missing)."""
        return {
            name: (value + self.end_us[name]) / 2 if name in self.end_us else value
            for name, value in self.start_us.items()
        }

    def per_poll_s(self) -> float:
        return _cost_s(self.piece_us, PER_POLL)

    def per_job_s(self, polls_per_job: float, *, with_poll_publishes: bool = False) -> float:
        """The per-job floor at `polls_per_job`; `with_poll_publishes` adds a publish per poll
        that goes on (countdown's re-enqueue)."""
        base = _cost_s(self.piece_us, PER_JOB) + polls_per_job * self.per_poll_s()
        if with_poll_publishes:
            base += max(polls_per_job - 1, 0) * self.piece_us["publish"] / 1e6
        return base

    def drift(self) -> float:
        """The per-poll floor at the end over that at the start, minus 1 (NaN if unknown)."""
        if not self.end_us:
            return math.nan
        return _cost_s(self.end_us, PER_POLL) / _cost_s(self.start_us, PER_POLL) - 1


def _cost_s(piece_us: Mapping[str, float], counts: Mapping[str, int]) -> float:
    return sum(piece_us[name] * count for name, count in counts.items()) / 1e6


def floor_of(meta: Mapping[str, Any]) -> Floor | None:
    """The run's floor from results.json's meta, or None for a run that did not measure it."""
    found = meta.get("floor") or {}
    start = found.get("start")
    if not start:
        return None
    end = found.get("end") or {}

    def medians(measured: Mapping[str, Any]) -> dict[str, float]:
        pieces = measured.get("pieces", {})
        return {name: float(pieces[name]["median_us"]) for name in FLOOR_PIECES if name in pieces}

    start_us = medians(start)
    if set(start_us) != set(FLOOR_PIECES):
        return None
    end_us = medians(end)
    return Floor(start_us, end_us if set(end_us) == set(FLOOR_PIECES) else {})


def job_multiple(result: Mapping[str, float], floor: Floor) -> float:
    """A round's worker CPU per job over the per-job floor at its own polls per job."""
    polls, cpu = result.get("polls_per_job", math.nan), result.get("cpu_s_per_job", math.nan)
    if math.isnan(polls) or math.isnan(cpu):
        return math.nan
    return cpu / floor.per_job_s(polls)


def cpu_per_poll_s(result: Mapping[str, float]) -> float:
    """Worker CPU per job / polls per job: all of a job's CPU charged to its polls."""
    polls, cpu = result.get("polls_per_job", math.nan), result.get("cpu_s_per_job", math.nan)
    if math.isnan(polls) or math.isnan(cpu) or polls == 0:
        return math.nan
    return cpu / polls


def poll_multiple(result: Mapping[str, float], floor: Floor) -> float:
    """The round's CPU per poll (as `cpu_per_poll_s`) over the per-poll floor."""
    return cpu_per_poll_s(result) / floor.per_poll_s()
