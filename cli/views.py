"""How the CLI shows things: jobs and batches as rich tables for people and plain JSON for
scripts, and messages on the two consoles. Text from outside reaches them only through
`shown` (imageq.ops.terminal_text): data, never markup.
"""

from __future__ import annotations

import time
from typing import Any, Final

import typer
from rich.console import Console
from rich.table import Table

from imageq.cli.contract import print_error
from imageq.cli.exits import Exit
from imageq.ops.palette import STATUS_COLOURS
from imageq.ops.terminal_text import shown
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.cost import batch_credits, credits_text
from imageq.worker.domain.job import Job
from imageq.worker.domain.payload import completion_payload, iso_time
from imageq.worker.domain.status import TERMINAL_JOB_STATUSES

JOB_VIEW_TYPE: Final = "imageq.job"
BATCH_VIEW_TYPE: Final = "imageq.batch"
BATCH_COLUMNS = ("queued", "submitted", "succeeded", "failed", "timed_out", "cancelled")

out = Console()
err = Console(stderr=True)


def fail(message: str, code: Exit, *, kind: str | None = None) -> typer.Exit:
    """Print `message` on stderr: the error object with --json, else in red (data, never
    markup); the exit to raise. `kind`: the error object's type, if not the exit code's name."""
    print_error(message, code, kind=kind)
    return typer.Exit(code)


def job_json(job: Job) -> dict[str, Any]:
    """A job for scripts, whatever its state: the completion payload's fields, but typed as a
    job view (`imageq.job`), not as the event of a finished job; `status` says where it is."""
    return {**completion_payload(job), "type": JOB_VIEW_TYPE}


def job_table(job: Job) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    params = job.params
    table.add_row("job", shown(job.job_id))
    table.add_row("status", shown(job.status, style=STATUS_COLOURS[job.status].terminal))
    table.add_row("prompt", shown(params["prompt"]))
    table.add_row(
        "params", shown(f"{params['aspect_ratio']} {params['resolution']} {params['quality']}")
    )
    table.add_row("remote task", shown(job.remote_task_id or "-"))
    table.add_row("polls", str(job.poll_count))
    table.add_row("credits", credits_text(job.credits_used))
    table.add_row("elapsed", f"{_elapsed(job):.1f} s")
    if job.batch_id:
        table.add_row("batch", shown(job.batch_id))
    for index, output in enumerate(job.outputs):
        saved = output.get("saved")
        where = saved["location"] if saved else output.get("download_error") or "not saved"
        size = f"{output['width']}x{output['height']} {output['url']}"
        table.add_row(f"output {index}", shown(size))
        table.add_row("", shown(f"saved: {where}"))
        if saved and saved.get("url"):
            table.add_row("", shown(f"served at: {saved['url']}"))
    if job.error:
        table.add_row("error", shown(f"{job.error.get('type')}: {job.error.get('message')}"))
    return table


def batch_json(batch: Batch, jobs: dict[int, Job]) -> dict[str, Any]:
    return {
        "type": BATCH_VIEW_TYPE,
        "batch_id": batch.batch_id,
        "total": batch.total,
        "finished": batch.finished,
        "complete": batch.is_complete,
        "counts": {name: batch.counts.get(name, 0) for name in BATCH_COLUMNS},
        "created_at": iso_time(batch.created_at),
        "completed_at": iso_time(batch.completed_at),
        **batch_credits(batch),
        "jobs": [
            {"line": line, "job_id": job.job_id, "status": str(job.status)}
            for line, job in sorted(jobs.items())
        ],
    }


def batch_table(batch: Batch) -> Table:
    table = Table(title=shown(f"batch {batch.batch_id}"))
    for name in ("total", *BATCH_COLUMNS, "credits"):
        table.add_column(name.replace("_", " "), justify="right")
    counts = [str(batch.counts.get(name, 0)) for name in BATCH_COLUMNS]
    spent = credits_text(batch.credits_used, budget=batch.max_credits, reached=batch.budget_reached)
    table.add_row(str(batch.total), *counts, spent)
    return table


def summary_table(summary: dict[str, int], *, title: str) -> Table:
    table = Table(title=shown(title))
    table.add_column("status")
    table.add_column("rows", justify="right")
    for status, count in sorted(summary.items(), key=lambda item: -item[1]):
        table.add_row(shown(status), str(count))
    return table


def is_finished(job: Job) -> bool:
    return job.status in TERMINAL_JOB_STATUSES


def _elapsed(job: Job) -> float:
    return (job.finished_at or time.time()) - job.created_at
