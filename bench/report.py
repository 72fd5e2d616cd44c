"""The report: medians per N and design, ratios imageq/naive, the issue's targets, a plot."""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from bench.floor_model import floor_of
from bench.floor_report import floor_section
from bench.issue_targets import marginal, stretch, targets
from bench.measures import Spread, median_of, ratio
from bench.pairing import by_design, load_text, ns_of, pairs, ratio_spread_at

Result = Mapping[str, Any]

# (key, label, format) of each row of the per-N tables.
ROWS: Final = (
    ("completed", "jobs completed (succeeded)", "{:.0f}"),
    ("notified_once", "jobs notified exactly once", "{:.0f}"),
    ("notifications_max", "most notifications of one job", "{:.0f}"),
    ("lag_p50_s", "notification lag p50 (s)", "{:.2f}"),
    ("lag_p99_s", "notification lag p99 (s)", "{:.2f}"),
    ("polls_per_job", "polls per job (simulator's count)", "{:.2f}"),
    ("submits_per_job", "accepted submits per job (simulator's count)", "{:.2f}"),
    ("submits_max", "most accepted submits of one job", "{:.0f}"),
    ("cpu_s_per_job", "worker CPU-seconds per job", "{:.4f}"),
    ("idle_cpu_ms_per_s", "worker CPU when idle, all processes (ms per s)", "{:.0f}"),
    ("rss_peak_mb", "worker peak RSS, all processes (MB)", "{:.1f}"),
    ("rss_growth_kb_per_job", "worker RSS growth per in-flight job (KB)", "{:.2f}"),
    ("redis_kb_per_job", "Redis memory per in-flight job (KB)", "{:.2f}"),
    ("peak_poll_rate", "peak poll rate (polls/s, 2 s windows)", "{:.0f}"),
    ("peak_in_flight", "most jobs in flight at once (API accepted, not yet notified)", "{:.0f}"),
    ("submit_s", "time to hand over the N jobs (s)", "{:.1f}"),
    ("all_notified_s", "hand-over to last notification (s)", "{:.1f}"),
    ("machine_busy_pct", "machine CPU busy in the round (% of all cores)", "{:.0f}"),
)
PLOTTED: Final = (("lag_p99_s", "notification lag p99 (s)"), ("cpu_s_per_job", "CPU-s per job"))


def ratios(results: Sequence[Result]) -> dict[int, dict[str, Spread]]:
    """Per N, per metric: the per-pair ratios imageq/naive, median and range."""
    return {n: {key: ratio_spread_at(results, n, key) for key, _, _ in ROWS}
            for n in ns_of(results)}  # fmt: skip


MARGINAL: Final = (
    ("rss_growth_kb_per_job", "worker RSS growth per job, marginal from the next smaller N (KB)"),
    ("redis_kb_per_job", "Redis memory per job, marginal from the next smaller N (KB)"),
)


def _cell(value: float, form: str) -> str:
    return "-" if math.isnan(value) else form.format(value)


def table(results: Sequence[Result], n: int) -> list[str]:
    rounds = by_design(results, n)
    count = len(pairs(results, n))
    at_n = [r for found in rounds.values() for r in found]
    if count == 1:
        about = "one imageq/naive pair: ratios without spread, not a reproducible figure"
    else:
        about = f"{count} imageq/naive pairs: ratio = median of the per-pair ratios (min-max)"
    ratio_at = ratios(results)[n]
    lines = [
        f"### N = {n:,} in flight ({about}; {load_text(at_n)})",
        "",
        "| metric | imageq | naive | ratio imageq/naive |",
        "|---|---:|---:|---:|",
    ]
    for key, label, form in ROWS:
        imageq = median_of(rounds.get("imageq", []), key)
        naive = median_of(rounds.get("naive", []), key)
        lines.append(
            f"| {label} | {_cell(imageq, form)} | {_cell(naive, form)} |"
            f" {ratio_at[key].text(one='one pair')} |"
        )
    for key, label in MARGINAL:
        imageq, naive = (marginal(results, design, key, n) for design in ("imageq", "naive"))
        if not math.isnan(imageq):  # NaN at the smallest N
            lines.append(
                f"| {label} | {imageq:.2f} | {_cell(naive, '{:.2f}')} |"
                f" {_cell(ratio(imageq, naive), '{:.2f}')} (of medians) |"
            )
    return [*lines, ""]


def capacity(results: Sequence[Result], meta: Mapping[str, Any]) -> list[str]:
    """Where imageq's lag p99 leaves the bound, per worker process, at the production cadence."""
    bound, processes = meta["lag_target_s"], meta["processes"]
    # Polls per second per job grow as the schedule shrinks: N jobs in flight at a schedule
    # `speedup` times faster load the workers as `speedup` x N would at production's.
    speedup = meta["production_interval_s"] / meta["interval_s"]
    per_process = {n: n / processes * speedup for n in ns_of(results)}
    lag = {n: median_of(by_design(results, n).get("imageq", []), "lag_p99_s") for n in per_process}
    within = [n for n in per_process if lag[n] <= bound]
    beyond = [n for n in per_process if not lag[n] <= bound]
    lines = ["| N | production-equivalent in flight per process | lag p99 (s) | within bound |",
             "|---:|---:|---:|:---:|"]  # fmt: skip
    lines += [
        f"| {n:,} | {per_process[n]:,.0f} | {lag[n]:.2f} | {'✅' if n in within else '❌'} |"
        for n in per_process
    ]
    lines += ["", _capacity_sentence(within, beyond, per_process), ""]
    top = ns_of(results)[-1]
    if top in beyond:
        lines += [_saturation(results, top, speedup=speedup, processes=processes), ""]
    return lines


def _saturation(results: Sequence[Result], top: int, *, speedup: float, processes: int) -> str:
    """What the poll rate at saturation means in jobs in flight: a job of this mix is polled
    P times (unloaded, at the smallest N) over its time in flight T (its generation time and
    the lag, at production timing), so each holds P / T polls/s of a worker's capacity."""
    imageq = by_design(results, top).get("imageq", [])
    rate = median_of(imageq, "peak_poll_rate") / processes
    unloaded = by_design(results, ns_of(results)[0]).get("imageq", [])
    polls = median_of(unloaded, "polls_per_job")
    in_flight_s = median_of(unloaded, "generation_s_mean") + median_of(unloaded, "lag_p50_s")
    in_flight_s *= speedup
    jobs = rate * in_flight_s / polls
    return (
        f"Saturated at N = {top:,}, each process answered at most {rate:.0f} polls/s. A job of "
        f"this mix is polled {polls:.1f} times over its ≈ {in_flight_s:.0f} s in flight at "
        f"production timing, so that rate carries ≈ {jobs:,.0f} jobs in flight per process "
        "before polls queue (an upper estimate: lag p99 reaches the bound somewhat before that)."
    )


def _capacity_sentence(
    within: Sequence[int], beyond: Sequence[int], per_process: Mapping[int, float]
) -> str:
    if within and not beyond:
        return (
            f"Lag p99 stayed within the bound at every N run, up to {per_process[max(within)]:,.0f}"
            " production-equivalent jobs in flight per worker process: capacity is at least that."
        )
    if not within:
        return (
            f"Lag p99 exceeded the bound at every N run, from {per_process[min(beyond)]:,.0f}"
            " production-equivalent jobs in flight per worker process: capacity is below that."
        )
    low = max(within)
    higher = [n for n in beyond if n > low]
    if not higher:  # beyond only below a point within: noise, not a threshold
        return (
            f"Lag p99 was within the bound up to N = {low:,} but beyond it at N = "
            f"{', '.join(f'{n:,}' for n in beyond)}: not monotone, rerun with more repetitions."
        )
    high = min(higher)
    return (
        "In-flight capacity per worker process at which lag p99 stays within the bound: between "
        f"{per_process[low]:,.0f} (N = {low:,}, within) and {per_process[high]:,.0f} "
        f"(N = {high:,}, beyond) production-equivalent jobs."
    )


def write_report(
    path: Path, results: Sequence[Result], meta: Mapping[str, Any], notes: Sequence[str]
) -> None:
    """The Markdown report: run facts, targets, capacity, a table per N, method notes."""
    lines = ["# imageq benchmark: imageq against the naive sleeping design", ""]
    lines += [f"- {key}: {value}" for key, value in meta["facts"].items()]
    floor = floor_of(meta)
    lines += ["", "## Targets (issue)", "", *targets(results, meta, floor), *stretch(results, meta)]
    lines += floor_section(results, meta, floor)
    lines += ["## Lag against load, and the in-flight capacity per worker process", ""]
    lines += capacity(results, meta)
    lines += [
        "## Results per N",
        "",
        "Medians over runs. Each ratio is the median of the per-pair ratios, with their range:",
        "a pair is one imageq round and one naive round on the same jobs and completion times,",
        "run one after the other (imageq first in even repetitions, naive first in odd ones).",
        "The load average is the 1-minute one, sampled at each round's start and end.",
        "",
    ]
    for n in ns_of(results):
        lines += table(results, n)
    lines += ["## How it was measured", "", *notes, ""]
    path.write_text("\n".join(lines))


def write_plot(path: Path, results: Sequence[Result], meta: Mapping[str, Any]) -> None:
    """Lag p99 and CPU-s per job against N, both designs: runs as dots, medians as lines."""
    # matplotlib is an optional extra (`bench`); imported when drawing, so the type check and
    # the test install need not have it.
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.2))
    ns = ns_of(results)
    for axis, (key, label) in zip(axes, PLOTTED, strict=True):
        for design, colour in (("imageq", "tab:blue"), ("naive", "tab:orange")):
            runs = [(r["n"], r[key]) for r in results if r["design"] == design]
            if not runs:  # a run of one design (--designs)
                continue
            axis.scatter(*zip(*runs, strict=True), color=colour, alpha=0.35, s=14)
            medians = [median_of(by_design(results, n).get(design, []), key) for n in ns]
            axis.plot(ns, medians, marker="o", color=colour, label=design)
        if key == "lag_p99_s":
            axis.axhline(meta["lag_target_s"], color="grey", linestyle="--", label="bound")
        axis.set_xscale("log")
        axis.set_xticks(ns, [f"{n:,}" for n in ns])
        axis.set_xlabel("jobs in flight (N)")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"imageq vs naive, {meta['processes']} worker processes each; {meta['title']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
