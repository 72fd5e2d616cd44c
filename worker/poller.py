"""The poller: polls taken from the poll schedule in Redis, without a Celery message each.

With `polling.mode = "poller"` every worker runs one: a thread that, every `poller_tick_s`,
claims the polls that are due (an atomic claim: no two pollers take the same one; a claim is a
lease, so a poller that dies only delays its polls) and runs them on a small thread pool. Each
poll is the same step as the poll task's, compare-and-set and all, and the step itself files
the job's next poll in the schedule. Celery's per-message cost (publish, hold the countdown,
deliver, ack), most of a poll's CPU in the countdown design, is not paid per poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from imageq.worker.messages import Actions, SchedulePoll
from imageq.worker.policy.leases import lease_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.poll import poll

log = logging.getLogger(__name__)

Publish = Callable[[Actions], None]


class Poller:
    """Start with `start()`, stop with `stop()`; `tick()` is one claim-and-dispatch round."""

    def __init__(self, rt: Runtime, publish: Publish) -> None:
        self._rt = rt
        self._publish = publish
        timing = rt.settings.polling
        self._threads = timing.poller_threads
        self._tick_s = timing.poller_tick_s
        # A poll longer than this is taken again by another poller; its token keeps the copy
        # from moving the job twice.
        self._lease_s = lease_s(rt.settings, "poll")
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="imageq-poll")
        self._busy = threading.Semaphore(2 * self._threads)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imageq-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def tick(self) -> int:
        """Claim as many due polls as there is room for, hand them to the pool; how many."""
        room = 0
        while room < 2 * self._threads and self._busy.acquire(blocking=False):
            room += 1
        try:
            claimed = (
                self._rt.store.claim_due_polls(
                    now=self._rt.clock(), limit=room, lease_s=self._lease_s
                )
                if room
                else []
            )
        except Exception:
            for _ in range(room):
                self._busy.release()
            raise
        for _ in range(room - len(claimed)):
            self._busy.release()
        for job_id, token in claimed:
            self._pool.submit(self._poll_one, job_id, token)
        return len(claimed)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                full = self.tick() >= self._threads
            except Exception:  # Redis away: try again next tick
                log.warning("poller could not claim polls", exc_info=True)
                full = False
            if not full:
                self._stop.wait(self._tick_s)

    def _poll_one(self, job_id: str, token: int) -> None:
        try:
            actions = poll(self._rt, job_id, token)
            # The step has filed the next poll in the schedule; no message is needed for it.
            self._publish([a for a in actions if not isinstance(a, SchedulePoll)])
        except Exception:
            log.exception("poll of job %s failed; it is polled again when its claim lapses", job_id)
        finally:
            self._busy.release()
