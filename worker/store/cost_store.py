"""Credits in Redis: recent credits per quality and resolution (for estimates), and a batch's
credit budget, checked atomically before each submit.

A batch's totals (`credits_used`, and `credits_in_flight` for the jobs submitted under its
budget) are kept by the job store's one write (lua/write.lua) as jobs end, and by
lua/credit_budget.lua as they are admitted.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

import redis
from redis.commands.core import Script

_BUDGET: Final = (
    resources.files("imageq.worker.store").joinpath("lua", "credit_budget.lua").read_text("utf-8")
)


class CostRecords:
    """The part of `JobStore` about credits."""

    _redis: redis.Redis
    _prefix: str
    _ttl_s: int
    _budget_script: Script | None = None

    def batch_key(self, batch_id: str) -> str:
        return f"{self._prefix}:batch:{batch_id}"

    def _credits_key(self, quality: str, resolution: str) -> str:
        return f"{self._prefix}:credits:{quality}:{resolution}"

    def credit_samples(self, quality: str, resolution: str) -> list[float]:
        """Recent credits of jobs of this quality and resolution, newest first."""
        raw = self._redis.lrange(self._credits_key(quality, resolution), 0, -1)
        return [float(value) for value in raw]

    def add_credit_sample(
        self, quality: str, resolution: str, credits: float, *, window: int
    ) -> None:
        """Keep one more job's credits, and only the `window` newest."""
        key = self._credits_key(quality, resolution)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, repr(float(credits)))
            pipe.ltrim(key, 0, window - 1)
            pipe.expire(key, self._ttl_s)
            pipe.execute()

    def admit_to_budget(
        self, batch_id: str, job_id: str, *, quality: str, resolution: str, default: float
    ) -> bool:
        """Whether the job may be submitted under its batch's credit budget: True without a
        budget, or when the batch's spent credits plus those in flight plus this job's estimate
        (the median of recent jobs like it, else `default`) stay within it; the estimate is
        then held in flight until the job ends. A refusal is final for the batch. Atomic, so
        workers racing to submit never pass the budget together."""
        key = self.batch_key(batch_id)
        keys = [key, f"{key}:reserved", self._credits_key(quality, resolution)]
        if self._budget_script is None:
            self._budget_script = self._redis.register_script(_BUDGET)
        return bool(self._budget_script(keys=keys, args=[job_id, default, self._ttl_s]))
