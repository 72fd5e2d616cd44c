"""The producer API: validate a job, store it and queue it; read it back; wait for it."""

from producers.api import ImageQueue, enqueue, get, wait

__all__ = ["ImageQueue", "enqueue", "get", "wait"]
