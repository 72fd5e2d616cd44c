"""Polls saved against lag: a model, in seconds, of the adaptive schedule over the realistic mix.

Each job's completion time is drawn from the simulator's `realistic` distribution (log-normal
per quality and resolution, `imageq.simulator.latency`); a window of earlier times of its cell
is what the worker has seen. The schedule is the worker's own code: the first poll from
`first_poll_delay_s`, each next one from `next_step` (with the window, or without it for the
first-poll-only rows), until a poll finds the job done. No Redis, no Celery, no clock.

    python -m bench.adaptive_model                  # about ten seconds; prints the table
    python -m bench.adaptive_model --write          # and writes bench/results/frontier.md, .png
    python -m bench.adaptive_model --cost           # CPU of placing a poll, 3 interleaved pairs

Rows: the fixed schedule (first poll 15 s, then 4 +/- 1 s); the adaptive first poll alone (the
released behaviour); the whole schedule at several `adaptive_chance` values and first-poll
percentiles. Each setting runs on the same jobs as the fixed schedule (paired: completion
times and windows from one random stream, jitter from another) for three seeds; ratios are
shown as the median and the min-max over the seeds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.workload import QUALITIES, RESOLUTIONS
from imageq.config import PollingSettings
from imageq.simulator.latency import parse_distribution
from imageq.worker.domain.status import RemoteStatus
from imageq.worker.policy.adaptive import percentile
from imageq.worker.policy.polling import PollAgain, first_poll_delay_s, next_step
from imageq.worker.store.sample_cache import SampleCache
from imageq.worker.upstream.responses import RemoteTask

RESULTS = Path(__file__).parent / "results"
SEEDS = (1, 2, 3)
_RUNNING = RemoteTask(task_id="t", status=RemoteStatus.RUNNING, status_word="processing")


@dataclass(frozen=True)
class Outcome:
    """Polls per job and lag (s, completion to the poll that saw it) of one schedule."""

    polls_per_job: float
    lag_p50_s: float
    lag_p99_s: float


@dataclass(frozen=True)
class Setting:
    """One row: a schedule, by its settings and whether later polls are placed."""

    label: str
    timing: PollingSettings
    placed: bool


def simulate(
    timing: PollingSettings,
    *,
    jobs_per_cell: int,
    trials: int,
    seed: int,
    placed: bool = False,
) -> Outcome:
    """Run `trials` windows per cell, `jobs_per_cell` jobs each, under `timing`; later polls
    placed by the window when `placed`, else at interval_s +/- jitter_s."""
    distribution = parse_distribution("realistic")
    jobs = random.Random(seed)
    dice = random.Random(f"jitter-{seed}")
    polls, lags = 0, []
    for _ in range(trials):
        for quality in QUALITIES:
            for resolution in RESOLUTIONS:

                def draw(q: str = quality, r: str = resolution) -> float:
                    return distribution.sample(jobs, quality=q, resolution=r)

                window = tuple(sorted(draw() for _ in range(timing.adaptive_window)))
                for _ in range(jobs_per_cell):
                    done_at = draw()
                    at = first_poll_delay_s(timing, dice.random, samples=window)
                    count = 1
                    while at < done_at:
                        step = next_step(
                            remote=_RUNNING,
                            error=None,
                            now=at,
                            deadline=timing.deadline_s,
                            timing=timing,
                            rand=dice.random,
                            elapsed_s=at,
                            samples=window if placed else (),
                        )
                        if not isinstance(step, PollAgain):
                            break
                        at += step.delay_s
                        count += 1
                    polls += count
                    lags.append(at - done_at)
    return Outcome(polls / len(lags), percentile(lags, 50), percentile(lags, 99))


def settings_to_compare() -> list[Setting]:
    """The fixed schedule first, then the adaptive ones."""
    default = PollingSettings()
    rows = [
        Setting("fixed schedule", PollingSettings(adaptive=False), placed=False),
        Setting("adaptive first poll only (p5)", default, placed=False),
    ]
    for chance in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0):
        timing = default.model_copy(update={"adaptive_chance": chance})
        mark = " (default)" if timing == default else ""
        rows.append(Setting(f"whole schedule, chance {chance:g}{mark}", timing, placed=True))
    for pct in (3.0, 10.0):
        timing = default.model_copy(update={"adaptive_percentile": pct})
        label = f"whole schedule, chance {default.adaptive_chance:g}, first poll p{pct:g}"
        rows.append(Setting(label, timing, placed=True))
    return rows


@dataclass(frozen=True)
class Row:
    """A setting's outcomes per seed, beside the fixed schedule's on the same jobs."""

    setting: Setting
    runs: tuple[Outcome, ...]
    fixed: tuple[Outcome, ...]

    def saved(self) -> list[float]:
        """Polls per job saved against the fixed schedule, a fraction per seed."""
        pairs = zip(self.runs, self.fixed, strict=True)
        return [1 - run.polls_per_job / fixed.polls_per_job for run, fixed in pairs]

    def p99_change_s(self) -> list[float]:
        """Lag p99 minus the fixed schedule's, per seed."""
        pairs = zip(self.runs, self.fixed, strict=True)
        return [run.lag_p99_s - fixed.lag_p99_s for run, fixed in pairs]


def measure(jobs_per_cell: int, trials: int) -> list[Row]:
    """Every setting on every seed."""
    fixed: tuple[Outcome, ...] = ()
    rows = []
    for setting in settings_to_compare():
        runs = tuple(
            simulate(
                setting.timing,
                jobs_per_cell=jobs_per_cell,
                trials=trials,
                seed=seed,
                placed=setting.placed,
            )
            for seed in SEEDS
        )
        fixed = fixed or runs
        rows.append(Row(setting, runs, fixed))
    return rows


def table(rows: Sequence[Row]) -> list[str]:
    """The frontier as a Markdown table."""
    lines = [
        "| schedule | polls/job | polls saved | lag p50 (s) | lag p99 (s) | p99 vs fixed (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        polls = statistics.median(o.polls_per_job for o in row.runs)
        p50 = statistics.median(o.lag_p50_s for o in row.runs)
        p99 = statistics.median(o.lag_p99_s for o in row.runs)
        lines.append(
            f"| {row.setting.label} | {polls:.2f} | {_spread(row.saved(), '{:.1%}')} "
            f"| {p50:.2f} | {p99:.2f} | {_spread(row.p99_change_s(), '{:+.2f}')} |"
        )
    return lines


def _spread(values: list[float], form: str) -> str:
    """The median, then the min-max, as `form` formats them."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{form.format(mid)} ({form.format(low)} to {form.format(high)})"


def write_report(rows: Sequence[Row], lines: list[str], *, jobs: int, trials: int) -> None:
    """bench/results/frontier.md, and frontier.png when matplotlib is there."""
    command = f"python -m bench.adaptive_model --write --jobs {jobs} --trials {trials}"
    text = [
        "# Polls saved against lag: the adaptive schedule (model)",
        "",
        f"`{command}` (a model of the worker's own policy code, no services; see the module's"
        " docstring). Realistic mix, 9 quality x resolution cells,"
        f" {jobs} jobs x {trials} windows per cell and seed, seeds {', '.join(map(str, SEEDS))};"
        " polls saved and the p99 change are paired with the fixed schedule on the same jobs:"
        " median (min to max over the seeds).",
        "",
        *lines,
        "",
        *reading(rows),
        "",
        "![polls saved against lag p99 and p50](frontier.png)",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "frontier.md").write_text("\n".join(text))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    _plot(plt, rows, RESULTS / "frontier.png")


def reading(rows: Sequence[Row]) -> list[str]:
    """What the table says, with its numbers: the default row, the ceiling, the first poll."""
    default = PollingSettings()
    placed = [r for r in rows if r.setting.placed and "first poll" not in r.setting.label]
    chosen = next(r for r in placed if r.setting.timing == default)
    ceiling = max(placed, key=lambda r: statistics.median(r.saved()))
    first_only = rows[1]

    def median(values: list[float]) -> float:
        return statistics.median(values)

    def p50(row: Row) -> float:
        return median([o.lag_p50_s for o in row.runs])

    return [
        "How to read it:",
        "",
        f"- The default (`adaptive_chance` {default.adaptive_chance:g}) saves"
        f" {_spread(chosen.saved(), '{:.1%}')} of the polls with lag p99"
        f" {_spread(chosen.p99_change_s(), '{:+.2f}')} s against the fixed schedule: the"
        " issue's target (>= 40 % fewer, p99 no worse) holds, by a thin margin.",
        "- The window bounds it: every later poll stays within `interval_s` +/- `jitter_s`"
        " (3-5 s), so even polls almost always at its far end (chance"
        f" {ceiling.setting.timing.adaptive_chance:g}) save only"
        f" {median(ceiling.saved()):.1%}; the adaptive first poll alone gives"
        f" {median(first_only.saved()):.1%} of that.",
        "- The price is the median lag, not the tail: the fixed schedule's p99 comes from jobs"
        " done before its 15 s first poll, the whole schedule's from its 5 s gaps. The median"
        f" goes from {p50(rows[0]):.2f} s to {p50(chosen):.2f} s; a lower chance polls sooner"
        " where jobs are likely to be done and buys the median back with more polls.",
        "- A later first poll (p10) saves more, but every job done before it waits: see its"
        " p99. The simulator's times are smooth (log-normal); an API whose times bunch would"
        " give the placement more to work with.",
    ]


def _plot(plt: Any, rows: Sequence[Row], path: Path) -> None:
    """Lag p99 and lag p50 against polls saved: the chance series as a line, the rest as
    points; a row whose p99 is off the chart is named below it."""
    figure, (tail, middle) = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True)
    chart_top_s = 6.0
    off_chart = []
    series = [r for r in rows if r.setting.placed and "first poll" not in r.setting.label]
    panels: list[tuple[Any, Callable[[Outcome], float], str]] = [
        (tail, lambda o: o.lag_p99_s, "lag p99 (s)"),
        (middle, lambda o: o.lag_p50_s, "lag p50 (s)"),
    ]
    for axes, measure_of, name in panels:
        xs = [100 * statistics.median(r.saved()) for r in series]
        ys = [statistics.median(measure_of(o) for o in r.runs) for r in series]
        axes.plot(xs, ys, "o-", color="tab:blue", label="whole schedule, by chance")
        for row, x, y in zip(series, xs, ys, strict=True):
            chance = row.setting.timing.adaptive_chance
            axes.annotate(f"{chance:g}", (x, y), fontsize=8, xytext=(3, 4),
                          textcoords="offset points")  # fmt: skip
        for row in rows:
            if row in series:
                continue
            x = 100 * statistics.median(row.saved())
            y = statistics.median(measure_of(o) for o in row.runs)
            if axes is tail and y > chart_top_s:
                off_chart.append(f"{_short(row.setting.label)}: {x:.0f} %, p99 {y:.1f} s")
                continue
            axes.plot(x, y, "s", color="tab:gray")
            axes.annotate(_short(row.setting.label), (x, y), fontsize=7, xytext=(4, -10),
                          textcoords="offset points")  # fmt: skip
        fixed = statistics.median(measure_of(o) for o in rows[0].fixed)
        axes.axhline(fixed, color="tab:gray", linestyle=":", linewidth=1)
        axes.axvline(40, color="tab:red", linestyle=":", linewidth=1)
        axes.set_xlabel("polls per job saved against the fixed schedule (%)")
        axes.set_ylabel(name)
    tail.set_title("target: right of the red line, under the grey one", fontsize=9)
    middle.set_title("the price: median lag", fontsize=9)
    if off_chart:
        figure.text(0.01, 0.01, "off the chart: " + "; ".join(off_chart), fontsize=7)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _short(label: str) -> str:
    return (
        label.replace("whole schedule, ", "")
        .replace("adaptive first poll only", "first only")
        .replace(" (default)", "*")
        .replace("fixed schedule", "fixed")
    )


def placement_cost_us(calls: int = 200_000) -> tuple[float, float]:
    """CPU (us per call) of `next_step` for a running job: plain (random jitter), then placed
    by a 100-sample window fetched from a warm `SampleCache`, as the poll step does."""
    timing = PollingSettings()
    rng = random.Random(1)
    window = [rng.lognormvariate(3.7, 0.3) for _ in range(timing.adaptive_window)]
    cache = SampleCache(lambda _q, _r: window, refresh_s=60.0, clock=time.monotonic)

    def run(placed: bool) -> float:
        started = time.process_time()
        for index in range(calls):
            at = 20.0 + index % 100
            next_step(
                remote=_RUNNING,
                error=None,
                now=1_000.0 + at,
                deadline=1_000.0 + timing.deadline_s,
                timing=timing,
                rand=rng.random,
                elapsed_s=at,
                samples=cache.ordered("high", "1K") if placed else (),
            )
        return (time.process_time() - started) / calls * 1e6

    return run(False), run(True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="windows per cell (default 30)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs per window (default 100)")
    parser.add_argument("--write", action="store_true", help="write bench/results/frontier.*")
    parser.add_argument("--cost", action="store_true", help="CPU of placing a poll, and stop")
    args = parser.parse_args(argv)
    if args.cost:
        print(f"load average {Path('/proc/loadavg').read_text().split()[0]}")
        for pair in range(3):
            plain, placed = placement_cost_us()
            print(f"pair {pair + 1}: next_step {plain:.2f} us plain, {placed:.2f} us placed")
        return
    rows = measure(args.jobs, args.trials)
    lines = table(rows)
    print("\n".join(lines))
    if args.write:
        write_report(rows, lines, jobs=args.jobs, trials=args.trials)


if __name__ == "__main__":
    main()
