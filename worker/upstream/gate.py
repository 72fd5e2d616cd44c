"""The gate every API request of a worker passes: the key's request budget and its pause on
429, kept in Redis by one Lua script (`worker/store/lua/budget.lua`) so every worker process
on every host shares them. The arithmetic is `imageq.worker.policy.request_budget`.

The Redis keys are named after a hash of the API key, never the key itself.
"""

from __future__ import annotations

import hashlib
import time
from importlib import resources
from typing import Final

import redis

from imageq.config import BudgetSettings, Settings
from imageq.worker.errors import ApiError
from imageq.worker.metrics import (
    API_PAUSES,
    BUDGET_LATE_TURNS,
    BUDGET_WAIT_SECONDS,
    BUDGET_WAITS,
)
from imageq.worker.policy.request_budget import Grant, Kind, on_time, terms_for
from imageq.worker.redis_clients import redis_client

_SCRIPT: Final = (
    resources.files("imageq.worker.store").joinpath("lua", "budget.lua").read_text("utf-8")
)
# The state of a key unused this long is forgotten (a new budget starts full).
_TTL_S: Final = 24 * 3600
_ALWAYS: Final = Grant(True)


def key_digest(api_key: str) -> str:
    """A short, stable name for an API key that does not reveal it."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class RequestGate:
    """Ask before each API request (`acquire`), say how it went after (`settle`)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        budget: BudgetSettings,
        prefix: str,
        digest: str,
        poll_late_s: float = 0.0,
    ):
        self._budget = budget
        # How late after its turn a request may go. The poller runs due polls once a tick, so
        # its polls come up to a tick later still; the budget holds back burst for it all.
        self._late_s = budget.late_s + poll_late_s
        base = f"{prefix}:budget:{digest}"
        self._keys = [base, f"{base}:booked", f"{base}:line"]
        self._script = client.register_script(_SCRIPT)

    def __repr__(self) -> str:
        return f"RequestGate(key={self._keys[0]!r})"

    def acquire(self, kind: Kind, requester: str, *, op: str = "acquire") -> Grant:
        """Whether a request of `kind` for `requester` (a job's submit, or one poll) may go now;
        if not, when to come back. A booked turn is kept for the same requester."""
        terms = terms_for(kind, self._budget, late_s=self._late_s)
        answer = self._script(
            keys=self._keys,
            args=[
                op,
                requester,
                terms.interval_s,
                terms.allowance,
                terms.horizon_s,
                self._budget.probe_lease_s,
                _TTL_S,
                self._late_s,
            ],
        )
        allowed, wait, reason, probe = answer[:4]
        # A booked turn taken a little after its time says how late it already is.
        late_s = float(answer[4]) if len(answer) > 4 else 0.0
        grant = Grant(
            bool(allowed),
            float(wait),
            _text(reason),  # type: ignore[arg-type]
            bool(probe),
            turn_at=time.monotonic() - late_s,
        )
        if not grant.allowed:
            BUDGET_WAITS.labels(kind, grant.reason).inc()
            BUDGET_WAIT_SECONDS.labels(kind).observe(grant.wait_s)
        return grant

    def retake(self, grant: Grant, kind: Kind, requester: str) -> Grant:
        """Just before sending: the same grant if its turn is recent enough, else a new one (the
        late turn is lost: sent now, it would crowd the turns after it)."""
        if on_time(grant, now=time.monotonic(), late_s=self._late_s):
            return grant
        BUDGET_LATE_TURNS.labels(kind).inc()
        return self.acquire(kind, requester, op="retake")

    def settle(self, grant: Grant, error: ApiError | None) -> None:
        """After the request: a 429 pauses the key for the whole fleet; any other answer to the
        probe ends the pause's probe phase."""
        if error is not None and error.http_status == 429:
            API_PAUSES.inc()
            retry_after = error.retry_after_s
            self._script(
                keys=self._keys,
                args=[
                    "pause",
                    -1 if retry_after is None else retry_after,
                    self._budget.pause_base_s,
                    self._budget.pause_max_s,
                    _TTL_S,
                ],
            )
        elif grant.probe:
            self._script(keys=self._keys, args=["probe_ok"])

    def unused(self, grant: Grant) -> None:
        """The request was not sent after all: a probe's lease goes to the next request."""
        if grant.probe:
            self._script(keys=self._keys, args=["probe_off"])


class OpenGate:
    """No budget and no pause: every request goes at once."""

    def acquire(self, kind: Kind, requester: str, *, op: str = "acquire") -> Grant:
        return _ALWAYS

    def retake(self, grant: Grant, kind: Kind, requester: str) -> Grant:
        return grant

    def settle(self, grant: Grant, error: ApiError | None) -> None:
        return None

    def unused(self, grant: Grant) -> None:
        return None


Gate = RequestGate | OpenGate
OPEN_GATE: Final = OpenGate()


def open_gate(settings: Settings) -> Gate:
    """The gate the settings ask for, on its own small Redis connection pool."""
    if not settings.budget.active or settings.api.key is None:
        return OPEN_GATE
    client = redis_client(
        settings.redis,
        "store",
        max_connections=settings.worker.concurrency + 4,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return RequestGate(
        client,
        budget=settings.budget,
        prefix=settings.redis.key_prefix,
        digest=key_digest(settings.api.key.get_secret_value()),
        poll_late_s=settings.polling.poller_tick_s if settings.polling.mode == "poller" else 0.0,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
