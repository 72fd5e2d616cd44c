"""The producer API: validate a job, store it and queue it; read it back; wait for it.

`verify_webhook` is for the receiving end: it checks a webhook imageq sent.
"""

from imageq.producers.api import ImageQueue, enqueue, get, wait
from imageq.producers.verify import verify_webhook

__all__ = ["ImageQueue", "enqueue", "get", "verify_webhook", "wait"]
