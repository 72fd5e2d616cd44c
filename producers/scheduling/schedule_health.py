"""The verdict of `imageq health`'s schedules check: pure, from what the scheduler published,
each run's last tick, and the schedule file each live worker reported.

It fails when a scheduled run cannot run or does not: its last tick failed on a worker, a live
worker lacks the scheduler's schedule file (or holds another), or the scheduler has stopped
publishing (no beat runs the schedule).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from imageq.producers.scheduling.schedule_records import Tick
from imageq.producers.scheduling.schedule_view import scheduler_is_stale
from imageq.worker.domain.payload import iso_time

SHOWN_PROBLEMS: Final = 5


def schedule_verdict(
    published: Mapping[str, Any] | None,
    last_ticks: Mapping[str, Tick | None],
    reports: Mapping[str, Mapping[str, Any]],
    live_workers: Collection[str] | None,
    *,
    now: float,
) -> tuple[bool, str]:
    """(ok, detail). `last_ticks`: each run's newest recorded tick; `live_workers`: the workers
    that answered a ping, or None if that is not known (then workers are not compared)."""
    runs = [run["name"] for run in (published or {}).get("runs", [])]
    # Without a published schedule, every run a worker recorded a tick for counts.
    considered = runs if published is not None else sorted(last_ticks)
    problems = [
        _failed_tick(name, tick)
        for name in considered
        if (tick := last_ticks.get(name)) is not None and tick.failed
    ]
    if published is not None and runs:
        if scheduler_is_stale(published, now):
            age_s = now - float(published.get("published_at", 0))
            problems.insert(
                0,
                f"the scheduler ({published.get('host')}) last published its schedule"
                f" {age_s:.0f} s ago, at {iso_time(published.get('published_at'))}:"
                " no beat is running it",
            )
        problems += [
            problem
            for worker in sorted(live_workers or ())
            if (problem := _worker_problem(worker, reports.get(worker), published)) is not None
        ]
    if problems:
        shown = problems[:SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        return False, "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    if published is None:
        return True, "no scheduler has published a schedule"
    if not runs:
        return True, "the scheduler runs no scheduled runs"
    held = "" if live_workers is None else f"; {len(live_workers)} live worker(s) hold it"
    return True, (
        f"{len(runs)} run(s) from {published.get('file')}"
        f" (fingerprint {published.get('fingerprint')}){held}"
    )


def _failed_tick(name: str, tick: Tick) -> str:
    return (
        f"run {name}: last tick failed at {iso_time(tick.at)} on {tick.worker}"
        f" ({tick.reason}): {tick.message}"
    )


def _worker_problem(
    worker: str, report: Mapping[str, Any] | None, published: Mapping[str, Any]
) -> str | None:
    theirs = (
        f"the scheduler's is {published.get('file')} (fingerprint {published.get('fingerprint')})"
    )
    if report is None:
        return f"worker {worker} has not reported its schedule file; {theirs}"
    if report.get("fingerprint") is None:
        return f"worker {worker} cannot run scheduled runs: {report.get('error')}; {theirs}"
    if report.get("fingerprint") != published.get("fingerprint"):
        return (
            f"worker {worker} holds {report.get('file')} (fingerprint"
            f" {report.get('fingerprint')}); {theirs}"
        )
    return None
