"""Worker CPU per job of two (or more) versions of imageq's code, on the same jobs, interleaved.

    git worktree add --detach ../imageq-base <commit>      # the version to compare against
    python -m bench.tree_cost --tree base=../imageq-base --tree this=. [--n 200] [--reps 3]

Each round starts a fresh Redis, simulator (realistic completion times x `--latency-scale`,
answers after 50 ms) and webhook receiver (`bench.cost_round`), then two worker processes
(threads x 32, countdown mode) whose `imageq` package is the tree's (`PYTHONPATH`: the
dependencies are this environment's), and hands over the same N jobs at once; it reads the
workers' CPU (/proc) from the hand-over to the last webhook, and the API's poll count. The
trees run in a rotated order each repetition; each ratio is against the first tree of the same
repetition, reported as the median and the spread (min to max), with the load average before
every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench import procfs
from bench.cost_round import hand_over, stage
from bench.designs import PRODUCTION, CleanEnvWorker, Timing, start_all
from bench.designs import stop_all as stop_workers
from bench.workload import make_jobs
from imageq.devenv.worker_process import settings_env

API_KEY: Final = "sk-bench-trees-0123456789"


def tree_env(env: dict[str, str], tree: Path) -> dict[str, str]:
    """`env`, with `imageq` imported from `tree`: first on the path, and the working directory
    (which `python -m` would put before it) left off (`PYTHONSAFEPATH`, Python 3.11+). Checked
    by importing it so."""
    env = env | {"PYTHONPATH": str(tree.resolve()), "PYTHONSAFEPATH": "1"}
    found = subprocess.run(
        [sys.executable, "-c", "import imageq; print(imageq.__path__[0])"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if Path(found).resolve() != (tree / "imageq").resolve():
        raise RuntimeError(f"imageq comes from {found}, not from {tree}")
    return env


def run_round(
    name: str, tree: Path, *, n: int, timing: Timing, scale: float, seed: int
) -> dict[str, Any]:
    """The tree's workers on N jobs: CPU-seconds per job and per poll."""
    jobs = make_jobs(n, seed=seed, latency="realistic", scale=scale)
    load = Path("/proc/loadavg").read_text().split()[:3]
    with stage("imageq-trees-", api_key=API_KEY, n=n, timing=timing) as at:
        env = tree_env(settings_env(at.values), tree)
        workers = [
            CleanEnvWorker(env, at.scratch / f"w{i}.log", name=f"{name}{i}", loglevel="WARNING")
            for i in range(at.parts.processes)
        ]
        start_all(workers)
        at.stack.callback(stop_workers, workers)

        def pids() -> list[int]:
            return [pid for worker in workers for pid in procfs.tree(worker.pid)]

        handed = hand_over(at, jobs, pids)
    polls = sum(int(count) for count in handed.stats["queries_by_task_id"].values())
    submits = sum(int(count) for count in handed.stats["submits_by_out_task_id"].values())
    return {
        "tree": name,
        "all_notified": handed.all_notified,
        "submits_per_job": submits / n,
        "cpu_ms_per_job": 1000 * handed.cpu_s / n,
        "cpu_ms_per_poll": 1000 * handed.cpu_s / max(polls, 1),
        "polls_per_job": polls / n,
        "elapsed_s": handed.elapsed_s,
        "loadavg_before": load,
    }


def summarize(rounds: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Per tree: medians, and ratios to the first tree of the same repetition."""
    first = {r["rep"]: r for r in rounds if r["tree"] == names[0]}
    summary: dict[str, Any] = {}
    for name in names:
        mine = [r for r in rounds if r["tree"] == name]
        entry: dict[str, Any] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("cpu_ms_per_job", "cpu_ms_per_poll", "polls_per_job")
        }
        for key in ("cpu_ms_per_job", "cpu_ms_per_poll"):
            ratios = [r[key] / first[r["rep"]][key] for r in mine if r["rep"] in first]
            entry[f"{key}_ratio"] = [statistics.median(ratios), min(ratios), max(ratios)]
        summary[name] = entry
    return summary


def render(document: dict[str, Any]) -> str:
    trees = " ".join(f"--tree {name}={path}" for name, path in document["trees"].items())
    rounds = document["rounds"]
    lines = [
        "# Worker CPU per job, one version of the code against another",
        "",
        f"`python -m bench.tree_cost {trees} --n {document['n']} --reps {document['reps']}"
        f" --latency-scale {document['latency_scale']}`: two worker processes (threads x 32,"
        f" countdown mode), {document['n']} jobs at once, realistic completion times and the"
        f" polling schedule x {document['latency_scale']}. Ratios are against"
        f" `{next(iter(document['trees']))}` in the same repetition: median (min to max)."
        + "".join(
            f" `{name}` is commit {commit}." for name, commit in document.get("commits", {}).items()
        ),
        "",
        "| tree | CPU ms / job | ratio | CPU ms / poll | ratio | polls / job |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in document["summary"].items():
        job, poll = entry["cpu_ms_per_job_ratio"], entry["cpu_ms_per_poll_ratio"]
        lines.append(
            f"| {name} | {entry['cpu_ms_per_job']:.2f} | {job[0]:.3f} ({job[1]:.3f} to"
            f" {job[2]:.3f}) | {entry['cpu_ms_per_poll']:.3f} | {poll[0]:.3f} ({poll[1]:.3f} to"
            f" {poll[2]:.3f}) | {entry['polls_per_job']:.2f} |"
        )
    lines += [
        "",
        "Rounds in the order run (load average before each: 1, 5, 15 min):",
        "",
        "| rep | tree | CPU ms / job | polls / job | submits / job | all notified | loadavg |",
        "|---:|---|---:|---:|---:|---|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['rep']} | {r['tree']} | {r['cpu_ms_per_job']:.2f} | {r['polls_per_job']:.2f}"
            f" | {r['submits_per_job']:.2f} | {r['all_notified']} |"
            f" {' '.join(r['loadavg_before'])} |"
        )
    return "\n".join(lines) + "\n"


def _commit(tree: Path) -> str:
    """The checkout's commit, and `+changes` if its files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(  # noqa: S603 -- a fixed command, no shell
            ["git", "-C", str(tree), *args],  # noqa: S607 -- git from PATH, as a developer runs it
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "+changes" if git("status", "--porcelain") else ""
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", action="append", required=True, help="NAME=PATH of a checkout (two or more)"
    )
    parser.add_argument("--n", type=int, default=200, help="jobs per round (default 200)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--latency-scale", type=float, default=0.3, help="default 0.3")
    parser.add_argument("--out", type=Path, default=Path("bench/results/trees"))
    args = parser.parse_args(argv)
    trees = dict(entry.split("=", 1) for entry in args.tree)
    names = list(trees)
    scale = args.latency_scale
    timing = Timing(
        first_delay_s=PRODUCTION.first_delay_s * scale,
        interval_s=PRODUCTION.interval_s * scale,
        jitter_s=PRODUCTION.jitter_s * scale,
        deadline_s=PRODUCTION.deadline_s * scale,
    )
    rounds = []
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            result = run_round(
                name, Path(trees[name]), n=args.n, timing=timing, scale=scale, seed=rep
            )
            rounds.append({"rep": rep, **result})
            print(json.dumps(rounds[-1]), flush=True)
    document = {
        "n": args.n,
        "reps": args.reps,
        "latency_scale": scale,
        "trees": trees,
        "commits": {name: _commit(Path(path)) for name, path in trees.items()},
        "summary": summarize(rounds, names),
        "rounds": rounds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "report.md").write_text(render(document))
    print(render(document))


if __name__ == "__main__":
    main()
