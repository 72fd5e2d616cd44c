"""Task events without losses on the threads pool: Celery 5.6.3's event dispatcher with the
flush of celery/celery#10435 (merged after 5.6.3; drop this when imageq moves past it).

A worker with an event loop buffers task events and sends them in batches (`task.multi`).
5.6.3's flush publishes a batch, then empties the live buffer: events that pool threads added
meanwhile (their task-started and task-succeeded) are lost, and Flower shows those tasks as
started for ever (some in every run of six jobs here). This flush removes only what it sent.
"""

from __future__ import annotations

from typing import Final

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher


class BatchSafeDispatcher(EventDispatcher):  # type: ignore[misc]  # celery has no type hints
    """Celery's dispatcher, flushing batches without dropping what other threads add."""

    def flush(self, errors: bool = True, groups: bool = True) -> None:
        super().flush(errors=errors, groups=False)
        if not groups:
            return
        with self.mutex:
            for group, events in self._group_buffer.items():
                if not events:
                    continue
                # A copy: a failed publish keeps the object it was given, to send again later.
                batch = list(events)
                self._publish(batch, self.producer, f"{group}.multi")
                # Other threads only append, and flushes hold the mutex: the sent events are
                # still the first len(batch).
                del events[: len(batch)]


class TaskEvents(Events):  # type: ignore[misc]  # celery has no type hints
    """The app's events, with the batch-safe dispatcher."""

    dispatcher_cls = "imageq.worker.task_events:BatchSafeDispatcher"


EVENTS: Final = "imageq.worker.task_events:TaskEvents"
"""Celery's `events=` argument that selects them."""
