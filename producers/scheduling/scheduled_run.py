"""A scheduled run's tick: its bulk file queued as the batch of the slot the tick belongs to.

The batch id is the slot's (`schedule_file.batch_id_for`), so a tick sent twice, or run
late within its slot, resumes the same batch and submits nothing twice. Rows refused at tick
time are noted on the batch before any of its jobs exists, so the manifest lists them too. The
manifest is written by the batch's own callback (`SCHEDULED_RUN_FINISHED_TASK`), which the
worker calls once, when the batch's last job is terminal and its outputs are saved. A file
without a valid row gets its manifest at once and no batch.

A tick that cannot make its batch (no schedule file on this worker, no such run, a run defined
otherwise than the scheduler's, an unreadable bulk file, no valid row, ...) fails loudly: an
error line naming the run and the reason, `imageq_scheduled_ticks_failed{reason}`, and a tick
record (`schedule_records`) that `imageq schedules` and `imageq health` show. A tick that
queued its batch is recorded too, with the batch id.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from imageq.producers.bulkfile import Parsed, RowError, read_bulk_file
from imageq.producers.jobs import check_webhook_url
from imageq.producers.manifest import (
    manifest_entry_for_error,
    manifest_entry_for_job,
    write_manifest,
)
from imageq.producers.scheduling.held_schedule import TickFailed, hold_schedule, runnable
from imageq.producers.scheduling.schedule_file import ScheduledRun, batch_id_for, slot_of
from imageq.producers.scheduling.schedule_records import ScheduleRecords, Tick, TickFailure
from imageq.worker.domain.job import Job
from imageq.worker.errors import ImageqError, InvalidParams
from imageq.worker.metrics import SCHEDULED_TICKS_FAILED
from imageq.worker.runtime import Runtime

if TYPE_CHECKING:
    from imageq.producers.api import ImageQueue

SCHEDULED_RUN_TASK: Final = "imageq.scheduled_run"
"""The task beat sends on each tick: `[run name]`, or `[run name, tick time]` on a retry."""

SCHEDULED_RUN_FINISHED_TASK: Final = "imageq.scheduled_run_finished"
"""The batch callback of a scheduled run: called once with the batch payload; writes the
manifest."""

SCHEDULED_NOTE: Final = "scheduled_run"
"""The batch note that marks a scheduled run's batch: {run, slot, invalid_rows}."""

_LOGGED_ROWS: Final = 20

log = logging.getLogger(__name__)


def run_scheduled(
    rt: Runtime,
    queue: ImageQueue,
    name: str,
    *,
    tick_at: datetime,
    worker: str | None = None,
    records: ScheduleRecords | None = None,
) -> str | None:
    """Queue run `name`'s bulk file as the batch of the slot `tick_at` falls in. Returns the
    batch id, or None when no batch could be made: the tick failed, and that is logged as an
    error, counted and recorded (why, when, on which worker) for `imageq schedules`."""
    records = records or ScheduleRecords.connect(rt.settings)
    worker = worker or _this_process()
    held = hold_schedule(rt.settings.schedule)
    records.report_worker(worker, held.report(rt.clock()))
    tick = Tick(name, rt.clock(), worker)
    try:
        run = runnable(held, name, records.published_schedule())
        slot = slot_of(run, tick_at)
        batch_id = batch_id_for(run, slot)
        tick = replace(tick, batch_id=batch_id, slot=slot.isoformat())
        rows, refused = _read_run(rt, run)
        note = {"run": name, "slot": slot.isoformat(), "invalid_rows": _rows_of(refused)}
        if not rows:
            _log_refused(batch_id, refused)
            save_run_manifest(rt, batch_id, {}, note)
            raise TickFailed(TickFailure.NO_VALID_ROWS, f"{run.file}: no valid row; no batch made")
    except TickFailed as failure:
        _fail(records, tick, failure)
        return None
    # Noted before the batch's first job exists, so the batch cannot end without it.
    rt.store.note_batch(batch_id, SCHEDULED_NOTE, note)
    report = queue.enqueue_many(
        [row.options for row in rows],
        lines=[row.line for row in rows],
        batch_id=batch_id,
        webhook_url=run.webhook,
        callback=RUN_FINISHED_CALLBACK,
        name=name,
        lane="bulk",
    )
    if report.errors:  # rows refused by enqueue itself, such as a webhook target it may not call
        refused = [*refused, *(RowError(line, reason) for line, reason in report.errors)]
        note["invalid_rows"] = _rows_of(refused)
        rt.store.note_batch(batch_id, SCHEDULED_NOTE, note)
    _log_refused(batch_id, refused)
    if not report.jobs:
        save_run_manifest(rt, batch_id, {}, note)
    records.record_tick(tick)
    log.info(
        "scheduled run %s: batch %s (slot %s): %d queued, %d already known, %d invalid row(s)",
        name, batch_id, slot.isoformat(), report.queued, report.already_known, len(refused),
    )  # fmt: skip
    return batch_id


def _read_run(rt: Runtime, run: ScheduledRun) -> Parsed:
    """The run's bulk file, read now, once its webhook is known to be allowed."""
    try:
        check_webhook_url(rt.settings, run.webhook)
    except InvalidParams as error:
        raise TickFailed(TickFailure.WEBHOOK_REFUSED, str(error)) from None
    try:
        return read_bulk_file(run.file)
    except (OSError, ImageqError) as error:
        raise TickFailed(TickFailure.BULK_FILE_UNREADABLE, f"{run.file}: {error}") from None


def _fail(records: ScheduleRecords, tick: Tick, failure: TickFailed) -> None:
    """Fail a tick loudly: an error line naming the run and the reason, the metric, the record."""
    where = f", batch {tick.batch_id}" if tick.batch_id else ""
    log.error(
        "scheduled run %s%s: tick failed (%s): %s",
        tick.run, where, failure.reason, failure.message,
    )  # fmt: skip
    SCHEDULED_TICKS_FAILED.labels(reason=failure.reason).inc()
    records.record_tick(replace(tick, reason=failure.reason, message=failure.message))


def _this_process() -> str:
    return f"pid{os.getpid()}@{socket.gethostname()}"


RUN_FINISHED_CALLBACK: Final = {
    "task": SCHEDULED_RUN_FINISHED_TASK,
    "args": [],
    "kwargs": {},
    "options": {},
}
"""The Celery signature (as JSON) that a scheduled run's batch calls when it ends."""


def finish_run(rt: Runtime, queue: ImageQueue, payload: Mapping[str, Any]) -> Path | None:
    """The batch callback of a scheduled run: write its manifest (jobs and refused rows).
    A batch that is not a scheduled run's (no note) is logged and left alone."""
    batch_id = str(payload["batch_id"])
    note = rt.store.read_batch_note(batch_id, SCHEDULED_NOTE)
    if note is None:
        log.warning("batch %s: not a scheduled run's batch; no manifest written", batch_id)
        return None
    return save_run_manifest(rt, batch_id, queue.batch_jobs(batch_id), note)


def save_run_manifest(
    rt: Runtime, batch_id: str, jobs: Mapping[int, Job | None], note: Mapping[str, Any]
) -> Path | None:
    """Write `{schedule.manifest_dir}/{batch_id}.jsonl`: an entry per job and per refused row
    of the note. A write that fails is logged, not raised: it must not hold back the batch's
    notifications."""
    entries = [manifest_entry_for_job(line, job) for line, job in jobs.items() if job is not None]
    entries += [
        manifest_entry_for_error(RowError(line, reason)) for line, reason in note["invalid_rows"]
    ]
    path = Path(rt.settings.schedule.manifest_dir) / f"{batch_id}.jsonl"
    try:
        write_manifest(path, entries)
    except OSError as error:
        log.error("batch %s: manifest not written to %s: %s", batch_id, path, error)
        return None
    log.info("batch %s: manifest written to %s (%d entries)", batch_id, path, len(entries))
    return path


def _rows_of(refused: Sequence[RowError]) -> list[list[Any]]:
    return [[error.line, error.reason] for error in refused]


def _log_refused(batch_id: str, refused: Sequence[RowError]) -> None:
    for error in refused[:_LOGGED_ROWS]:
        log.warning("batch %s: line %d refused: %s", batch_id, error.line, error.reason)
    if len(refused) > _LOGGED_ROWS:
        log.warning("batch %s: %d more line(s) refused", batch_id, len(refused) - _LOGGED_ROWS)
