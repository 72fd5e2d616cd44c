"""Sending a signed webhook: the one I/O step of a delivery. A failed send is an outcome to
record (`DeliveryAttempt`), never an exception that fails the job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

from imageq.worker.errors import UnsafeTarget
from imageq.worker.upstream.responses import parse_retry_after
from imageq.worker.webhooks.sessions import ThreadSessions
from imageq.worker.webhooks.signing import WebhookRequest


@dataclass(frozen=True)
class DeliveryAttempt:
    """What one send attempt got: an HTTP status, or the error that stopped it."""

    at: float
    duration_s: float
    http_status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300

    def to_record(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "duration_s": round(self.duration_s, 4),
            "http_status": self.http_status,
            "error": self.error,
        }


class WebhookSender:
    """Sends webhooks over guarded plain sessions: never the API client's, which carry the
    API key. Redirects are not followed: a 3xx is an answer, not a new target."""

    def __init__(self, sessions: ThreadSessions, *, timeout_s: float) -> None:
        self._sessions = sessions
        self._timeout_s = timeout_s

    def send(self, request: WebhookRequest) -> DeliveryAttempt:
        started, clock = time.time(), time.perf_counter()
        try:
            # stream=True and no read: only the status matters, and a receiver's answer body,
            # however large, is never loaded.
            with self._sessions.get().post(
                request.url,
                data=request.body.encode(),
                headers=dict(request.headers),
                timeout=self._timeout_s,
                allow_redirects=False,
                stream=True,
            ) as response:
                pass
        except UnsafeTarget as error:
            # The guard at connect time: the name resolved to a refused address since the
            # check before this attempt. Nothing was sent.
            return DeliveryAttempt(
                at=started, duration_s=time.perf_counter() - clock, error=str(error)
            )
        except requests.RequestException as error:
            return DeliveryAttempt(
                at=started, duration_s=time.perf_counter() - clock, error=type(error).__name__
            )
        return DeliveryAttempt(
            at=started,
            duration_s=time.perf_counter() - clock,
            http_status=response.status_code,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )
