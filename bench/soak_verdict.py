"""The soak's checks, as pure functions of what the run saw: imageq's job records, the
simulator's counters, the receiver's deliveries and the recovery after each fault.

- outcomes: every job ended as the simulator made it end (succeeded; or failed, for the
  reason injected: a remote failure, a safety refusal);
- lost: every job enqueued reached an outcome and was notified (a 2xx webhook);
- submitted twice: the simulator accepted each job's `out_task_id` at most once;
- notified twice: the receiver answered 2xx at most once per `webhook-id`;
- recovery: every job held up (by a fault or not) moved on within the promised bound (sweep
  grace + interval) of when its work was due, give or take the sampling resolution; and none
  whose work was due at a fault's end was left waiting for good.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bench.chaos import FaultRecord
from bench.progress import Progress, Resumed
from bench.soak_plan import SAFETY_MESSAGE, SoakJob
from imageq.worker.domain.job import Job

SAMPLE_LIMIT: Final = 10


def check_outcomes(
    jobs: Sequence[SoakJob],
    records: Mapping[str, Job | None],
    faults: Sequence[FaultRecord],
    enqueued_at: Mapping[str, float],
) -> dict[str, Any]:
    """Jobs that ended otherwise than the simulator made them end, grouped by what happened
    instead, each with the faults that were active while it ran."""
    wrong: list[dict[str, Any]] = []
    for job in jobs:
        record = records.get(job.job_id)
        if record is None or not record.is_terminal or _as_expected(job, record):
            continue  # a missing or unfinished job is counted as lost, not here
        wrong.append(
            {
                "job_id": job.job_id,
                "expected": f"{job.expected} ({job.failure})" if job.failure else job.expected,
                "got": str(record.status),
                "error": _error_text(record),
                "submit_attempts": record.submit_attempts,
                "poll_count": record.poll_count,
                "marker": job.marker,
                "faults_meanwhile": _faults_meanwhile(
                    faults, enqueued_at.get(job.job_id), record.finished_at
                ),
            }
        )
    # Kills come every 20-60 s and overlap nearly every job: the other faults tell causes apart.
    groups = Counter(
        f"{row['expected']} -> {row['got']}: {str(row['error'])[:90]} (during: {during})"
        for row in wrong
        for during in [", ".join(k for k in row["faults_meanwhile"] if k != "worker_sigkill")]
    )
    return {
        "passed": not wrong,
        "count": len(wrong),
        "by_cause": dict(groups.most_common()),
        "sample": wrong[:SAMPLE_LIMIT],
    }


def check_lost(
    jobs: Sequence[SoakJob],
    records: Mapping[str, Job | None],
    deliveries: Mapping[str, int],
    refused: Mapping[str, str],
) -> dict[str, Any]:
    """Jobs enqueued that have no outcome, or whose outcome was never delivered."""
    no_record, unfinished, unnotified = [], [], []
    for job in jobs:
        if job.job_id in refused:
            continue  # never taken: the producer was told so
        record = records.get(job.job_id)
        if record is None:
            no_record.append(job.job_id)
        elif not record.is_terminal:
            unfinished.append(f"{job.job_id} ({record.status}, polls {record.poll_count})")
        elif deliveries.get(job.job_id, 0) == 0:
            unnotified.append(f"{job.job_id} (webhook {record.webhook_state})")
    count = len(no_record) + len(unfinished) + len(unnotified)
    return {
        "passed": count == 0,
        "count": count,
        "no_record": no_record[:SAMPLE_LIMIT],
        "unfinished": unfinished[:SAMPLE_LIMIT],
        "not_notified": unnotified[:SAMPLE_LIMIT],
        "enqueue_refused": len(refused),
    }


def check_twice(counts: Mapping[str, int], job_ids: Sequence[str]) -> dict[str, Any]:
    """Jobs counted more than once (submits accepted, or 2xx deliveries)."""
    doubled = {job_id: counts[job_id] for job_id in job_ids if counts.get(job_id, 0) > 1}
    return {
        "passed": not doubled,
        "count": len(doubled),
        "sample": dict(list(doubled.items())[:SAMPLE_LIMIT]),
    }


def summarise_recovery(held_up: Sequence[Progress], resumed: Sequence[Resumed]) -> dict[str, Any]:
    """One fault's recovery: the jobs it held up (late events given to it) and the worst of
    them; the jobs whose work was due by its end, how many never moved again, and the longest
    any took to move on after the end."""
    worst = max(held_up, key=lambda event: event.late_s, default=None)
    moved = [row.resume_s for row in resumed if row.resume_s is not None]
    return {
        "held_up": len(held_up),
        "worst_late_s": round(worst.late_s, 1) if worst else 0.0,
        "worst_job": worst.job_id if worst else None,
        "due_at_end": len(resumed),
        "never_moved": len(resumed) - len(moved),
        "worst_resume_s": round(max(moved, default=0.0), 1),
    }


def check_recovery(
    per_fault: Sequence[dict[str, Any]],
    unattributed: Sequence[Progress],
    *,
    bound_s: float,
    resolution_s: float,
) -> dict[str, Any]:
    """Every late event within the bound (plus the sampling resolution), whichever fault
    held it up, or none; and no job left waiting for good after a fault."""
    limit_s = bound_s + resolution_s
    rows = [(f"{row['kind']} at {row['at_s']} s", row["recovery"]) for row in per_fault]
    rows.append(("no fault", summarise_recovery(unattributed, [])))
    over = [f"{name}: {rec['worst_late_s']} s ({rec['worst_job']})" for name, rec in rows
            if rec["worst_late_s"] > limit_s]  # fmt: skip
    stuck = [name for name, rec in rows if rec["never_moved"]]
    worst_name, worst = max(rows, key=lambda row: row[1]["worst_late_s"])
    return {
        "passed": not over and not stuck,
        "bound_s": bound_s,
        "resolution_s": resolution_s,
        "worst_late_s": worst["worst_late_s"],
        "worst_fault": worst_name,
        "held_up_without_fault": len(unattributed),
        "over_bound": over,
        "never_moved_after": stuck,
    }


def _as_expected(job: SoakJob, record: Job) -> bool:
    if str(record.status) != job.expected:
        return False
    if job.failure == "remote":
        return bool(record.error) and (record.error or {}).get("remote_status") == "failed"
    if job.failure == "safety":
        return SAFETY_MESSAGE in _error_text(record)
    return True


def _error_text(record: Job) -> str:
    error = record.error or {}
    return f"{error.get('type', '')}: {error.get('message', '')}"[:200] if error else ""


def _faults_meanwhile(
    faults: Sequence[FaultRecord], started: float | None, finished: float | None
) -> list[str]:
    if started is None:
        return []
    end = finished if finished is not None else float("inf")
    return sorted(
        {
            fault.kind
            for fault in faults
            if fault.started_at is not None
            and fault.started_at <= end
            and (fault.ended_at or fault.started_at) >= started
        }
    )
