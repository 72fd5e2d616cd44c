"""The manifest of a bulk run: one JSON line per row of the bulk file, in the file's order.

Each entry says what became of its row: its prompt and metadata, the job's status, outputs
and error, and when it was created and finished (ISO 8601 UTC), what it cost (`credits_used`)
and, for a job imageq cancelled itself, why (`reason`: `budget`); for a row refused before
anything was queued, the reason (and its prompt and metadata, as far as they could be read).
Building entries is pure; only `write_manifest` touches the disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from imageq.producers.bulkfile import RowError
from imageq.worker.domain.job import Job
from imageq.worker.domain.payload import completion_payload
from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus

INVALID: Final = "invalid"
"""The status of a row refused before queueing; it has no job, so it is not a `JobStatus`."""


def manifest_entry_for_job(line: int, job: Job) -> dict[str, Any]:
    """The entry of a queued row. A job not yet terminal shows its status, no outputs, no error."""
    payload = completion_payload(job)
    terminal = job.is_terminal
    return {
        "line": line,
        "job_id": job.job_id,
        "prompt": job.params.get("prompt"),
        "metadata": job.metadata,
        "status": str(job.status),
        # Outputs and errors are only final once the job is; until then they are not reported.
        "outputs": payload["outputs"] if terminal else [],
        "error": payload["error"] if terminal else None,
        "remote_task_id": job.remote_task_id,
        "created_at": payload["timestamps"]["created_at"],
        "finished_at": payload["timestamps"]["finished_at"],
        "credits_used": job.credits_used,
        # Why imageq itself cancelled the job ("budget": its batch's credit budget was reached).
        "reason": (job.error or {}).get("reason") if terminal else None,
    }


def manifest_entry_for_error(error: RowError) -> dict[str, Any]:
    """The entry of a row refused before queueing."""
    return {
        "line": error.line,
        "job_id": None,
        "prompt": error.prompt,
        "metadata": error.metadata,
        "status": INVALID,
        "outputs": [],
        "error": {"type": "InvalidRow", "message": error.reason, "retryable": False},
        "remote_task_id": None,
        "created_at": None,
        "finished_at": None,
        "credits_used": None,
        "reason": None,
    }


def write_manifest(path: Path, entries: Iterable[dict[str, Any]]) -> Path:
    """Write entries as JSONL sorted by line, atomically: readers see the old file or the new
    one, never a part. Creates missing parent directories; returns `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(entries, key=lambda entry: entry["line"])
    # The temporary file is in the target's directory, so os.replace is a rename on one file
    # system. It is created owner-only (0600), and the manifest keeps that: it lists output
    # URLs and the rows' metadata.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            for entry in ordered:
                file.write(json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def summarize(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Entries counted by status. The terminal statuses and `invalid` are always present (0 if
    none); other statuses (jobs still queued or submitted) only when some entry has them.
    """
    counts = Counter(str(entry["status"]) for entry in entries)
    always = [str(status) for status in JobStatus if status in TERMINAL_JOB_STATUSES] + [INVALID]
    return {status: counts[status] for status in always} | {
        status: count for status, count in counts.items() if status not in always
    }
