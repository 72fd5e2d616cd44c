"""Checking a webhook from imageq on the receiving side, in one call: `verify_webhook`.

The signature is checked by `standardwebhooks.Webhook.verify`, the library imageq signs with
(`imageq.worker.webhooks.signing`). Around it, what that library leaves out: several secrets,
so a secret can be rotated on either side without a window in which good webhooks are refused;
the caller's tolerance and clock; strict reading of the headers; and a reason for each refusal
that never holds a secret or an expected signature.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

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
    text = _text(body)
    entries = " ".join(_v1_entries(signatures))
    # Only well-formed v1 entries go to the library, which raises ValueError on others.
    sent = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": entries}
    if not (entries and any(_signed_with(key, text, sent) for key in keys)):
        raise WebhookVerificationFailed("no v1 entry of webhook-signature matches any secret")
    return _parse_object(text)


class _TimestampChecked(Webhook):
    """`Webhook` without its own clock check: `verify_webhook` has checked the timestamp
    already, against the caller's clock and tolerance; the library's reads the wall clock,
    with a fixed 5 minutes."""

    # Overrides the private `Webhook.__verify_timestamp` (name-mangled), which `verify` calls
    # for the signed time. Were it renamed, the library's own check would run again: the
    # same as ours at the defaults, and tests/test_receiver.py (a fixed clock) would fail.
    def _Webhook__verify_timestamp(self, timestamp_header: str) -> datetime:
        return datetime.fromtimestamp(int(timestamp_header), UTC)


def _signed_with(key: bytes, text: str, headers: dict[str, str]) -> bool:
    try:
        _TimestampChecked(key).verify(text, headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


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


def _v1_entries(header: str) -> Iterator[str]:
    """The `v1,<base64>` entries; other versions and malformed entries are skipped."""
    for entry in header.split():
        version, comma, signature = entry.partition(",")
        if version != "v1" or not comma:
            continue
        try:
            base64.b64decode(signature, validate=True)
        except binascii.Error:
            continue
        yield entry


def _text(body: bytes | str) -> str:
    """The body as the text that was signed; the scheme signs text, and JSON is UTF-8."""
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WebhookVerificationFailed(f"webhook body is not JSON ({error})") from None


def _parse_object(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise WebhookVerificationFailed(f"webhook body is not JSON ({error})") from None
    if not isinstance(payload, dict):
        raise WebhookVerificationFailed("webhook body is not a JSON object")
    return payload
