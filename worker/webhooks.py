"""Completion webhooks, signed with the Standard Webhooks scheme.

Building and signing a request is pure (`build_webhook`); sending it is the one I/O step
(`WebhookSender.send`), and a failed send is an outcome to record, never an exception that
fails the job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from standardwebhooks import Webhook


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
    url: str, payload: Mapping[str, Any], *, job_id: str, secret: str, now: datetime
) -> WebhookRequest:
    """Serialise and sign a payload: `webhook-id`, `webhook-timestamp`, `webhook-signature`."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    msg_id = webhook_id(job_id)
    moment = now.astimezone(UTC)
    return WebhookRequest(
        url=url,
        body=body,
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
        },
    )


class WebhookSender:
    """Sends webhooks over its own sessions: never the API client's, which carry the API key."""

    def __init__(self, *, timeout_s: float, user_agent: str) -> None:
        self._timeout_s = timeout_s
        self._user_agent = user_agent
        self._local = threading.local()

    def send(self, request: WebhookRequest) -> DeliveryAttempt:
        started, clock = time.time(), time.perf_counter()
        try:
            response = self._session().post(
                request.url,
                data=request.body.encode(),
                headers=dict(request.headers),
                timeout=self._timeout_s,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            return DeliveryAttempt(
                at=started, duration_s=time.perf_counter() - clock, error=type(error).__name__
            )
        return DeliveryAttempt(
            at=started, duration_s=time.perf_counter() - clock, http_status=response.status_code
        )

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self._user_agent
            self._local.session = session
        return session
