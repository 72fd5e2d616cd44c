"""What Flower's inputs cost a loaded worker: heartbeats, task events, gossip and mingle.

    python -m bench.events_cost [--n 200] [--reps 3] [--out bench/results/events]

Each round starts a fresh Redis, simulator (realistic completion times x `--latency-scale`,
answers after 50 ms) and webhook receiver, two imageq worker processes (threads x 32) started
with one of the variants below, and hands over the same N jobs at once; it reads the workers'
CPU (/proc) from the hand-over until the last webhook, and the API's poll count. Variants run
interleaved, in a rotated order each repetition, and each ratio is taken against `off` within
the same repetition; the report gives the median and the spread (min to max) of the ratios,
with the load average before every round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench import procfs
from bench.cost_round import hand_over, stage
from bench.designs import PRODUCTION, CleanEnvWorker, Timing, start_all
from bench.designs import stop_all as stop_workers
from bench.workload import make_jobs
from imageq.devenv.worker_process import settings_env

API_KEY: Final = "sk-bench-events-0123456789"


@dataclass(frozen=True)
class Variant:
    """How the workers are started: the Celery flags and the task-events setting."""

    name: str
    flags: tuple[str, ...]
    task_events: bool


LEAN: Final = ("--without-gossip", "--without-mingle")
VARIANTS: Final = (
    Variant("off", (*LEAN, "--without-heartbeat"), task_events=False),
    Variant("heartbeat", LEAN, task_events=False),
    Variant("heartbeat+task-events", LEAN, task_events=True),
    Variant("all-on (+gossip, mingle)", (), task_events=True),
)


class VariantWorker(CleanEnvWorker):
    """A worker started like `imageq worker`, with the variant's flags instead of its own."""

    def __init__(self, env: dict[str, str], log_path: Path, *, name: str, flags: tuple[str, ...]):
        super().__init__(env, log_path, name=name, loglevel="INFO", extra_args=flags)

    def command(self) -> list[str]:
        lean = ("--without-gossip", "--without-mingle", "--without-heartbeat")
        return [arg for arg in super().command() if arg not in lean] + list(self._extra_args)


def run_round(
    variant: Variant, *, n: int, timing: Timing, scale: float, seed: int
) -> dict[str, Any]:
    """One variant on N jobs: CPU-seconds per job and per poll, start-up time, idle CPU."""
    jobs = make_jobs(n, seed=seed, latency="realistic", scale=scale)
    load = Path("/proc/loadavg").read_text().split()[:3]
    with stage("imageq-events-", api_key=API_KEY, n=n, timing=timing) as at:
        at.values["worker"]["task_events"] = variant.task_events
        env = settings_env(at.values)
        workers = [
            VariantWorker(env, at.scratch / f"w{i}.log", name=f"events{i}", flags=variant.flags)
            for i in range(at.parts.processes)
        ]
        started = time.monotonic()
        start_all(workers)
        ready_s = time.monotonic() - started
        at.stack.callback(stop_workers, workers)

        def pids() -> list[int]:
            return [pid for worker in workers for pid in procfs.tree(worker.pid)]

        idle_cpu, idle_from = procfs.cpu_seconds(pids()), time.monotonic()
        time.sleep(6)  # three heartbeats
        idle_rate = (procfs.cpu_seconds(pids()) - idle_cpu) / (time.monotonic() - idle_from)
        handed = hand_over(at, jobs, pids)
    cpu_s, stats = handed.cpu_s, handed.stats
    polls = sum(int(count) for count in stats["queries_by_task_id"].values())
    return {
        "variant": variant.name,
        "all_notified": handed.all_notified,
        "cpu_ms_per_job": 1000 * cpu_s / n,
        "cpu_ms_per_poll": 1000 * cpu_s / max(polls, 1),
        "polls_per_job": polls / n,
        "elapsed_s": handed.elapsed_s,
        "ready_s": ready_s,
        "idle_cpu_ms_per_s": 1000 * idle_rate,
        "loadavg_before": load,
    }


def summarize(rounds: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: medians, and ratios to `off` of the same repetition (median, min, max)."""
    off = {r["rep"]: r for r in rounds if r["variant"] == VARIANTS[0].name}
    summary: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        mine = [r for r in rounds if r["variant"] == variant.name]
        entry: dict[str, Any] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("cpu_ms_per_job", "cpu_ms_per_poll", "ready_s", "idle_cpu_ms_per_s")
        }
        for key in ("cpu_ms_per_job", "cpu_ms_per_poll"):
            ratios = [r[key] / off[r["rep"]][key] for r in mine if r["rep"] in off]
            entry[f"{key}_ratio"] = [statistics.median(ratios), min(ratios), max(ratios)]
        summary[variant.name] = entry
    return summary


def render(summary: dict[str, dict[str, Any]], rounds: Sequence[dict[str, Any]], args: Any) -> str:
    """The report as Markdown."""
    lines = [
        "# What heartbeats, task events and gossip cost a loaded worker",
        "",
        f"`python -m bench.events_cost --n {args.n} --reps {args.reps}`: two worker processes"
        f" (threads x 32), {args.n} jobs at once, realistic completion times x"
        f" {args.latency_scale}, polling schedule x {args.latency_scale}; {args.reps}"
        " interleaved repetitions. Ratios are against `off` in the same repetition:"
        " median (min to max).",
        "",
        "| variant | CPU ms / job | ratio | CPU ms / poll | ratio | idle CPU ms/s | ready s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in summary.items():
        job, poll = entry["cpu_ms_per_job_ratio"], entry["cpu_ms_per_poll_ratio"]
        lines.append(
            f"| {name} | {entry['cpu_ms_per_job']:.2f} | {job[0]:.3f} ({job[1]:.3f} to"
            f" {job[2]:.3f}) | {entry['cpu_ms_per_poll']:.3f} | {poll[0]:.3f} ({poll[1]:.3f} to"
            f" {poll[2]:.3f}) | {entry['idle_cpu_ms_per_s']:.2f} | {entry['ready_s']:.2f} |"
        )
    lines += [
        "",
        "CPU is the workers' user + system time from /proc, from the hand-over of the jobs to the"
        " last webhook; per poll divides it by the polls the simulator answered. Idle CPU is read"
        " over 6 s before the jobs, in steps of 1.67 ms/s (the kernel counts CPU in 10 ms"
        " ticks): a heartbeat every 2 s per worker costs less than one step. `ready s` is the"
        " time from starting both workers until both said ready (mingle waits for replies).",
        "",
        "Rounds in the order run (load average before each: 1, 5, 15 min):",
        "",
    ]
    lines += ["| rep | variant | CPU ms / job | polls / job | all notified | loadavg |"]
    lines += ["|---:|---|---:|---:|---|---|"]
    for r in rounds:
        lines.append(
            f"| {r['rep']} | {r['variant']} | {r['cpu_ms_per_job']:.2f} |"
            f" {r['polls_per_job']:.2f} | {r['all_notified']} | {' '.join(r['loadavg_before'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="jobs per round (default 200)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--latency-scale", type=float, default=0.3, help="default 0.3")
    parser.add_argument("--out", type=Path, default=Path("bench/results/events"))
    parser.add_argument("--render", action="store_true", help="rewrite the report from --out")
    args = parser.parse_args(argv)
    if args.render:
        document = json.loads((args.out / "results.json").read_text())
        args.n, args.latency_scale = document["n"], document["latency_scale"]
        args.reps = len({r["rep"] for r in document["rounds"]})
        report = render(summarize(document["rounds"]), document["rounds"], args)
        (args.out / "report.md").write_text(report)
        print(report)
        return
    scale = args.latency_scale
    timing = Timing(
        first_delay_s=PRODUCTION.first_delay_s * scale,
        interval_s=PRODUCTION.interval_s * scale,
        jitter_s=PRODUCTION.jitter_s * scale,
        deadline_s=PRODUCTION.deadline_s * scale,
    )
    rounds = []
    for rep in range(args.reps):
        # Rotated each repetition, so no variant always runs first (or last) in a repetition.
        order = VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)]
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
