"""Job ids as idempotency keys: enqueueing a known id with the same request gets the job it
made; with a different request it is a `JobConflict`, as payment APIs treat a reused key.

The request is what the producer chose that decides what is made, where its result goes and
which batch counts it: the generation parameters (after normalising, so "4k" and "4K" are the
same), `webhook_url`, `callback`, `metadata` and `batch_id`. Returning the first job for a
request that differs in any of them would silently make the wrong image, notify the wrong
place, hand back the wrong metadata, or leave a batch counting a job that reports elsewhere.

Left out, as they do not change what the producer gets back: `lane` (how soon the job runs),
`held` (a bulk run's pacing: a resume with or without --concurrency must find its jobs), and
the times and states the job has had since.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from imageq.worker.domain.job import Job
from imageq.worker.errors import JobConflict


def _param(name: str) -> Callable[[Job], Any]:
    return lambda job: job.params.get(name)


# Option name (as `JobOptions` and bulk files spell it) -> where a job record keeps it.
REQUEST_FIELDS: Final[dict[str, Callable[[Job], Any]]] = {
    "prompt": _param("prompt"),
    "aspect_ratio": _param("aspect_ratio"),
    "resolution": _param("resolution"),
    "quality": _param("quality"),
    "reference_images": _param("reference_images"),
    "extra_params": _param("extra"),
    "webhook_url": lambda job: job.webhook_url,
    "callback": lambda job: job.callback,
    "metadata": lambda job: job.metadata,
    "batch_id": lambda job: job.batch_id,
}


def differing_fields(known: Job, asked: Job) -> tuple[str, ...]:
    """The request fields in which `asked` differs from the `known` job under the same id."""
    return tuple(
        name
        for name, read in REQUEST_FIELDS.items()
        if _canonical(read(known)) != _canonical(read(asked))
    )


def check_same_request(known: Job, asked: Job) -> None:
    """Nothing if `asked` is the request that made `known`; else `JobConflict` naming fields."""
    if differing := differing_fields(known, asked):
        raise JobConflict(known.job_id, differing)


def _canonical(value: Any) -> str:
    # As stored: a tuple and a list are the same JSON, and key order is not meaning.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
