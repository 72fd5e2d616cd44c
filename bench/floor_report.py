"""The report's floor section: the pieces measured at the run's start and end, the per-poll
and per-job floors, and each design's CPU per job and per poll as multiples of them. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bench import floor_model
from bench.floor_model import FLOOR_PIECES, LABELS, PER_JOB, PER_POLL, Floor
from bench.measures import Spread, median_of, spread_of
from bench.pairing import by_design, ns_of, ratio_spread_at

Result = Mapping[str, Any]
NOT_MEASURED: Final = (
    "The floor was not measured in this run (its results.json has no `floor`: runs before "
    "issue 17 did not measure it), so no floor multiples."
)
ONE_RUN: Final = "one run, no spread"


def job_multiples(rounds: Sequence[Result], floor: Floor) -> Spread:
    """Worker CPU per job over the per-job floor, per round: median and range."""
    return spread_of([floor_model.job_multiple(r, floor) for r in rounds])


def poll_multiples(rounds: Sequence[Result], floor: Floor) -> Spread:
    """CPU per poll (CPU per job / polls per job) over the per-poll floor, per round."""
    return spread_of([floor_model.poll_multiple(r, floor) for r in rounds])


def floor_section(results: Sequence[Result], meta: Mapping[str, Any], floor: Floor | None
                  ) -> list[str]:  # fmt: skip
    lines = ["## The floor, measured in this run", ""]
    if floor is None:
        return [*lines, NOT_MEASURED, ""]
    lines += _pieces_table(meta["floor"], floor)
    lines += ["", *_counted(), "", *_multiples_table(results, floor)]
    lines += _countdown_line(results, meta, floor)
    return [*lines, ""]


def _pieces_table(measured: Mapping[str, Any], floor: Floor) -> list[str]:
    start, end = measured["start"], measured.get("end") or {}

    def cell(found: Mapping[str, Any], name: str) -> str:
        figure = found.get("pieces", {}).get(name)
        if figure is None:
            return "not measured"
        if found["reps"] < 2:
            return f"{figure['median_us']:.0f}"
        return f"{figure['median_us']:.0f} ({figure['min_us']:.0f}-{figure['max_us']:.0f})"

    per_poll = " + ".join(f"{LABELS[name].split(' (')[0]}" for name in PER_POLL)
    lines = [
        f"CPU per call of each piece, in one thread of the benchmark's process, through imageq's "
        f"own API client, job store and webhook sender (`bench.floor`), {start['calls']} calls x "
        f"{start['reps']} interleaved repetitions, at the run's start and again at its end "
        "(1-minute load average before and after each repetition: "
        f"{_loads(start)} at the start, {_loads(end)} at the end).",
        "",
        "| piece | start: µs per call, median (min-max) | end | used: mean (µs) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {LABELS[name]} | {cell(start, name)} | {cell(end, name)} | {floor.piece_us[name]:.0f} |"
        for name in FLOOR_PIECES
    ]
    drift = floor.drift()
    drift_text = "not measured" if math.isnan(drift) else f"{drift:+.1%}"
    lines += [
        "",
        f"**Per-poll floor** ({per_poll}): **{floor.per_poll_s() * 1e3:.3f} ms**; "
        f"from the run's start to its end it moved {drift_text}.",
    ]
    return lines


def _loads(measured: Mapping[str, Any]) -> str:
    loads = measured.get("loadavg")
    if not loads:
        return "not measured"
    return f"{min(loads):.2f}" if min(loads) == max(loads) else f"{min(loads):.2f}-{max(loads):.2f}"


def _counted() -> list[str]:
    job = ", ".join(f"{count} x {LABELS[name].split(' (')[0]}" for name, count in PER_JOB.items())
    return [
        f"**Per-job floor**: {job}, plus polls per job x the per-poll floor (each design's own "
        "polls per job, the simulator's count). The four compare-and-sets are a claim before "
        "the submit and its record after, a claim before the webhook and its record after (the "
        "least that keeps submitted once, notified once across a lost worker); the Celery "
        "message is the job's own, which a worker must take from the broker (priced as a "
        "publish). Not counted: reading the job record, countdown's publish of each next poll, "
        "logs, metrics, events, retries.",
    ]


def _multiples_table(results: Sequence[Result], floor: Floor) -> list[str]:
    lines = [
        "Each design's worker CPU as a multiple of the floor: median (min-max) over its runs "
        "at N. CPU per poll is worker CPU per job ÷ polls per job, so it charges all of a job's "
        "CPU (submit, webhook, writes) to its polls.",
        "",
        "| N | design | runs | polls per job | worker CPU per job (ms) | per-job floor (ms) |"
        " **x per-job floor** | CPU per poll (ms) | x per-poll floor | CPU ratio to naive |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in ns_of(results):
        cpu_ratio = ratio_spread_at(results, n, "cpu_s_per_job")
        for design, rounds in by_design(results, n).items():
            polls = median_of(rounds, "polls_per_job")
            cpu = spread_of([r["cpu_s_per_job"] * 1e3 for r in rounds])
            per_poll = spread_of([floor_model.cpu_per_poll_s(r) * 1e3 for r in rounds])
            if design == "imageq":
                against = cpu_ratio.text(one="one pair, no spread")
            else:
                against = "1" if design == "naive" else "-"
            lines.append(
                f"| {n:,} | {design} | {len(rounds)} | {polls:.2f} | {cpu.text('{:.1f}', one=None)}"
                f" | {floor.per_job_s(polls) * 1e3:.2f}"
                f" | **{job_multiples(rounds, floor).text(one=None)}**"
                f" | {per_poll.text(one=None)} | {poll_multiples(rounds, floor).text(one=None)}"
                f" | {against} |"
            )
    return lines


def _countdown_line(results: Sequence[Result], meta: Mapping[str, Any], floor: Floor
                    ) -> list[str]:  # fmt: skip
    """Countdown's own design re-enqueues each poll: its floor with those publishes."""
    if polling_mode(meta) != "countdown":
        return []
    n = 1000 if 1000 in ns_of(results) else ns_of(results)[-1]
    rounds = by_design(results, n).get("imageq", [])
    if not rounds:
        return []
    polls = median_of(rounds, "polls_per_job")
    design_floor = floor.per_job_s(polls, with_poll_publishes=True)
    multiple = median_of(rounds, "cpu_s_per_job") / design_floor
    return [
        "",
        f"Countdown's design also publishes each next poll (a publish per poll but the last): "
        f"with those counted, the per-job floor at N = {n:,} is {design_floor * 1e3:.2f} ms, "
        f"and imageq's median CPU per job is {multiple:.2f} x it.",
    ]


def polling_mode(meta: Mapping[str, Any]) -> str:
    """imageq's polling mode in the run (older results.json say it only in the facts)."""
    if "polling_mode" in meta:
        return str(meta["polling_mode"])
    return "poller" if "polling mode poller" in meta["facts"].get("imageq", "") else "countdown"


def floor_target(results: Sequence[Result], floor: Floor | None, n: int) -> tuple[str, str, bool]:
    """The issue's floor target at N: (what, measured, met)."""
    what = "worker CPU per job ≤ 3 x the per-job floor (the poller's target; see the floor)"
    if floor is None:
        return what, "not measured", False
    rounds = by_design(results, n).get("imageq", [])
    found = job_multiples(rounds, floor)
    return what, f"{found.text(one=ONE_RUN)} x", found.median <= 3.0
