"""The producer of a soak run: enqueues each job at its arrival time, through `ImageQueue`, as
an application would, retrying while Redis is away (the chaos restarts it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Final

import redis
from kombu.exceptions import OperationalError

from bench.soak_plan import SoakJob
from imageq.producers.api import ImageQueue

# A producer that cannot reach Redis tries again, for this long at most.
ENQUEUE_PATIENCE_S: Final = 60.0
_RETRY_EVERY_S: Final = 0.5
_UNREACHABLE: Final = (redis.RedisError, OperationalError, OSError)


class Feeder:
    """Enqueues the jobs in a background thread while entered; `enqueued_at` has the epoch
    time of each job taken, `refused` each one given up on (with the error)."""

    def __init__(
        self,
        queue: ImageQueue,
        jobs: Sequence[SoakJob],
        arrivals_s: Sequence[float],
        *,
        webhook_url: str,
        t0: float,
    ) -> None:
        self.enqueued_at: dict[str, float] = {}
        self.refused: dict[str, str] = {}
        self.retried = 0
        self.error: BaseException | None = None
        self._queue = queue
        self._plan = list(zip(arrivals_s, jobs, strict=True))
        self._webhook_url = webhook_url
        self._t0 = t0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(ENQUEUE_PATIENCE_S + 10)

    def wait(self, timeout_s: float) -> bool:
        """Block until every job was handed over (True) or `timeout_s` passed (False)."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            for at_s, job in self._plan:
                if self._stop.wait(max(0.0, self._t0 + at_s - time.monotonic())):
                    return
                self._enqueue(job)
        except BaseException as error:  # reported to the run, which stops and says so
            self.error = error

    def _enqueue(self, job: SoakJob) -> None:
        spec = job.spec
        give_up = time.monotonic() + ENQUEUE_PATIENCE_S
        while True:
            try:
                # The same job id on a retry: imageq submits a known id only once.
                self._queue.enqueue(
                    spec.prompt,
                    aspect_ratio=spec.aspect_ratio,
                    resolution=spec.resolution,
                    quality=spec.quality,
                    job_id=spec.job_id,
                    webhook_url=self._webhook_url,
                )
            except _UNREACHABLE as error:
                if time.monotonic() > give_up or self._stop.is_set():
                    self.refused[spec.job_id] = repr(error)
                    return
                self.retried += 1
                self._stop.wait(_RETRY_EVERY_S)
                continue
            self.enqueued_at[spec.job_id] = time.time()
            return
