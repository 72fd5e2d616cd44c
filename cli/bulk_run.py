"""`imageq bulk FILE`: a JSONL or CSV file of jobs run as one batch. Without --wait it queues the
batch and returns its id at once (a paced batch paces itself in Redis); with --wait it shows
live progress and writes the final manifest when the batch ends. The same file with the same
--batch-id resumes: done jobs are not submitted again."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from imageq.cli.contract import json_mode
from imageq.cli.estimate import estimate_json, estimate_rows, print_estimate
from imageq.cli.exits import Exit, exit_for
from imageq.cli.views import err, fail, summary_table
from imageq.config import get_settings
from imageq.ops.palette import STATUS_COLOURS
from imageq.ops.terminal_text import shown
from imageq.producers.api import ImageQueue, new_batch_id
from imageq.producers.bulkfile import BulkRow, RowError, read_bulk_file
from imageq.producers.manifest import (
    manifest_entry_for_error,
    manifest_entry_for_job,
    summarize,
    write_manifest,
)
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import BulkFileError, InvalidParams

"""The exit code after Ctrl-C (128 + SIGINT), as shells report it."""


def bulk(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL or CSV.")],
    batch_id: Annotated[str | None, typer.Option("--batch-id", help="Resume this batch.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the batch to its end.")] = False,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="At most N of its jobs running at once.")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="With --wait: where to write the final manifest.")
    ] = None,
    webhook: Annotated[str | None, typer.Option(help="Batch webhook, when all end.")] = None,
    interval: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds between refreshes.")
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Summary as JSON.")] = False,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="Print the expected cost and time; queue nothing.")
    ] = False,
    max_credits: Annotated[
        float | None,
        typer.Option(min=0, help="Credit budget: past it, the remaining jobs end cancelled."),
    ] = None,
) -> None:
    """Run every valid row of FILE as one batch; print each refused row's line and reason.

    Without --wait: queue the batch, print its id and return at once (find it again with
    `imageq batches show ID`). With --wait: follow it to its end, then write the manifest (to
    --manifest, else FILE.BATCH_ID.manifest.jsonl beside FILE). --concurrency N paces the
    batch in Redis: each job that ends starts the next, whether or not this command still runs.
    A row whose job id is already known for the same job is not queued again; for a different
    job it is refused, as an invalid row.

    --estimate: the expected credits and time of FILE's valid rows, from recent jobs of each
    quality and resolution (and which have too few samples); nothing is queued. --max-credits N:
    once the batch's spent credits plus the estimates of its jobs in flight and of the next one
    would pass N, it submits nothing more and its remaining jobs end cancelled, reason `budget`
    (see docs/cost.md).
    """
    if manifest is not None and not wait:
        hint = "the manifest is written when the batch ends; or later: imageq batches show ID"
        raise fail(f"--manifest needs --wait ({hint} --manifest PATH)", Exit.INVALID)
    if manifest is not None and not manifest.parent.is_dir():
        raise fail(f"--manifest {manifest}: no such folder", Exit.INVALID)
    try:
        rows, errors = read_bulk_file(file)
    except (BulkFileError, OSError) as error:
        raise fail(str(error), Exit.INVALID) from None
    say = _quiet if as_json else err.print  # with --json, all of it is in the one object
    for refused in errors:
        say(shown(f"line {refused.line}: {refused.reason}", style="yellow"))
    if not rows:
        raise fail(f"{file}: no valid rows", Exit.INVALID)
    if estimate:
        _estimate(rows, refused=len(errors), concurrency=concurrency, as_json=as_json)
        return
    batch_id = batch_id or new_batch_id()  # named first, so Ctrl-C can say how to resume
    resume = _resume_command(
        file, batch_id, concurrency=concurrency, manifest=manifest, max_credits=max_credits
    )
    queue = ImageQueue(get_settings())
    try:
        report = queue.enqueue_many(
            [row.options for row in rows],
            lines=[row.line for row in rows],
            batch_id=batch_id,
            webhook_url=webhook,
            concurrency=concurrency,
            refused=[(row.line, row.reason) for row in errors],
            max_credits=max_credits,
        )
    except InvalidParams as error:
        raise fail(str(error), Exit.INVALID) from None
    except KeyboardInterrupt:
        raise _interrupted(batch_id, resume) from None
    for line, reason in report.errors:  # refused by enqueue: a webhook target, a known id...
        say(shown(f"line {line}: {reason}", style="yellow"))
        errors.append(RowError(line, reason))
    errors.sort(key=lambda row: row.line)
    say(
        shown(
            f"batch {batch_id}: {report.queued} queued, {report.already_known} already known,"
            f" {len(errors)} invalid row(s) skipped"
            + (f", paced {concurrency} at a time" if concurrency else "")
            + (f", budget {max_credits:g} credits" if max_credits is not None else "")
        )
    )
    result: dict[str, Any] = {
        "batch_id": batch_id,
        "queued": report.queued,
        "already_known": report.already_known,
        "refused": [{"line": row.line, "reason": row.reason} for row in errors],
        "concurrency": concurrency,
        "max_credits": max_credits,
        "resume": resume,
        "manifest": None,
        "summary": None,
    }
    refused_code = Exit.NOT_ALL_SUCCEEDED if errors else Exit.OK
    if not wait:
        hint = f"follow it: imageq batches show {batch_id}\nresume it: {resume}"
        say(shown(hint), soft_wrap=True)
        typer.echo(json.dumps(result) if as_json else batch_id)
        raise typer.Exit(refused_code)
    try:
        _follow(queue, batch_id, total=len(report.jobs), interval_s=interval, visible=not as_json)
    except KeyboardInterrupt:
        raise _interrupted(batch_id, resume) from None
    jobs = queue.batch_jobs(batch_id)
    entries = [manifest_entry_for_job(line, job) for line, job in jobs.items()]
    entries += [manifest_entry_for_error(refused) for refused in errors]
    try:
        path = write_manifest(manifest or _default_manifest(file, batch_id), entries)
    except OSError as error:
        raise fail(f"the manifest: {error}", Exit.INVALID) from None
    result |= {"manifest": str(path), "summary": summarize(entries)}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        err.print(summary_table(result["summary"], title=f"batch {batch_id}"))
        typer.echo(str(path))
    code = exit_for([job.status for job in jobs.values()])
    raise typer.Exit(refused_code or code)


def _estimate(rows: list[BulkRow], *, refused: int, concurrency: int | None, as_json: bool) -> None:
    """`--estimate`: print what the rows would cost and take; nothing is queued."""
    settings = get_settings()
    # Without --concurrency, as many run at once as the in-flight cap (or a worker) allows.
    at_once = concurrency or settings.limits.max_in_flight or settings.worker.concurrency
    found = estimate_rows(settings, rows, concurrency=at_once)
    result = estimate_json(found, rows=len(rows), refused=refused, concurrency=at_once)
    print_estimate(result, as_json=as_json, min_samples=settings.cost.estimate_min_samples)


def _interrupted(batch_id: str, resume: str) -> typer.Exit:
    """Ctrl-C: the jobs already queued are the workers' now; say so, and how to go on."""
    if json_mode():
        message = (
            f"interrupted: the jobs of batch {batch_id} already queued keep running;"
            f" resume: {resume}"
        )
        return fail(message, Exit.INTERRUPTED, kind="interrupted")
    err.print(
        shown(
            f"\ninterrupted: the jobs of batch {batch_id} already queued keep running in the"
            f" workers (a paced batch keeps pacing itself).\n"
            f"see them: imageq batches show {batch_id}\n"
            f"resume (queues what is missing, submits nothing twice, follows it): {resume}",
            style="yellow",
        ),
        soft_wrap=True,  # the command on one line, to copy
    )
    return typer.Exit(Exit.INTERRUPTED)


def _resume_command(
    file: Path,
    batch_id: str,
    *,
    concurrency: int | None,
    manifest: Path | None,
    max_credits: float | None = None,
) -> str:
    words = ["imageq", "bulk", str(file), "--batch-id", batch_id, "--wait"]
    words += ["--concurrency", str(concurrency)] if concurrency else []
    words += ["--manifest", str(manifest)] if manifest else []
    words += ["--max-credits", f"{max_credits:g}"] if max_credits is not None else []
    return shlex.join(words)


def _follow(
    queue: ImageQueue, batch_id: str, *, total: int, interval_s: float, visible: bool
) -> None:
    """Until every job of the batch has ended; with `visible`, live progress on stderr."""
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
    with Progress(*columns, console=err, disable=not visible) as progress:
        task = progress.add_task(batch_id, total=total, counts="", rate="")
        while True:
            batch = queue.batch(batch_id)
            elapsed_min = max(time.monotonic() - started, 1e-6) / 60
            progress.update(
                task,
                total=batch.total,
                completed=batch.finished,
                counts=_counts(batch),
                rate=f"{batch.finished / elapsed_min:.1f}/min",
            )
            if batch.finished >= batch.total:
                return
            time.sleep(interval_s)


_COUNTS: Final = (
    ("queued", JobStatus.QUEUED),
    ("running", JobStatus.SUBMITTED),
    ("ok", JobStatus.SUCCEEDED),
    ("failed", JobStatus.FAILED),
    ("timed out", JobStatus.TIMED_OUT),
)


def _counts(batch: Batch) -> str:
    parts = [
        f"[{STATUS_COLOURS[status].terminal}]{label} {batch.count(status)}[/]"
        for label, status in _COUNTS
    ]
    return " · ".join(parts)


def _quiet(*_: Any, **__: Any) -> None:
    """Prints nothing: with --json, the command's one object says it all."""


def _default_manifest(file: Path, batch_id: str) -> Path:
    return file.with_name(f"{file.stem}.{batch_id}.manifest.jsonl")
