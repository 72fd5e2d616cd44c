"""`imageq bulk FILE`: a JSONL or CSV file of jobs run as one batch, with live progress and a
manifest at the end. The same file with the same --batch-id resumes: done jobs are not
submitted again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from imageq.cli.exits import Exit, exit_for
from imageq.cli.views import err, fail, summary_table
from imageq.config import get_settings
from imageq.ops.palette import STATUS_COLOURS
from imageq.ops.terminal_text import shown
from imageq.producers.api import BatchReport, ImageQueue
from imageq.producers.bulkfile import RowError, read_bulk_file
from imageq.producers.manifest import (
    manifest_entry_for_error,
    manifest_entry_for_job,
    summarize,
    write_manifest,
)
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import BulkFileError, InvalidParams


def bulk(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL or CSV.")],
    batch_id: Annotated[str | None, typer.Option("--batch-id", help="Resume this batch.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the batch to its end.")] = False,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="At most N of its jobs unfinished at once.")
    ] = None,
    manifest: Annotated[Path | None, typer.Option(help="Where to write the manifest.")] = None,
    webhook: Annotated[str | None, typer.Option(help="Batch webhook, when all end.")] = None,
    interval: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds between refreshes.")
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Summary as JSON.")] = False,
) -> None:
    """Run every valid row of FILE as one batch; report invalid rows by line and skip them.

    A row whose job id is already known for the same job is not queued again; for a different
    job it is refused, as an invalid row.
    """
    try:
        rows, errors = read_bulk_file(file)
    except (BulkFileError, OSError) as error:
        raise fail(str(error), Exit.INVALID) from None
    for refused in errors:
        err.print(shown(f"line {refused.line}: {refused.reason}", style="yellow"))
    if not rows:
        raise fail(f"{file}: no valid rows", Exit.INVALID)
    if manifest is not None and not manifest.parent.is_dir():
        raise fail(f"--manifest {manifest}: no such folder", Exit.INVALID)
    queue = ImageQueue(get_settings())
    try:
        report = queue.enqueue_many(
            [row.options for row in rows],
            lines=[row.line for row in rows],
            batch_id=batch_id,
            webhook_url=webhook,
            hold=concurrency is not None,
        )
    except InvalidParams as error:
        raise fail(str(error), Exit.INVALID) from None
    for line, reason in report.errors:  # refused by enqueue: a webhook target, a known id...
        err.print(shown(f"line {line}: {reason}", style="yellow"))
        errors.append(RowError(line, reason))
    err.print(
        shown(
            f"batch {report.batch_id}: {report.queued} queued, {report.already_known}"
            f" already known, {len(errors)} invalid row(s) skipped"
            f" (resume with --batch-id {report.batch_id})"
        )
    )
    if wait or concurrency:
        _follow(queue, report, wait=wait, concurrency=concurrency, interval_s=interval)
    jobs = queue.batch_jobs(report.batch_id)
    entries = [manifest_entry_for_job(line, job) for line, job in jobs.items()]
    entries += [manifest_entry_for_error(refused) for refused in errors]
    try:
        path = write_manifest(manifest or _default_manifest(file, report.batch_id), entries)
    except OSError as error:
        raise fail(f"the manifest: {error}", Exit.INVALID) from None
    summary = summarize(entries)
    if as_json:
        result = {"batch_id": report.batch_id, "manifest": str(path), "summary": summary}
        typer.echo(json.dumps(result))
    else:
        err.print(summary_table(summary, title=f"batch {report.batch_id}"))
        typer.echo(str(path))
    code = exit_for([job.status for job in jobs.values()])
    raise typer.Exit(Exit.NOT_ALL_SUCCEEDED if errors else code)


def _follow(
    queue: ImageQueue,
    report: BatchReport,
    *,
    wait: bool,
    concurrency: int | None,
    interval_s: float,
) -> None:
    """Show live progress; release held jobs as room frees; end when all end (with --wait)
    or when all are released."""
    held = [
        job.job_id
        for _, job in sorted(queue.batch_jobs(report.batch_id).items())
        if job.held and not job.is_terminal
    ]
    started = time.monotonic()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task(report.batch_id, total=len(report.jobs), counts="", rate="")
        while True:
            batch = queue.batch(report.batch_id)
            if concurrency and held:
                active = batch.count_active() - len(held)
                for job_id in held[: max(0, concurrency - active)]:
                    queue.release(job_id)
                held = held[max(0, concurrency - active) :]
            elapsed_min = max(time.monotonic() - started, 1e-6) / 60
            progress.update(
                task,
                completed=batch.finished,
                counts=_counts(batch, held=len(held)),
                rate=f"{batch.finished / elapsed_min:.1f}/min",
            )
            if batch.finished >= batch.total or (not wait and not held):
                return
            time.sleep(interval_s)


_COUNTS: Final = (
    ("queued", JobStatus.QUEUED),
    ("running", JobStatus.SUBMITTED),
    ("ok", JobStatus.SUCCEEDED),
    ("failed", JobStatus.FAILED),
    ("timed out", JobStatus.TIMED_OUT),
)


def _counts(batch: Batch, *, held: int) -> str:
    parts = [
        f"[{STATUS_COLOURS[status].terminal}]{label} {batch.count(status)}[/]"
        for label, status in _COUNTS
    ]
    return " · ".join(parts + ([f"held {held}"] if held else []))


def _default_manifest(file: Path, batch_id: str) -> Path:
    return file.with_name(f"{file.stem}.{batch_id}.manifest.jsonl")
