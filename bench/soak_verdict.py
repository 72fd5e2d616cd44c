"""The soak's checks, as pure functions of what the run saw: imageq's job records, the
simulator's counters, the receiver's deliveries and the recovery after each fault.

- outcomes: every job ended as the simulator made it end (succeeded; or failed, for the
  reason injected: a remote failure, a safety refusal);
- lost: every job enqueued reached an outcome and was notified (a 2xx webhook);
- submitted twice: the simulator accepted each job's `out_task_id` at most once;
- notified twice: the receiver answered 2xx at most once per `webhook-id`;
- recovery: after every fault, each job then waiting moved on within the promised bound
  (sweep grace + interval) of when its work was due, give or take the sampling resolution.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bench.chaos import FaultRecord
from bench.progress import Recovery
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


def summarise_recovery(found: Sequence[Recovery], *, late_after_s: float) -> dict[str, Any]:
    """One fault's recovery: jobs waiting when it ended, how many were held up (late by more
    than `late_after_s`), how many never moved again, and the worst of each measure."""
    moved = [row for row in found if row.late_s is not None and row.resume_s is not None]
    worst = max(moved, key=lambda row: row.late_s or 0.0, default=None)
    return {
        "waiting": len(found),
        "late": sum(1 for row in moved if (row.late_s or 0.0) > late_after_s),
        "never_moved": len(found) - len(moved),
        "worst_late_s": round(worst.late_s, 1) if worst and worst.late_s is not None else 0.0,
        "worst_job": worst.job_id if worst else None,
        "worst_resume_s": round(max((row.resume_s or 0.0 for row in moved), default=0.0), 1),
    }


def check_recovery(
    per_fault: Sequence[dict[str, Any]], *, bound_s: float, resolution_s: float
) -> dict[str, Any]:
    """Every fault's worst lateness within the bound (plus the sampling resolution)."""
    over = [row for row in per_fault if row["recovery"]["worst_late_s"] > bound_s + resolution_s]
    worst = max(per_fault, key=lambda row: row["recovery"]["worst_late_s"], default=None)
    return {
        "passed": not over,
        "bound_s": bound_s,
        "resolution_s": resolution_s,
        "worst_late_s": worst["recovery"]["worst_late_s"] if worst else 0.0,
        "worst_fault": f"{worst['kind']} at {worst['at_s']} s" if worst else None,
        "over_bound": [
            f"{row['kind']} at {row['at_s']} s: {row['recovery']['worst_late_s']} s"
            f" ({row['recovery']['worst_job']})"
            for row in over
        ],
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
