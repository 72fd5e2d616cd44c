"""The follow-ups of the polls that finish a job, sent on threads of their own.

A poll that finishes a job returns its follow-ups: the first webhook attempt and the Celery
callback (sent right away, in the same process), and the download, batch and paced-submit
messages. Sent on the poll thread they held it for a webhook POST and a few Redis writes while
due polls waited. The poller hands them here instead: threads of their own, started as
finished jobs need them and let go when idle, and a bounded backlog. Sending mostly waits (on
the receiver, on Redis), so a notifier with too few threads is a queue: with 4, a stretch run
of 10,300 jobs (about 110 finishing per second per process at its peak) held webhooks up to
10 s after their jobs finished, against 0.35 s with 16.

Nothing here needs to be durable. The job's terminal write already marked its notifications
pending and filed it in the in-flight index, due now; a follow-up lost with the process (or
one that failed) is found there by the sweeper, which sends it again after `sweep.grace_s`,
and each delivery's claim keeps a second send from notifying twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from imageq.worker.messages import Actions
from imageq.worker.poller_pool import ElasticPool

log = logging.getLogger(__name__)

Publish = Callable[[Actions], None]

BACKLOG_PER_THREAD = 64
"""Follow-ups that may wait per notifier thread before more go out as task messages."""


class Notifier:
    """`hand_over(actions)` runs them with `send_now` on a notifier thread; with every thread
    busy and the backlog full, it passes them to `send_later` (task messages, cheap to publish)
    on the caller's thread; with no threads, it runs `send_now` on the caller's thread.
    A thread idle for `idle_s` exits."""

    def __init__(
        self, threads: int, *, send_now: Publish, send_later: Publish, idle_s: float = 10.0
    ) -> None:
        self._send_now = send_now
        self._send_later = send_later
        self._pool = ElasticPool(threads, idle_s=idle_s, name="imageq-notify") if threads else None
        self._room = threading.Semaphore(threads + threads * BACKLOG_PER_THREAD)

    def hand_over(self, actions: Actions) -> None:
        if not actions:
            return
        if self._pool is None:
            self._send_now(actions)
        elif self._room.acquire(blocking=False):
            self._pool.submit(self._send, actions)
        else:
            self._send_later(actions)

    @property
    def threads(self) -> int:
        """Notifier threads alive now."""
        return self._pool.threads if self._pool is not None else 0

    def stop(self) -> None:
        """Send what is waiting, then stop (the sweeper covers what this does not reach)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_waiting=False)

    def _send(self, actions: Actions) -> None:
        try:
            self._send_now(actions)
        except Exception:
            # Actions hold only ids, numbers and times.
            log.exception("follow-ups %r failed; the sweeper sends them again", actions)
        finally:
            self._room.release()
