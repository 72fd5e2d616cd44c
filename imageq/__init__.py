"""imageq: a distributed job queue for image generation through the aireiter API.

The way in for producers::

    from imageq import enqueue, enqueue_many, get, wait, cancel, verify_webhook

Beneath it: `imageq.producers` (the producer API), `imageq.worker` (the Celery worker),
`imageq.config` (settings), `imageq.ops` (health, top, reports), `imageq.cli` (the `imageq`
command), `imageq.simulator` (a local stand-in for the API) and `imageq.devenv` (the demo's
local environment).

Importing this package loads nothing else: each name is imported on first use, so a producer
that never enqueues pays nothing, and no setting is read before it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imageq.producers.api import BatchReport, Enqueued, ImageQueue
    from imageq.producers.jobs import JobOptions
    from imageq.producers.shortcuts import cancel, enqueue, enqueue_job, enqueue_many, get, wait
    from imageq.producers.verify import verify_webhook
    from imageq.worker.errors import ImageqError

_HOMES = {
    "BatchReport": "imageq.producers.api",
    "Enqueued": "imageq.producers.api",
    "enqueue_job": "imageq.producers.shortcuts",
    "ImageQueue": "imageq.producers.api",
    "cancel": "imageq.producers.shortcuts",
    "enqueue": "imageq.producers.shortcuts",
    "enqueue_many": "imageq.producers.shortcuts",
    "get": "imageq.producers.shortcuts",
    "wait": "imageq.producers.shortcuts",
    "JobOptions": "imageq.producers.jobs",
    "verify_webhook": "imageq.producers.verify",
    "ImageqError": "imageq.worker.errors",
}

__all__ = [
    "BatchReport",
    "Enqueued",
    "ImageQueue",
    "ImageqError",
    "JobOptions",
    "cancel",
    "enqueue",
    "enqueue_job",
    "enqueue_many",
    "get",
    "verify_webhook",
    "wait",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'imageq' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
