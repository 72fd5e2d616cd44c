"""The simulator's limits per API key: a requests-per-second limit that answers 429 with
`Retry-After` past it, 429s a test forces on the next requests, and the arrival time and
answer of every API request, by key, for tests to count requests in any window.

Keys are named by `key_digest` (a hash, as imageq's own budget names them), never shown.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any


def key_digest(api_key: str) -> str:
    """The first 16 hex digits of the key's SHA-256 (the same as imageq's budget keys)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass
class Forced:
    """429s to answer next, whatever the rate: `count` of them, with this Retry-After (None:
    no header)."""

    count: int
    retry_after_s: int | None


@dataclass
class RateLimits:
    """Per key: a sliding one-second window of the requests let through, forced 429s, and the
    log of every API request (arrival, endpoint, HTTP status, answer: epoch seconds)."""

    limit_per_s: float = 0.0
    window_s: float = 1.0
    _recent: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _forced: Forced | None = None
    _log: dict[str, list[list[Any]]] = field(default_factory=lambda: defaultdict(list))

    def force(self, *, count: int, retry_after_s: int | None) -> None:
        """Answer the next `count` API requests (any key) with 429."""
        if count < 0 or (retry_after_s is not None and retry_after_s < 0):
            raise ValueError("count and retry_after must not be negative")
        self._forced = Forced(count, retry_after_s) if count else None

    def admit(self, digest: str, *, now: float | None = None) -> tuple[bool, int | None]:
        """Whether a request of the key may go on; if not, the Retry-After to send (None: none).
        A request refused is not counted against the window: a client that waits gets in."""
        if self._forced is not None:
            retry_after_s = self._forced.retry_after_s
            self._forced.count -= 1
            if self._forced.count <= 0:
                self._forced = None
            return False, retry_after_s
        if self.limit_per_s <= 0:
            return True, None
        now = time.monotonic() if now is None else now
        recent = self._recent[digest]
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(recent) >= self.limit_per_s * self.window_s:
            return False, max(1, math.ceil(recent[0] + self.window_s - now))
        recent.append(now)
        return True, None

    def record(self, digest: str, at: float, endpoint: str, status: int) -> None:
        """Log one API request: when it arrived (epoch seconds), where, the answer's status,
        and when the answer was ready (now)."""
        self._log[digest].append([at, endpoint, status, time.time()])

    def requests(self) -> dict[str, Any]:
        """The document served at `GET /_sim/requests`."""
        return {
            "limit_per_s": self.limit_per_s,
            "keys": {digest: list(entries) for digest, entries in self._log.items()},
        }

    def reset(self) -> None:
        """Forget the windows, the forced 429s and the log."""
        self._recent.clear()
        self._forced = None
        self._log.clear()


def endpoint_of(path: str) -> str:
    """The API endpoint a path is, named as imageq's metrics name them."""
    if path.endswith("/submit"):
        return "submit"
    if path.endswith("/query"):
        return "query"
    if path.startswith("/v1/tasks/"):
        return "task"
    return "other"
