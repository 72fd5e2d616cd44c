"""Sending a signed webhook: the one I/O step of a delivery. A failed send is an outcome to
record (`DeliveryAttempt`), never an exception that fails the job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError

from imageq.worker.errors import UnsafeTarget
from imageq.worker.upstream.responses import parse_retry_after
from imageq.worker.webhooks.outbound import OutboundClient, error_name
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
    """Sends webhooks through the guarded outbound client: never the API client's
    connections, which carry the API key. Redirects are not followed: a 3xx is an answer,
    not a new target. Thread-safe."""

    def __init__(self, client: OutboundClient, *, timeout_s: float) -> None:
        self._client = client
        self._timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)

    def send(self, request: WebhookRequest) -> DeliveryAttempt:
        started, clock = time.time(), time.perf_counter()
        try:
            response = self._client.request(
                "POST",
                request.url,
                body=request.body.encode(),
                headers=request.headers,
                timeout=self._timeout,
            )
        except UnsafeTarget as error:
            # The guard at connect time: the name resolved to a refused address since the
            # check before this attempt. Nothing was sent.
            return DeliveryAttempt(
                at=started, duration_s=time.perf_counter() - clock, error=str(error)
            )
        except HTTPError as error:
            return DeliveryAttempt(
                at=started, duration_s=time.perf_counter() - clock, error=error_name(error)
            )
        # Only the status matters: the answer's body, however large, is never read, and its
        # connection is closed rather than drained for reuse.
        response.close()
        response.release_conn()
        return DeliveryAttempt(
            at=started,
            duration_s=time.perf_counter() - clock,
            http_status=response.status,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )
