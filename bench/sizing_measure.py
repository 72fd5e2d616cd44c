"""Measure what one job costs each part, for the sizing model; then check the model against
this machine's measured capacity.

    python -m bench.sizing_measure [--n 500] [--reps 3] [--out bench/results/sizing]

1. Cost rounds (`bench.sizing_costs`): per repetition, per polling mode (countdown, poller),
   the `realistic` and the `one-poll` workload, N jobs at once on 2 worker processes x 32
   threads, the simulator answering after 50 ms, times x `--latency-scale`. Order rotated
   each repetition. Each cost is split into a part per job and a part per poll.
2. The check (`bench.sizing_capacity`): the machine's idle cores, read for 5 s, divided by the
   CPU per job of every part of the run (countdown, realistic) predict its capacity; offered
   rates step up around that prediction until imageq stops keeping up.

Writes `results.json` and `report.md` to `--out`; `--coefficients FILE` also writes the model's
coefficients (`ops/sizing_coefficients.json` is that file, committed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from bench.designs import PRODUCTION
from bench.sizing_capacity import judge, run_capacity
from bench.sizing_costs import WORKLOADS, CostPlan, run_cost_round
from bench.sizing_fit import fit_mode, machine_cpu_ms_per_job, model_coefficients
from bench.sizing_parts import Shape, idle_cores, load_average, scaled
from bench.sizing_report import render
from imageq.ops.sizing_model import MODES, machine_capacity

MACHINE_PARTS: Final = ("worker", "broker", "store", "simulator", "bench")
# The offered rates of the check, as shares of the predicted capacity.
STEPS: Final = (0.6, 0.75, 0.85, 0.95, 1.05, 1.15, 1.3, 1.5, 1.75, 2.0)


def measure_costs(args: argparse.Namespace) -> list[dict[str, Any]]:
    timing = scaled(PRODUCTION, args.latency_scale)
    plans = [(mode, workload) for mode in args.modes for workload in WORKLOADS]
    rounds = []
    for rep in range(args.reps):
        shift = rep % len(plans)
        for mode, workload in plans[shift:] + plans[:shift]:
            plan = CostPlan(mode, workload, args.n, rep, args.latency_scale, timing)
            rounds.append(run_cost_round(plan))
            print(json.dumps(rounds[-1]), flush=True)
    return rounds


def check_capacity(
    args: argparse.Namespace, fits: dict[str, Any], save: Callable[[list[Any]], None]
) -> list[dict[str, Any]]:
    """Predict, then measure, `--capacity-reps` times. Each prediction takes its CPU per job
    from a countdown round run just before on the same machine state (the machine's load
    changes what a job costs); the committed medians' prediction is shown beside it."""
    shape = Shape(processes=2, threads=32, mode="countdown")
    timing = scaled(PRODUCTION, args.latency_scale)
    checks = []
    for rep in range(args.capacity_reps):
        _wait_for_quiet(args.max_load, args.quiet_wait_s)
        plan = CostPlan("countdown", "realistic", args.n, 50 + rep, args.latency_scale, timing)
        calibration = run_cost_round(plan)
        cpu_ms = sum(calibration[f"{part}_cpu_ms_per_job"] for part in MACHINE_PARTS)
        # A request holds a thread for the simulator's delay, plus the worker's CPU.
        thread_s = (
            calibration["api_requests_per_job"] * shape.request_delay_s
            + calibration["worker_cpu_ms_per_job"] / 1000
        )
        cores = args.cores if args.cores else idle_cores(5.0)
        threads = shape.processes * shape.threads
        predicted, bound = machine_capacity(
            cpu_ms, cores=cores, threads=threads, thread_s_per_job=thread_s
        )
        committed_ms = machine_cpu_ms_per_job(fits["countdown"])
        from_committed, _ = machine_capacity(
            committed_ms, cores=cores, threads=threads, thread_s_per_job=thread_s
        )
        result = run_capacity(
            shape,
            timing,
            scale=args.latency_scale,
            rates=[round(predicted * share, 1) for share in STEPS],
            step_s=args.step_s,
            seed=100 + rep,
        )
        check = {
            "rep": rep,
            "prediction": {
                "jobs_s": predicted,
                "bound": bound,
                "idle_cores": cores,
                "cores_from": "--cores (a CPU quota)" if args.cores else "idle before",
                "cpu_ms_per_job_all_parts": cpu_ms,
                "calibration": calibration,
                "thread_s_per_job": thread_s,
                "jobs_s_from_committed_medians": from_committed,
                "cpu_ms_per_job_committed_medians": committed_ms,
            },
            **result,
        }
        checks.append(judge(check, timing))
        save(checks)
        print(json.dumps(checks[-1]), flush=True)
    return checks


def _wait_for_quiet(max_load: float, limit_s: float) -> None:
    """Wait (bounded) for the 1-minute load average to fall below `max_load`: other users'."""
    give_up = time.monotonic() + limit_s
    while os.getloadavg()[0] > max_load and time.monotonic() < give_up:
        time.sleep(5)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="jobs per cost round (default 500)")
    parser.add_argument("--reps", type=int, default=3, help="cost repetitions (default 3)")
    parser.add_argument("--latency-scale", type=float, default=0.3, help="default 0.3")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    parser.add_argument("--capacity-reps", type=int, default=3, help="checks (default 3)")
    parser.add_argument(
        "--cores",
        type=float,
        help="cores the check may use, when a CPU quota is set around it (a cgroup); default:"
        " the cores idle over 5 s before it",
    )
    parser.add_argument("--step-s", type=float, default=30.0, help="seconds per offered rate")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for a lower load")
    parser.add_argument("--quiet-wait-s", type=float, default=120.0, help="at most so long")
    parser.add_argument("--out", type=Path, default=Path("bench/results/sizing"))
    parser.add_argument("--coefficients", type=Path, help="also write the model's coefficients")
    parser.add_argument("--render", action="store_true", help="rewrite from --out's results")
    parser.add_argument("--skip-costs", action="store_true", help="reuse --out's cost rounds")
    args = parser.parse_args(argv)
    results_file = args.out / "results.json"
    if args.render or args.skip_costs:
        document = json.loads(results_file.read_text())
    if not args.render:
        if not args.skip_costs:
            _wait_for_quiet(args.max_load, args.quiet_wait_s)
        rounds = document["rounds"] if args.skip_costs else measure_costs(args)
        fits = {mode: fit_mode(rounds, mode) for mode in args.modes}
        document = {
            "command": "python -m bench.sizing_measure",
            "plan": {
                "n": args.n,
                "reps": args.reps,
                "latency_scale": args.latency_scale,
                "shape": "2 worker processes x 32 threads, simulator answers after 50 ms",
                "cpus": os.cpu_count(),
            },
            "rounds": rounds,
            "fits": fits,
            "coefficients": {mode: model_coefficients(fits[mode]) for mode in args.modes},
        }
        args.out.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(document, indent=2) + "\n")

        def save(checks: list[Any]) -> None:
            document["capacity"] = checks
            document["loadavg_end"] = load_average()
            results_file.write_text(json.dumps(document, indent=2) + "\n")

        save(check_capacity(args, fits, save) if args.capacity_reps else [])
    timing = scaled(PRODUCTION, document["plan"]["latency_scale"])
    document["capacity"] = [judge(check, timing) for check in document.get("capacity", [])]
    if args.render:
        results_file.write_text(json.dumps(document, indent=2) + "\n")
    report = render(document)
    (args.out / "report.md").write_text(report)
    if args.coefficients:
        args.coefficients.write_text(json.dumps(coefficients_file(document), indent=2) + "\n")
    print(report)


def coefficients_file(document: dict[str, Any]) -> dict[str, Any]:
    """The data file the model ships: the medians, and where they came from."""
    loads = [r["loadavg_before"][0] for r in document["rounds"]]
    return {
        "source": "bench/results/sizing/results.json, written by `python -m bench.sizing_measure`"
        f" (N = {document['plan']['n']} jobs at once, {document['plan']['reps']} repetitions,"
        f" times x {document['plan']['latency_scale']}, {document['plan']['shape']},"
        f" {document['plan']['cpus']} cores, load average {min(loads):.2f} to {max(loads):.2f});"
        " medians over the repetitions; docs/sizing.md gives the spread",
        "units": "cpu in ms, memory and network in bytes, the rest in counts; each split"
        " cost is per_job + per_poll x polls",
        "modes": document["coefficients"],
    }


if __name__ == "__main__":
    main()
