"""Completion webhooks as values: the stable `webhook-id` and a request serialised and signed
with the Standard Webhooks scheme. Pure: `imageq.worker.webhooks.sending` sends them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook


@dataclass(frozen=True)
class WebhookRequest:
    """A signed POST, ready to send."""

    url: str
    body: str
    headers: Mapping[str, str]

    def __repr__(self) -> str:
        return f"WebhookRequest(url={self.url!r}, webhook_id={self.headers['webhook-id']!r})"


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
