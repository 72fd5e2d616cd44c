"""`imageq jobs` and `imageq batches`: find your work again without keeping every id.

Both list newest first, a page at a time, from the store's indexes (never a scan of all keys);
a page that is not the last ends with the cursor of the next. `batches show ID` gives a batch's
counts, progress and its manifest rows, and with --manifest writes them as the manifest file.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.table import Table

from imageq.cli.exits import Exit
from imageq.cli.views import BATCH_COLUMNS, err, fail, out
from imageq.config import get_settings
from imageq.ops.palette import STATUS_COLOURS
from imageq.ops.terminal_text import shown
from imageq.producers.api import ImageQueue
from imageq.producers.bulkfile import RowError
from imageq.producers.manifest import (
    manifest_entry_for_error,
    manifest_entry_for_job,
    summarize,
    write_manifest,
)
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.cost import BUDGET_REASON, batch_credits, credits_text
from imageq.worker.domain.job import Job
from imageq.worker.domain.payload import iso_time
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import InvalidParams, JobNotFound
from imageq.worker.store.job_index import MAX_LIMIT

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_PROMPT_WIDTH: Final = 48
_STATUSES: Final = frozenset(str(status) for status in JobStatus)

Since = Annotated[
    str | None,
    typer.Option(help="Created at or after: ISO 8601 (UTC if no offset), or an age: 90s, 1h, 2d."),
]
Until = Annotated[
    str | None, typer.Option(help="Created at or before: ISO 8601, or an age (1h: an hour ago).")
]
Limit = Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="At most this many per page.")]
Cursor = Annotated[
    str | None, typer.Option(help="Continue a listing: the next_cursor its last page printed.")
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON for scripts.")]


def parse_when(text: str, *, now: float) -> float:
    """A point in time (epoch s) from ISO 8601 (a naive one is UTC) or an age before `now`
    ("90s", "15m", "1h", "2d", "1w"); raises `InvalidParams` naming what is accepted."""
    value = text.strip()
    if match := _RELATIVE.fullmatch(value.lower()):
        return now - float(match[1]) * _UNITS[match[2]]
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        allowed = "ISO 8601 (2026-12-06T10:00:00Z) or an age such as 90s, 15m, 1h, 2d, 1w"
        raise InvalidParams("time", f"{text!r} is not {allowed}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def job_row(job: Job) -> dict[str, Any]:
    """A job as one listing entry: what it is, where it stands, when, and why it failed."""
    error = job.error or None
    return {
        "job_id": job.job_id,
        "status": str(job.status),
        "held": job.held,
        "batch_id": job.batch_id,
        "prompt": job.params.get("prompt"),
        "aspect_ratio": job.params.get("aspect_ratio"),
        "resolution": job.params.get("resolution"),
        "quality": job.params.get("quality"),
        "metadata": job.metadata,
        "created_at": iso_time(job.created_at),
        "finished_at": iso_time(job.finished_at),
        "error": {"type": error.get("type"), "message": error.get("message")} if error else None,
    }


def batch_row(batch: Batch) -> dict[str, Any]:
    """A batch as one listing entry: its counts and how far it has got."""
    return {
        "batch_id": batch.batch_id,
        "name": batch.name,
        "total": batch.total,
        "finished": batch.finished,
        "progress": round(batch.finished / batch.total, 4) if batch.total else 1.0,
        "complete": batch.is_complete,
        "counts": {name: batch.counts.get(name, 0) for name in BATCH_COLUMNS},
        "created_at": iso_time(batch.created_at),
        "completed_at": iso_time(batch.completed_at),
        **batch_credits(batch),
    }


def jobs(
    status: Annotated[
        list[JobStatus] | None, typer.Option("--status", help="Only this status (repeatable).")
    ] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Only this batch's jobs.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 20,
    cursor: Cursor = None,
    as_json: AsJson = False,
) -> None:
    """List jobs, newest first: by status, batch and creation time, a page at a time."""
    queue = ImageQueue(get_settings())
    try:
        page = queue.jobs(
            statuses=status or [], batch_id=batch, cursor=cursor, limit=limit,
            **_time_range(since, until),
        )  # fmt: skip
    except InvalidParams as error:
        raise fail(str(error), Exit.INVALID) from None
    rows = [job_row(job) for job in page.items]
    if as_json:
        typer.echo(json.dumps({"jobs": rows, "count": len(rows), "next_cursor": page.next_cursor}))
        return
    table = Table(title=f"{len(rows)} job(s), newest first")
    for name in ("job", "status", "created", "finished", "batch", "prompt"):
        timely = name in ("created", "finished")
        table.add_column(name, overflow="fold" if name == "job" else "ellipsis", no_wrap=timely)
    for row in rows:
        table.add_row(
            shown(row["job_id"]),
            shown(
                row["status"] + (" (held)" if row["held"] else ""),
                style=STATUS_COLOURS[JobStatus(row["status"])].terminal,
            ),
            row["created_at"] or "-",
            row["finished_at"] or "-",
            shown(row["batch_id"] or "-"),
            shown(_short(row["prompt"] or "")),
        )
    out.print(table)
    _next_page_hint(page.next_cursor)


batches = typer.Typer(
    help="Batches (bulk runs): list them, or show one with its manifest rows.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@batches.callback()
def list_batches(
    ctx: typer.Context,
    since: Since = None,
    until: Until = None,
    limit: Limit = 20,
    cursor: Cursor = None,
    as_json: AsJson = False,
) -> None:
    """List batches, newest first, with counts and progress (`batches show ID` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    queue = ImageQueue(get_settings())
    try:
        page = queue.batches(cursor=cursor, limit=limit, **_time_range(since, until))
    except InvalidParams as error:
        raise fail(str(error), Exit.INVALID) from None
    rows = [batch_row(batch) for batch in page.items]
    if as_json:
        result = {"batches": rows, "count": len(rows), "next_cursor": page.next_cursor}
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{len(rows)} batch(es), newest first")
    for name in ("batch", "name", "created", "progress", *BATCH_COLUMNS, "credits"):
        table.add_column(
            name.replace("_", " "),
            justify="left" if name in ("batch", "name", "created") else "right",
            no_wrap=name == "created",
            overflow="fold" if name == "batch" else "ellipsis",
            min_width=24 if name == "created" else None,
        )
    for row in rows:
        table.add_row(
            shown(row["batch_id"]),
            shown(row["name"] or "-"),
            row["created_at"] or "-",
            f"{row['finished']}/{row['total']}" + (" done" if row["complete"] else ""),
            *(str(row["counts"][name]) for name in BATCH_COLUMNS),
            _credits(row),
        )
    out.print(table)
    _next_page_hint(page.next_cursor)


@batches.command("show")
def show_batch(
    batch_id: Annotated[str, typer.Argument(metavar="BATCH_ID", help="The batch to show.")],
    manifest: Annotated[
        Path | None, typer.Option(help="Write the batch's manifest (JSONL) to this file.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """A batch's counts, progress and manifest rows; --manifest writes the manifest file.

    A manifest row per line of the batch's file: job id, prompt, metadata, status, outputs or
    error, times (ISO 8601 UTC); refused rows with their reason.
    """
    queue = ImageQueue(get_settings())
    try:
        batch = queue.batch(batch_id)
    except JobNotFound:
        raise fail(f"no batch {batch_id!r}", Exit.NOT_FOUND) from None
    jobs_by_line = queue.batch_jobs(batch_id)
    entries = [manifest_entry_for_job(line, job) for line, job in jobs_by_line.items()]
    entries += [manifest_entry_for_error(RowError(*row)) for row in queue.refused_rows(batch_id)]
    entries.sort(key=lambda entry: entry["line"])
    path = None
    if manifest is not None:
        try:
            path = write_manifest(manifest, entries)
        except OSError as error:
            raise fail(f"the manifest: {error}", Exit.INVALID) from None
    row = batch_row(batch)
    result = row | {"summary": summarize(entries), "manifest": str(path) if path else None}
    if as_json:
        typer.echo(json.dumps(result | {"rows": entries}))
        return
    out.print(_batch_view(row, entries))
    if path is not None:
        err.print(shown(f"manifest ({len(entries)} rows) written to {path}"))


def _batch_view(row: dict[str, Any], entries: list[dict[str, Any]]) -> Table:
    state = "complete" if row["complete"] else "running"
    title = (
        f"batch {row['batch_id']}: {row['finished']}/{row['total']} finished ({state}),"
        f" credits {_credits(row)}"
    )
    table = Table(title=shown(title))
    for name in ("line", "job", "status", "prompt", "result"):
        table.add_column(name, justify="right" if name == "line" else "left")
    for entry in entries:
        status = entry["status"]
        style = STATUS_COLOURS[JobStatus(status)].terminal if status in _STATUSES else "yellow"
        if entry["reason"] == BUDGET_REASON:
            result = "cancelled: the batch's credit budget was reached"
        elif entry["error"]:
            result = f"{entry['error']['type']}: {entry['error']['message']}"
        else:
            result = " ".join(output["url"] for output in entry["outputs"]) or "-"
        table.add_row(
            str(entry["line"]),
            shown(entry["job_id"] or "-"),
            shown(status, style=style),
            shown(_short(entry["prompt"] or "")),
            shown(_short(result)),
        )
    return table


def _credits(row: dict[str, Any]) -> str:
    return credits_text(
        row["credits_used"], budget=row["max_credits"], reached=row["budget_reached"]
    )


def _time_range(since: str | None, until: str | None) -> dict[str, float | None]:
    now = datetime.now(UTC).timestamp()
    try:
        return {
            "since": parse_when(since, now=now) if since else None,
            "until": parse_when(until, now=now) if until else None,
        }
    except InvalidParams as error:
        raise fail(f"--since/--until: {error}", Exit.INVALID) from None


def _next_page_hint(cursor: str | None) -> None:
    if cursor is not None:
        err.print(shown(f"more: the same command with --cursor {cursor}"))


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PROMPT_WIDTH else flat[: _PROMPT_WIDTH - 1] + "…"
