"""What `imageq schedules` and `imageq schedules check` show, as plain JSON objects: pure, from
what the scheduler published, the ticks the workers recorded, and the batches they made.

Times are ISO 8601 UTC (`iso_time`). The text views (cli/schedules.py) are drawn from these
same objects, so a person and a script see the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from imageq.producers.scheduling.schedule_file import RunFault, ScheduledRun, next_runs
from imageq.producers.scheduling.schedule_records import Tick
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.payload import iso_time

NEXT_RUNS: Final = 3
LAST_RUNS: Final = 5
BATCH_COUNTS: Final = ("queued", "submitted", "succeeded", "failed", "timed_out", "cancelled")


def schedules_view(
    published: Mapping[str, Any] | None,
    ticks: Mapping[str, Sequence[Tick]],
    batches: Mapping[str, Batch | None],
    reports: Mapping[str, Mapping[str, Any]],
    *,
    now: float,
) -> dict[str, Any]:
    """The `imageq schedules` object: the scheduler, each run (the scheduler's, then any other
    a worker recorded ticks for) with its next and last runs, and each worker's schedule file.
    `ticks` are newest first; `batches` holds the batch of every queued tick (None if gone)."""
    scheduler = None if published is None else _scheduler(published, now)
    runs = list((published or {}).get("runs", []))
    names = [run["name"] for run in runs]
    schedules = [_published_run(run, now) for run in runs]
    schedules += [_unpublished_run(name) for name in sorted(ticks) if name not in names]
    for schedule in schedules:
        schedule["last_runs"] = [
            _last_run(tick, batches) for tick in ticks.get(schedule["name"], [])[:LAST_RUNS]
        ]
    fingerprint = None if published is None else published.get("fingerprint")
    workers = [
        {
            "worker": worker,
            "file": report.get("file"),
            "fingerprint": report.get("fingerprint"),
            "error": report.get("error"),
            "reported_at": iso_time(report.get("at")),
            "matches": None if published is None else report.get("fingerprint") == fingerprint,
        }
        for worker, report in sorted(reports.items())
    ]
    return {"scheduler": scheduler, "schedules": schedules, "workers": workers}


def check_view(
    file: Path,
    runs: Sequence[ScheduledRun],
    faults: Sequence[RunFault],
    *,
    now: float,
    file_found: Callable[[Path], bool],
) -> dict[str, Any]:
    """The `imageq schedules check FILE` object: valid or not, every fault, and each valid
    run's next fire times and whether `file_found` finds its bulk file."""
    after = datetime.fromtimestamp(now, UTC)
    return {
        "file": str(file),
        "valid": not faults,
        "errors": [
            {"run": f.run, "name": f.name, "field": f.field, "message": f.message} for f in faults
        ],
        "runs": [
            {
                "name": run.name,
                "cron": run.cron,
                "every_s": run.every_s,
                "file": str(run.file),
                "file_found": file_found(run.file),
                "next_runs": _iso(next_runs(run, after=after, count=NEXT_RUNS)),
            }
            for run in runs
        ],
    }


def scheduler_is_stale(published: Mapping[str, Any], now: float) -> bool:
    """True once the active beat has not published for longer than a standby takes to take
    over (twice its lock timeout and a loop): no beat is running this schedule."""
    limit = 2 * float(published.get("lock_timeout_s", 30)) + float(
        published.get("loop_interval_s", 5)
    )
    return now - float(published.get("published_at", 0)) > limit


def _scheduler(published: Mapping[str, Any], now: float) -> dict[str, Any]:
    return {
        "host": published.get("host"),
        "file": published.get("file"),
        "fingerprint": published.get("fingerprint"),
        "published_at": iso_time(published.get("published_at")),
        "running": not scheduler_is_stale(published, now),
    }


def _published_run(run: Mapping[str, Any], now: float) -> dict[str, Any]:
    definition = ScheduledRun(
        run["name"], Path(run["file"]), cron=run.get("cron"), every_s=run.get("every_s")
    )
    due: float | None = run.get("next_run_at")
    after = datetime.fromtimestamp(now, UTC)
    # Beat's own next due time anchors an interval run's later ones; one already past (due
    # now, or a beat that stopped) says nothing about them.
    first = datetime.fromtimestamp(due, UTC) if due is not None and due > now else None
    return {
        "name": run["name"],
        "in_schedule": True,
        "cron": run.get("cron"),
        "every_s": run.get("every_s"),
        "file": run["file"],
        "webhook": bool(run.get("webhook")),
        "fingerprint": run.get("fingerprint"),
        "due_at": iso_time(due),
        "next_runs": _iso(next_runs(definition, after=after, count=NEXT_RUNS, first=first)),
    }


def _unpublished_run(name: str) -> dict[str, Any]:
    # Ticks recorded for a run the scheduler does not (or no longer) publish.
    return {
        "name": name,
        "in_schedule": False,
        "cron": None,
        "every_s": None,
        "file": None,
        "webhook": False,
        "fingerprint": None,
        "due_at": None,
        "next_runs": [],
    }


def _last_run(tick: Tick, batches: Mapping[str, Batch | None]) -> dict[str, Any]:
    batch = batches.get(tick.batch_id) if tick.batch_id and not tick.failed else None
    return {
        "at": iso_time(tick.at),
        "worker": tick.worker,
        "slot": tick.slot,
        "batch_id": tick.batch_id,
        "outcome": _outcome(tick, batch),
        "reason": tick.reason,
        "message": tick.message,
        "batch": None if batch is None else _batch(batch),
    }


def _outcome(tick: Tick, batch: Batch | None) -> str:
    """failed (the tick), queued (its batch under way), complete, or gone (batch expired)."""
    if tick.failed:
        return "failed"
    if batch is None:
        return "gone"
    return "complete" if batch.is_complete else "queued"


def _batch(batch: Batch) -> dict[str, Any]:
    return {
        "total": batch.total,
        "finished": batch.finished,
        "complete": batch.is_complete,
        "counts": {name: batch.counts.get(name, 0) for name in BATCH_COUNTS},
        "credits_used": round(batch.credits_used, 6),
    }


def _iso(times: Sequence[datetime]) -> list[str | None]:
    return [iso_time(moment.timestamp()) for moment in times]
