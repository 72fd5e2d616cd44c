"""Checking a webhook from imageq on the receiving side, in one call: `verify_webhook`.

It implements the Standard Webhooks check with hashlib/hmac alone, so it does not depend on the
library imageq signs with, and the tests can hold the two against each other. It accepts
several secrets and several signatures, so a secret can be rotated on either side without a
window in which good webhooks are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from imageq.worker.errors import WebhookVerificationFailed

_SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# ASCII digits only: `int()` would also take "+1", " 1", "1_0" and non-ASCII digits.
_TIMESTAMP = re.compile(r"[0-9]{1,20}")


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secrets: str | Sequence[str],
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the JSON object in `body` if imageq signed it with one of `secrets`, and lately.

    Raises `WebhookVerificationFailed` for a missing header, a timestamp more than
    `tolerance_s` from `now` (Unix seconds, default the clock), no `v1` signature matching any
    secret, or a body that is not a JSON object. Raises `ValueError` if `secrets` is empty or
    one is not (`whsec_`-prefixed) base64: that is the receiver's misconfiguration, not a bad
    webhook. No message holds a secret or an expected signature.
    """
    keys = _decode_secrets(secrets)
    found = {name.lower(): value for name, value in headers.items()}
    msg_id, timestamp, signatures = (_required_header(found, name) for name in _HEADERS)
    _check_timestamp(timestamp, tolerance_s=tolerance_s, now=time.time() if now is None else now)

    raw = body.encode() if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + raw
    expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in keys]
    given = list(_v1_signatures(signatures))
    if not any(hmac.compare_digest(want, got) for want in expected for got in given):
        raise WebhookVerificationFailed("no v1 entry of webhook-signature matches any secret")
    return _parse_object(raw)


def _decode_secrets(secrets: str | Sequence[str]) -> list[bytes]:
    """The HMAC keys of `secrets`; `ValueError` naming the secret by position, never by value."""
    listed = [secrets] if isinstance(secrets, str) else list(secrets)
    if not listed:
        raise ValueError("no webhook secrets given")
    keys = []
    for position, secret in enumerate(listed):
        text = secret.strip().removeprefix(_SECRET_PREFIX).rstrip("=")
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except binascii.Error:
            raise ValueError(f"webhook secret #{position} is not base64") from None
        if not key:
            raise ValueError(f"webhook secret #{position} is empty")
        keys.append(key)
    return keys


def _required_header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise WebhookVerificationFailed(f"missing {name} header")
    return value


def _check_timestamp(timestamp: str, *, tolerance_s: float, now: float) -> None:
    """Refuse replays of old webhooks, and ones dated ahead of a clock skew's worth."""
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookVerificationFailed("webhook-timestamp is not an integer")
    age_s = now - int(timestamp)
    if age_s > tolerance_s:
        raise WebhookVerificationFailed(
            f"webhook-timestamp too old: {age_s:.0f} s ago, tolerance {tolerance_s:g} s"
        )
    if age_s < -tolerance_s:
        raise WebhookVerificationFailed(
            f"webhook-timestamp too new: {-age_s:.0f} s ahead, tolerance {tolerance_s:g} s"
        )


def _v1_signatures(header: str) -> Iterator[bytes]:
    """The decoded `v1,<base64>` entries; other versions and malformed entries are skipped."""
    for entry in header.split():
        version, _, signature = entry.partition(",")
        if version != "v1":
            continue
        try:
            yield base64.b64decode(signature, validate=True)
        except binascii.Error:
            continue


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for non-UTF-8 bytes
        raise WebhookVerificationFailed(f"webhook body is not JSON ({error})") from None
    if not isinstance(payload, dict):
        raise WebhookVerificationFailed("webhook body is not a JSON object")
    return payload
