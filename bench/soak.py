"""The soak run under chaos: `python -m bench.soak` (`make soak`), `--smoke` for a short one.

Thousands of jobs go through two workers and the beat at production timing while a chaos
driver (`bench/chaos.py`) SIGKILLs workers, restarts Redis, takes the API and the webhook
receiver away and throws 429/503 bursts. Then every job is checked (`bench/soak_verdict.py`)
and the results written to `--out` as `results.json` and `report.md`. Exit status: 0 all
checks passed, 1 some failed, 2 the run itself could not be carried out.

Everything is on loopback; every wait is bounded; every process started is stopped at the
end, on Ctrl-C or SIGTERM too.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any, Final

import redis

from bench.chaos import ChaosDriver, make_schedule
from bench.progress import ProgressSampler, attribute
from bench.soak_cluster import SoakCluster
from bench.soak_feed import ENQUEUE_PATIENCE_S, Feeder
from bench.soak_plan import (
    SoakJob,
    SoakPlan,
    arrival_times_s,
    full_plan,
    make_soak_jobs,
    smoke_plan,
    with_overrides,
)
from bench.soak_report import render_markdown, write_results
from bench.soak_verdict import (
    check_lost,
    check_outcomes,
    check_recovery,
    check_twice,
    summarise_recovery,
)
from imageq.worker.domain.job import Job
from imageq.worker.runtime import connect_store
from imageq.worker.store.job_store import JobStore

# Worker restarts can push the schedule back a little; this much is allowed before giving up.
CHAOS_SLIP_S: Final = 180.0
_SETTLED_EVERY_S: Final = 1.0


class RunFailed(RuntimeError):
    """The run could not be carried out (a part did not start, a driver thread failed)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--smoke", action="store_true", help="about 50 jobs at 0.1x timing, under 2 minutes")
    add("--jobs", type=int, default=None, help="jobs in all (full: 2000)")
    add("--chaos-min", type=float, default=None, help="minutes of chaos (full: 10)")
    add("--drain-s", type=float, default=None, help="longest wait for the last jobs after it")
    add("--workers", type=int, default=None, help="worker processes (2)")
    add("--api-outage", choices=("refuse", "503"), default=None,
        help="the API outage refuses connections (default) or answers 503")  # fmt: skip
    add("--seed", type=int, default=13, help="seed of the jobs and the chaos schedule")
    add("--out", type=Path, default=None,
        help="results folder (bench/results/soak; --smoke: var/soak-smoke)")  # fmt: skip
    add("--logs", type=Path, default=None, help="logs go to a new folder in it (var/soak-logs)")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> SoakPlan:
    if args.smoke:
        plan = smoke_plan(seed=args.seed)
    else:
        chaos_s = 60.0 * args.chaos_min if args.chaos_min is not None else 600.0
        plan = full_plan(jobs=args.jobs or 2000, chaos_s=chaos_s, seed=args.seed)
    return with_overrides(
        plan,
        jobs=args.jobs,
        workers=args.workers,
        drain_s=args.drain_s,
        api_outage_mode=args.api_outage,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    mode = "smoke" if args.smoke else "full"
    out = args.out or Path("var/soak-smoke" if args.smoke else "bench/results/soak")
    # A folder per run: readiness is read from the logs, which must start empty.
    logs = (args.logs or Path("var/soak-logs")) / time.strftime("%Y%m%d-%H%M%S")
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"soak ({mode}): {plan.jobs} jobs, {plan.chaos_s / 60:.1f} min of chaos; logs in {logs}")
    try:
        results = run(plan, mode=mode, log_dir=logs)
    except RunFailed as error:
        print(f"soak: the run could not be carried out: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    write_results(out, results)
    print(render_markdown(results))
    print(f"written: {out / 'results.json'}, {out / 'report.md'}")
    return 0 if results["passed"] else 1


def run(plan: SoakPlan, *, mode: str, log_dir: Path) -> dict[str, Any]:
    """Start everything, feed the jobs under chaos, drain, read and check; all stopped after."""
    jobs = make_soak_jobs(plan)
    started_at, wall_from = time.time(), time.monotonic()
    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(SoakCluster(plan, log_dir=log_dir))
        except RuntimeError as error:  # Redis, the simulator or a worker did not start
            raise RunFailed(f"a part did not start: {error}") from error
        store = connect_store(cluster.settings)
        client = redis.Redis.from_url(cluster.settings.redis.store_url)
        sampler = ProgressSampler(
            client,
            in_flight_key=store.in_flight_key,
            job_key_prefix=store.key(""),
            every_s=plan.sample_s,
        )
        t0 = time.monotonic()
        run_from = time.time()
        feeder = Feeder(cluster.queue, jobs, arrival_times_s(plan),
                        webhook_url=cluster.receiver.url, t0=t0)  # fmt: skip
        chaos = ChaosDriver(cluster, make_schedule(plan), plan, t0=t0)
        with sampler, feeder, chaos:
            chaos_done = chaos.wait(plan.chaos_s + CHAOS_SLIP_S)
            fed = feeder.wait(max(0.0, t0 + plan.feed_s - time.monotonic()) + ENQUEUE_PATIENCE_S)
            for part, failure in (("chaos driver", chaos.error), ("feeder", feeder.error)):
                if failure is not None:
                    raise RunFailed(f"the {part} failed: {failure!r}") from failure
            if not (chaos_done and fed):
                raise RunFailed("the chaos schedule or the feeding did not end in time")
            drained_s = _wait_settled(client, store.in_flight_key, limit_s=plan.drain_s)
            # Not a wait for a condition: a window in which a late duplicate would still show.
            time.sleep(plan.duplicate_window_s)
        _keep_events(sampler, log_dir / "progress.jsonl")
        ids = [job.job_id for job in jobs]
        records = dict(zip(ids, _read_records(store, ids), strict=True))
        sim_stats = cluster.sim_stats()
        deliveries = {job: len(times) for job, times in cluster.receiver.snapshot().times.items()}
        client.close()
        settings = cluster.settings
        pids = cluster.pids
    faults = chaos.records
    late_after_s = round(2 * plan.sample_s + 0.5, 2)
    windows = [(f.started_at or run_from, f.ended_at or f.started_at or run_from) for f in faults]
    held_up = attribute(sampler.log.events, windows, late_after_s=late_after_s)
    per_fault = [
        {
            "kind": fault.kind,
            "at_s": _rel(start, run_from),
            "end_s": _rel(end, run_from),
            "detail": fault.detail,
            "recovery": summarise_recovery(held_up.get(index, []), sampler.resumed_after(end)),
        }
        for index, (fault, (start, end)) in enumerate(zip(faults, windows, strict=True))
    ]
    accepted = sim_stats["accepted_submits_by_out_task_id"]
    checks = {
        "outcomes": check_outcomes(jobs, records, faults, feeder.enqueued_at),
        "lost": check_lost(jobs, records, deliveries, feeder.refused),
        "submitted_twice": check_twice(accepted, ids),
        "notified_twice": check_twice(deliveries, ids),
        "recovery": check_recovery(
            per_fault,
            held_up.get(None, []),
            bound_s=plan.recovery_bound_s(),
            resolution_s=plan.sample_s,
        ),
    }
    return {
        "title": "imageq soak under chaos",
        "mode": mode,
        "started_at": datetime.datetime.fromtimestamp(started_at, datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "wall_s": round(time.monotonic() - wall_from, 1),
        "passed": all(check["passed"] for check in checks.values()),
        "plan": _plan_summary(plan, settings.model_dump(mode="json")),
        "jobs": _job_summary(jobs, feeder, records, drained_s),
        "faults": {
            "counts": dict(Counter(fault.kind for fault in faults)),
            "events": [{k: v for k, v in row.items() if k != "recovery"} for row in per_fault],
        },
        "recovery": {
            "late_after_s": late_after_s,
            "per_kind": _per_kind(per_fault),
            "per_fault": per_fault,
            "samples": sampler.samples,
            "sample_gaps": sampler.gaps,
        },
        "checks": checks,
        "api": _api_summary(sim_stats, records),
        "processes_started": pids,
    }


def _wait_settled(client: redis.Redis, in_flight_key: str, *, limit_s: float) -> float | None:
    """Seconds until no job has work left (the in-flight index is empty), or None."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        try:
            if client.zcard(in_flight_key) == 0:
                return round(time.monotonic() - started, 1)
        except redis.RedisError:
            pass  # Redis is back by now; a failed read is only tried again
        time.sleep(_SETTLED_EVERY_S)
    return None


def _read_records(store: JobStore, ids: list[str]) -> list[Job | None]:
    found: list[Job | None] = []
    for start in range(0, len(ids), 500):
        found += store.get_many(ids[start : start + 500])
    return found


def _plan_summary(plan: SoakPlan, settings: dict[str, Any]) -> dict[str, Any]:
    polling, sweep = settings["polling"], settings["sweep"]
    timing = (
        f"first poll {polling['first_delay_s']:g} s (adaptive {polling['adaptive']}), then every"
        f" {polling['interval_s']:g} +/- {polling['jitter_s']:g} s, deadline"
        f" {polling['deadline_s']:g} s; completion times `realistic` x {plan.latency_scale:g}"
    )
    return {
        "jobs": plan.jobs,
        "workers": plan.workers,
        "concurrency": plan.concurrency,
        "chaos_s": plan.chaos_s,
        "feed_s": plan.feed_s,
        "drain_s": plan.drain_s,
        "seed": plan.seed,
        "sample_s": plan.sample_s,
        "api_outage_mode": plan.api_outage_mode,
        "timing": timing,
        "polling": polling,
        "sweep": sweep,
        "retry": settings["retry"],
        "webhook_schedule_s": settings["webhook"]["schedule_s"],
    }


def _job_summary(
    jobs: list[SoakJob], feeder: Feeder, records: dict[str, Job | None], drained_s: float | None
) -> dict[str, Any]:
    statuses = Counter(str(r.status) if r else "no record" for r in records.values())
    return {
        "planned": len(jobs),
        "enqueued": len(feeder.enqueued_at),
        "enqueue_refused": len(feeder.refused),
        "enqueue_retries": feeder.retried,
        "expected": dict(Counter(job.failure or job.expected for job in jobs)),
        "markers": dict(Counter(job.marker for job in jobs if job.marker and not job.failure)),
        "statuses": dict(statuses),
        "drained_s": drained_s,
    }


def _per_kind(per_fault: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds: dict[str, dict[str, Any]] = {}
    for row in per_fault:
        kind = kinds.setdefault(
            row["kind"], {"count": 0, "when": [], "held_up": 0, "worst_late_s": 0.0,
                          "worst_resume_s": 0.0, "never_moved": 0}
        )  # fmt: skip
        recovery = row["recovery"]
        kind["count"] += 1
        kind["when"].append(row["at_s"])
        kind["held_up"] += recovery["held_up"]
        kind["never_moved"] += recovery["never_moved"]
        kind["worst_late_s"] = max(kind["worst_late_s"], recovery["worst_late_s"])
        kind["worst_resume_s"] = max(kind["worst_resume_s"], recovery["worst_resume_s"])
    for kind in kinds.values():
        kind["when_s"] = ", ".join(f"{at:g}" for at in kind.pop("when") if at is not None)
    return kinds


def _api_summary(sim_stats: dict[str, Any], records: dict[str, Job | None]) -> dict[str, Any]:
    queries = sim_stats["queries_by_task_id"]
    beyond = sum(
        max(0, int(queries.get(job.remote_task_id, 0)) - job.poll_count)
        for job in records.values()
        if job is not None and job.remote_task_id
    )
    return {
        "requests": sim_stats["requests"],
        "submits": sum(sim_stats["submits_by_out_task_id"].values()),
        "queries": sum(queries.values()),
        "queries_beyond_polls": beyond,
    }


def _keep_events(sampler: ProgressSampler, path: Path) -> None:
    """Every progress event, one JSON object a line, for a closer look after the run."""
    with path.open("w") as out:
        for event in sampler.log.events:
            out.write(json.dumps(dataclasses.asdict(event)) + "\n")


def _rel(at: float | None, origin: float) -> float | None:
    return None if at is None else round(at - origin, 1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so every `with` stops what it started.
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
