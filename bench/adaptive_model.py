"""How late can the adaptive first poll go? A model, in seconds, of polls per job and lag p99.

Each job's completion time is drawn from the simulator's `realistic` distribution (log-normal
per quality and resolution); a window of earlier times of its cell gives the adaptive first poll
(`imageq.worker.policy.adaptive.first_poll_base_s`, the code the worker runs); then polls follow
every `interval_s` +/- jitter, as in the worker. The fixed schedule is the documented one. No
Redis, no Celery, no clock: it shows the trade-off that the benchmark then measures for one setting.

    python -m bench.adaptive_model          # a few seconds

After the first poll the interval stays 3-5 s, so a later first poll saves polls only on jobs
that finish after it, and every job that finished before it waits for it. The table shows how
far that goes: the further up the percentile, the fewer polls and the worse the lag p99.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bench.workload import QUALITIES, RESOLUTIONS
from imageq.config import PollingSettings
from imageq.simulator.latency import parse_distribution
from imageq.worker.policy.adaptive import percentile
from imageq.worker.policy.polling import first_poll_delay_s


@dataclass(frozen=True)
class Outcome:
    """Polls per job and lag p99 (s) of one schedule over the whole mix."""

    polls_per_job: float
    lag_p99_s: float


def simulate(timing: PollingSettings, *, jobs_per_cell: int, trials: int, seed: int) -> Outcome:
    """Run `trials` windows per cell, `jobs_per_cell` jobs each, under `timing`."""
    distribution = parse_distribution("realistic")
    rng = random.Random(seed)
    polls, lags = 0, []
    for _ in range(trials):
        for quality in QUALITIES:
            for resolution in RESOLUTIONS:

                def draw(q: str = quality, r: str = resolution) -> float:
                    return distribution.sample(rng, quality=q, resolution=r)

                window = [draw() for _ in range(timing.adaptive_window)]
                for _ in range(jobs_per_cell):
                    done_at = draw()
                    at = first_poll_delay_s(timing, rng.random, samples=window)
                    count = 1
                    while at < done_at:
                        at += timing.interval_s + timing.jitter_s * (2 * rng.random() - 1)
                        count += 1
                    polls += count
                    lags.append(at - done_at)
    return Outcome(polls / len(lags), percentile(lags, 99))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="windows per cell (default 30)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs per window (default 100)")
    args = parser.parse_args(argv)
    default = PollingSettings()
    fixed = simulate(
        PollingSettings(adaptive=False), jobs_per_cell=args.jobs, trials=args.trials, seed=1
    )
    print(f"fixed schedule: {fixed.polls_per_job:.2f} polls/job, lag p99 {fixed.lag_p99_s:.2f} s")
    print()
    print("| window | percentile | polls/job | vs fixed | lag p99 (s) | vs fixed |")
    print("|---:|---:|---:|---:|---:|---:|")
    for window in (50, 100):
        for pct in (2.0, 3.0, 5.0, 10.0, 20.0):
            timing = default.model_copy(
                update={"adaptive_window": window, "adaptive_percentile": pct}
            )
            out = simulate(timing, jobs_per_cell=args.jobs, trials=args.trials, seed=1)
            mark = " (default)" if timing == default else ""
            print(
                f"| {window} | p{pct:g}{mark} | {out.polls_per_job:.2f} "
                f"| {out.polls_per_job / fixed.polls_per_job - 1:+.0%} "
                f"| {out.lag_p99_s:.2f} | {out.lag_p99_s - fixed.lag_p99_s:+.2f} |"
            )


if __name__ == "__main__":
    main()
