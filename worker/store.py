"""The job store: one Redis hash per job, changed only by atomic compare-and-set.

Every write is a Lua script that checks the expected field values and, only if all match,
writes the changes, refreshes the record's TTL and keeps the in-flight index (a sorted set
of job ids by their next due check) and the dead-letter list (a hash of job id -> reason) in
step. So two workers racing on one job cannot both
move it, and a job reaches a terminal state once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final

import redis

from worker.errors import JobNotFound
from worker.job import Job, encode_fields


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_WRITE: Final = """
local a = cjson.decode(ARGV[1])
local exists = redis.call('EXISTS', KEYS[1]) == 1
if a.create then
  if exists then return 0 end
elseif not exists then
  return -1
end
for f, v in pairs(a.expect) do
  if redis.call('HGET', KEYS[1], f) ~= v then return 0 end
end
local flat = {}
for f, v in pairs(a.set) do
  flat[#flat + 1] = f
  flat[#flat + 1] = v
end
if #flat > 0 then redis.call('HSET', KEYS[1], unpack(flat)) end
redis.call('EXPIRE', KEYS[1], a.ttl)
if a.due_at then redis.call('ZADD', KEYS[2], a.due_at, a.job_id) end
if a.done then redis.call('ZREM', KEYS[2], a.job_id) end
if a.dead_letter then redis.call('HSET', KEYS[3], a.job_id, a.dead_letter) end
if a.revive then redis.call('HDEL', KEYS[3], a.job_id) end
return 1
"""


class JobStore:
    """Create, read and compare-and-set job records."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._write = client.register_script(_WRITE)

    def __repr__(self) -> str:
        return f"JobStore(prefix={self._prefix!r})"

    @property
    def in_flight_key(self) -> str:
        return f"{self._prefix}:in_flight"

    @property
    def dead_letters_key(self) -> str:
        return f"{self._prefix}:dead_letters"

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        """Webhook deliveries given up on: job id -> {reason, at, attempts}."""
        raw = self._redis.hgetall(self.dead_letters_key)
        return {_text(key): json.loads(value) for key, value in raw.items()}

    def key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def create(self, job: Job) -> bool:
        """Store a new job; False (and nothing written) if the id is taken."""
        return self._run(job.job_id, create=True, changes=job.to_hash()) == 1

    def delete(self, job_id: str) -> None:
        self._redis.delete(self.key(job_id))
        self._redis.zrem(self.in_flight_key, job_id)

    def get(self, job_id: str) -> Job:
        raw = self._redis.hgetall(self.key(job_id))
        if not raw:
            raise JobNotFound(job_id)
        return Job.from_hash(raw)

    def update(
        self,
        job_id: str,
        *,
        expect: Mapping[str, Any],
        changes: Mapping[str, Any],
        due_at: float | None = None,
        done: bool = False,
        dead_letter: Mapping[str, Any] | None = None,
        revive: bool = False,
    ) -> bool:
        """Apply `changes` if every field in `expect` still has that value; True if applied.

        `due_at` files the job in the in-flight index under that time; `done` takes it out.
        `dead_letter` files it in the dead-letter list with that record; `revive` takes it out.
        """
        stamped = {**changes, "updated_at": time.time()}
        result = self._run(
            job_id,
            expect=encode_fields(expect),
            changes=encode_fields(stamped),
            due_at=due_at,
            done=done,
            dead_letter=dead_letter,
            revive=revive,
        )
        if result == -1:
            raise JobNotFound(job_id)
        return result == 1

    def _run(
        self,
        job_id: str,
        *,
        changes: Mapping[str, str],
        expect: Mapping[str, str] | None = None,
        create: bool = False,
        due_at: float | None = None,
        done: bool = False,
        dead_letter: Mapping[str, Any] | None = None,
        revive: bool = False,
    ) -> int:
        args: dict[str, Any] = {
            "job_id": job_id,
            "expect": dict(expect or {}),
            "set": dict(changes),
            "ttl": self._ttl_s,
            "create": create,
            "done": done,
            "revive": revive,
        }
        if due_at is not None:
            args["due_at"] = due_at
        if dead_letter is not None:
            args["dead_letter"] = json.dumps(dead_letter)
        # cjson turns an empty dict into an empty table either way, so {} is safe here.
        return int(
            self._write(
                keys=[self.key(job_id), self.in_flight_key, self.dead_letters_key],
                args=[json.dumps(args)],
            )
        )
