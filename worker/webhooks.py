"""Completion webhooks, signed with the Standard Webhooks scheme.

Building and signing a request is pure (`build_webhook`); sending it is the one I/O step
(`WebhookSender.send`), and a failed send is an outcome to record, never an exception that
fails the job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from standardwebhooks import Webhook

from imageq.worker.responses import parse_retry_after
from imageq.worker.sessions import ThreadSessions


@dataclass(frozen=True)
class WebhookRequest:
    """A signed POST, ready to send."""

    url: str
    body: str
    headers: Mapping[str, str]

    def __repr__(self) -> str:
        return f"WebhookRequest(url={self.url!r}, webhook_id={self.headers['webhook-id']!r})"


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


def webhook_id(job_id: str) -> str:
    """The stable `webhook-id` of a job's completion: the same on every attempt and replay."""
    return f"msg_{job_id}"


def build_webhook(
    url: str,
    payload: Mapping[str, Any],
    *,
    job_id: str,
    secrets: Sequence[str],
    now: datetime,
) -> WebhookRequest:
    """Serialise and sign a payload: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

    Each secret adds one `v1,` signature, so a receiver holding any of them can verify.
    """
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    msg_id = webhook_id(job_id)
    moment = now.astimezone(UTC)
    signatures = " ".join(Webhook(secret).sign(msg_id, moment, body) for secret in secrets)
    return WebhookRequest(
        url=url,
        body=body,
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signatures,
        },
    )


class WebhookSender:
    """Sends webhooks over plain sessions: never the API client's, which carry the API key."""

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
