"""What the fleet-wide request budget costs a loaded worker, in CPU per API request.

    python -m bench.budget_cost [--n 200] [--reps 3] [--out bench/results/budget]

Each round starts a fresh Redis, simulator (realistic completion times x `--latency-scale`,
answers after 50 ms) and webhook receiver, two imageq worker processes (threads x 32), and
hands over the same N jobs at once; it reads the workers' CPU (/proc) from the hand-over until
the last webhook, and divides it by the API requests the simulator answered. `off` runs with
no budget; `on` with the budget and the pause on 429 on, the rate set far above what the
round sends (so it measures the Lua script's round trip per request, not throttling). The two
run interleaved, in alternating order; each ratio is `on` / `off` of the same repetition, and
the report gives their median and spread (min to max), with the load average before each round.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench import procfs
from bench.cost_round import hand_over, stage
from bench.designs import PRODUCTION, CleanEnvWorker, Timing, start_all
from bench.designs import stop_all as stop_workers
from bench.workload import make_jobs
from imageq.devenv.worker_process import settings_env

API_KEY: Final = "sk-bench-budget-0123456789"
VARIANTS: Final = ("off", "on")
# Far above what 200 jobs ask for: the budget is consulted on every request but never waits.
BUDGET_ON: Final = {"requests_per_s": 10000, "burst": 1000, "pause_on_429": True}


def run_round(variant: str, *, n: int, timing: Timing, scale: float, seed: int) -> dict[str, Any]:
    """One variant on N jobs: the workers' CPU per API request and per job."""
    jobs = make_jobs(n, seed=seed, latency="realistic", scale=scale)
    load = Path("/proc/loadavg").read_text().split()[:3]
    with stage("imageq-budget-", api_key=API_KEY, n=n, timing=timing) as at:
        if variant == "on":
            at.values["budget"] = dict(BUDGET_ON)
        env = settings_env(at.values)
        workers = [
            CleanEnvWorker(env, at.scratch / f"w{i}.log", name=f"budget{i}", loglevel="INFO")
            for i in range(at.parts.processes)
        ]
        start_all(workers)
        at.stack.callback(stop_workers, workers)
        pids = [pid for worker in workers for pid in procfs.tree(worker.pid)]
        handed = hand_over(at, jobs, lambda: pids)
    cpu_s, stats = handed.cpu_s, handed.stats
    api_requests = int(stats["requests"])
    return {
        "variant": variant,
        "all_notified": handed.all_notified,
        "cpu_ms_per_request": 1000 * cpu_s / max(api_requests, 1),
        "cpu_ms_per_job": 1000 * cpu_s / n,
        "requests_per_job": api_requests / n,
        "elapsed_s": handed.elapsed_s,
        "loadavg_before": load,
    }


def summarize(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians per variant, and the ratio on / off per repetition: median, min, max."""
    by = {(r["rep"], r["variant"]): r for r in rounds}
    reps = sorted({r["rep"] for r in rounds})
    summary: dict[str, Any] = {}
    for variant in VARIANTS:
        mine = [r for r in rounds if r["variant"] == variant]
        summary[variant] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("cpu_ms_per_request", "cpu_ms_per_job", "requests_per_job")
        }
    for key in ("cpu_ms_per_request", "cpu_ms_per_job"):
        ratios = [by[(rep, "on")][key] / by[(rep, "off")][key] for rep in reps]
        summary[f"{key}_ratio"] = [statistics.median(ratios), min(ratios), max(ratios)]
    return summary


def render(summary: dict[str, Any], rounds: Sequence[dict[str, Any]], args: Any) -> str:
    """The report as Markdown."""
    request, job = summary["cpu_ms_per_request_ratio"], summary["cpu_ms_per_job_ratio"]
    lines = [
        "# What the request budget costs a loaded worker",
        "",
        f"`python -m bench.budget_cost --n {args.n} --reps {args.reps}`: two worker processes"
        f" (threads x 32), {args.n} jobs at once, realistic completion times x"
        f" {args.latency_scale}, polling schedule x {args.latency_scale}, answers after 50 ms;"
        f" budget `on` = {json.dumps(BUDGET_ON)} (never throttles here) against `off`;"
        f" {args.reps} interleaved repetitions.",
        "",
        "| variant | CPU ms / API request | CPU ms / job | requests / job |",
        "|---|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        entry = summary[variant]
        lines.append(
            f"| {variant} | {entry['cpu_ms_per_request']:.3f} | {entry['cpu_ms_per_job']:.2f} |"
            f" {entry['requests_per_job']:.2f} |"
        )
    lines += [
        "",
        f"Ratio on / off, CPU per API request: **{request[0]:.3f}** ({request[1]:.3f} to"
        f" {request[2]:.3f}); per job: {job[0]:.3f} ({job[1]:.3f} to {job[2]:.3f}).",
        "",
        "CPU is the workers' user + system time from /proc, from the hand-over of the jobs to the"
        " last webhook (the kernel counts it in 10 ms ticks); per request divides it by the API"
        " requests the simulator answered (submits and polls).",
        "",
        "Rounds in the order run (load average before each: 1, 5, 15 min):",
        "",
        "| rep | variant | CPU ms / request | CPU ms / job | elapsed s | all notified | loadavg |",
        "|---:|---|---:|---:|---:|---|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['rep']} | {r['variant']} | {r['cpu_ms_per_request']:.3f} |"
            f" {r['cpu_ms_per_job']:.2f} | {r['elapsed_s']:.1f} | {r['all_notified']} |"
            f" {' '.join(r['loadavg_before'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="jobs per round (default 200)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--latency-scale", type=float, default=0.3, help="default 0.3")
    parser.add_argument("--out", type=Path, default=Path("bench/results/budget"))
    args = parser.parse_args(argv)
    scale = args.latency_scale
    timing = Timing(
        first_delay_s=PRODUCTION.first_delay_s * scale,
        interval_s=PRODUCTION.interval_s * scale,
        jitter_s=PRODUCTION.jitter_s * scale,
        deadline_s=PRODUCTION.deadline_s * scale,
    )
    rounds = []
    for rep in range(args.reps):
        order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            result = run_round(variant, n=args.n, timing=timing, scale=scale, seed=rep)
            rounds.append({"rep": rep, **result})
            print(json.dumps(rounds[-1]), flush=True)
    summary = summarize(rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"n": args.n, "latency_scale": scale, "summary": summary, "rounds": rounds}
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "report.md").write_text(render(summary, rounds, args))
    print(render(summary, rounds, args))


if __name__ == "__main__":
    main()
