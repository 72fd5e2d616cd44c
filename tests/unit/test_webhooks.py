"""Webhook building and signing, checked with the independent standardwebhooks library."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from urllib3 import HTTPConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from imageq.worker.webhooks.outbound import error_name
from imageq.worker.webhooks.signing import build_webhook, webhook_id

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_verifies_with_standardwebhooks() -> None:
    """A receiver using the reference library accepts what imageq signs."""
    payload = {"job_id": "j1", "status": "succeeded", "outputs": [{"url": "https://a/1.png"}]}
    request = build_webhook(
        "https://example.com/hook", payload, job_id="j1", secrets=[SECRET], now=datetime.now(UTC)
    )
    assert Webhook(SECRET).verify(request.body, dict(request.headers)) == payload
    assert request.headers["webhook-id"] == webhook_id("j1")
    assert json.loads(request.body) == payload


def test_wrong_secret_or_tampered_body_is_refused() -> None:
    """The signature binds the body and the secret."""
    request = build_webhook(
        "https://example.com/hook", {"a": 1}, job_id="j1", secrets=[SECRET], now=datetime.now(UTC)
    )
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, dict(request.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body.replace("1", "2"), dict(request.headers))


def test_stable_id_fresh_timestamp() -> None:
    """Each attempt keeps the webhook-id and gets its own timestamp and signature."""
    first = build_webhook(
        "u", {"a": 1}, job_id="j", secrets=[SECRET], now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    again = build_webhook(
        "u", {"a": 1}, job_id="j", secrets=[SECRET], now=datetime(2026, 1, 2, tzinfo=UTC)
    )
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert first.headers["webhook-timestamp"] != again.headers["webhook-timestamp"]
    assert first.headers["webhook-signature"] != again.headers["webhook-signature"]


def test_repr_shows_no_signature_or_body() -> None:
    """A logged request shows where it goes, not what proves it."""
    request = build_webhook("u", {"a": 1}, job_id="j", secrets=[SECRET], now=datetime.now(UTC))
    assert request.headers["webhook-signature"] not in repr(request)


def test_stale_timestamp_is_refused_by_standardwebhooks() -> None:
    """A webhook signed ten minutes ago no longer verifies (replays need a fresh signature)."""
    request = build_webhook(
        "u", {"a": 1}, job_id="j", secrets=[SECRET], now=datetime.now(UTC) - timedelta(minutes=10)
    )
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(request.body, dict(request.headers))


def test_every_secret_signs_for_rotation() -> None:
    """With two secrets configured, a receiver holding either one verifies."""
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    request = build_webhook(
        "u", {"a": 1}, job_id="j", secrets=[SECRET, other], now=datetime.now(UTC)
    )
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (SECRET, other):
        assert Webhook(secret).verify(request.body, dict(request.headers)) == {"a": 1}


# Made, never connected: the errors below only name them.
_CONNECTION = HTTPConnection("hooks.example")
_POOL = HTTPConnectionPool("hooks.example")


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (NewConnectionError(_CONNECTION, "refused"), "ConnectionError"),
        (NameResolutionError("hooks.example", _CONNECTION, socket.gaierror()), "ConnectionError"),
        (ConnectTimeoutError(None, "timed out"), "ConnectTimeout"),
        (ReadTimeoutError(_POOL, "/hook", "timed out"), "ReadTimeout"),
        (SSLError("certificate verify failed"), "SSLError"),
        (ProtocolError("Connection aborted."), "ConnectionError"),
        (LocationParseError("http://[x"), "InvalidURL"),
    ],
)
def test_error_names_stay_those_records_have_used(error: HTTPError, name: str) -> None:
    """A send with no answer records a short name, the one it had under requests."""
    assert error_name(error) == name
