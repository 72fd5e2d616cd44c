"""imageq: a distributed job queue for image generation through the aireiter API.

The way in for producers::

    from imageq import enqueue, enqueue_many, get, wait, cancel, verify_webhook

Beneath it: `imageq.producers` (the producer API), `imageq.worker` (the Celery worker),
`imageq.config` (settings), `imageq.simulator` (a local stand-in for the API) and
`imageq.devenv` (the demo's local environment).
"""

from imageq.producers.api import (
    BatchReport,
    ImageQueue,
    cancel,
    enqueue,
    enqueue_many,
    get,
    wait,
)
from imageq.producers.verify import verify_webhook

__all__ = [
    "BatchReport",
    "ImageQueue",
    "cancel",
    "enqueue",
    "enqueue_many",
    "get",
    "verify_webhook",
    "wait",
]
