"""The schedule a process holds (its `schedule.file`, read now), and whether it can run a tick.

A worker reads its own schedule file on every tick; the scheduler (beat) read its own when it
started and published it (`schedule_records`). `runnable` compares the two: a tick the worker
cannot run as beat meant it fails with a reason, instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageq.config import ScheduleSettings
from imageq.producers.scheduling.schedule_file import (
    ScheduledRun,
    ScheduleError,
    load_schedule,
    run_fingerprint,
    schedule_fingerprint,
)
from imageq.producers.scheduling.schedule_records import TickFailure


class TickFailed(ScheduleError):
    """A tick a worker cannot run; `reason` says why in a word, the message in a sentence."""

    def __init__(self, reason: TickFailure, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class HeldSchedule:
    """A process's schedule file and its runs; `problem` when it has none it can use."""

    file: str | None
    runs: dict[str, ScheduledRun] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    problem: TickFailed | None = None

    def report(self, at: float) -> dict[str, Any]:
        """What a worker reports of it (`ScheduleRecords.report_worker`)."""
        return {
            "file": self.file,
            "fingerprint": self.fingerprint,
            "error": None if self.problem is None else self.problem.message,
            "at": at,
        }


def hold_schedule(settings: ScheduleSettings) -> HeldSchedule:
    """Read `settings.file` now; a file that is unset, unreadable or invalid is a `problem`."""
    if settings.file is None:
        return HeldSchedule(
            None,
            problem=TickFailed(
                TickFailure.NO_SCHEDULE_FILE,
                "schedule.file (IMAGEQ_SCHEDULE__FILE) is not set on this worker",
            ),
        )
    path = Path(settings.file)
    try:
        runs = load_schedule(path)
    except OSError as error:
        reason = f"{path}: {error.strerror or error}"
        return HeldSchedule(settings.file, problem=TickFailed(TickFailure.FILE_UNREADABLE, reason))
    except ScheduleError as error:
        return HeldSchedule(settings.file, problem=TickFailed(TickFailure.FILE_INVALID, str(error)))
    return HeldSchedule(
        settings.file,
        runs={run.name: run for run in runs},
        fingerprints={run.name: run_fingerprint(run, path.parent) for run in runs},
        fingerprint=schedule_fingerprint(runs, path.parent),
    )


def runnable(held: HeldSchedule, name: str, published: Mapping[str, Any] | None) -> ScheduledRun:
    """The run a tick for `name` should run, from the worker's own file. Raises `TickFailed`
    when the worker has no usable file, no such run, or (when the scheduler has published its
    schedule) a run defined otherwise than the scheduler's."""
    if held.problem is not None:
        raise held.problem
    run = held.runs.get(name)
    if run is None:
        raise TickFailed(
            TickFailure.UNKNOWN_RUN, f"no run named {name!r} in this worker's {held.file}"
        )
    theirs = _published_run(published, name)
    ours = held.fingerprints[name]
    if published is not None and theirs is not None and theirs.get("fingerprint") != ours:
        raise TickFailed(
            TickFailure.RUN_DIFFERS,
            f"this worker's {held.file} defines run {name!r} otherwise than the scheduler's"
            f" {published.get('file')} (fingerprint {ours}, the scheduler's"
            f" {theirs.get('fingerprint')})",
        )
    return run


def _published_run(published: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    for run in (published or {}).get("runs", []):
        if run.get("name") == name:
            return dict(run)
    return None
