"""The receiver's check: reference signatures pass, imageq's pass both checks, refusals named."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from imageq.producers.verify import verify_webhook
from imageq.worker.errors import WebhookVerificationFailed
from imageq.worker.webhooks.signing import build_webhook

OLD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA=="
OTHER_SECRET = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
NOW = 1_780_000_000
PAYLOAD = {"job_id": "j1", "status": "succeeded", "outputs": [{"url": "https://a/1.png"}]}
BODY = json.dumps(PAYLOAD)


def signature(secret: str, body: str = BODY, *, msg_id: str = "msg_j1", at: int = NOW) -> str:
    """A `v1,<base64>` entry made by the reference library."""
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, UTC), body)


def headers(sig: str, *, msg_id: str = "msg_j1", at: int | str = NOW) -> dict[str, str]:
    """The three Standard Webhooks headers."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": sig}


def refusal(body: str | bytes, sent: dict[str, str], secrets: str | list[str]) -> str:
    """The message of the refusal, checked to leak no secret and no expected signature."""
    with pytest.raises(WebhookVerificationFailed) as caught:
        verify_webhook(body, sent, secrets, now=NOW)
    message = str(caught.value)
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        assert secret.removeprefix("whsec_").rstrip("=") not in message
        assert signature(secret).removeprefix("v1,") not in message
    return message


def test_reference_library_signature_verifies() -> None:
    """What standardwebhooks signs, verify_webhook accepts, and returns the payload."""
    assert verify_webhook(BODY, headers(signature(OLD_SECRET)), OLD_SECRET, now=NOW) == PAYLOAD


def test_imageq_signature_verifies_both_ways() -> None:
    """What build_webhook signs passes verify_webhook and the reference library alike."""
    request = build_webhook(
        "https://example.com/hook",
        PAYLOAD,
        job_id="j1",
        secrets=[NEW_SECRET],
        now=datetime.now(UTC),
    )
    assert verify_webhook(request.body, request.headers, NEW_SECRET) == PAYLOAD
    assert verify_webhook(request.body.encode(), request.headers, [NEW_SECRET]) == PAYLOAD
    assert Webhook(NEW_SECRET).verify(request.body, dict(request.headers)) == PAYLOAD


@pytest.mark.parametrize("secret", [OLD_SECRET, NEW_SECRET])
def test_imageq_rotation_signature_verifies_with_either_secret(secret: str) -> None:
    """imageq signing with [old, new] reaches receivers holding either, in both checkers."""
    request = build_webhook(
        "https://example.com/hook",
        PAYLOAD,
        job_id="j1",
        secrets=[OLD_SECRET, NEW_SECRET],
        now=datetime.now(UTC),
    )
    assert request.headers["webhook-signature"].count("v1,") == 2
    assert verify_webhook(request.body, request.headers, secret) == PAYLOAD
    assert Webhook(secret).verify(request.body, dict(request.headers)) == PAYLOAD
    with pytest.raises(WebhookVerificationFailed):
        verify_webhook(request.body, request.headers, OTHER_SECRET)


def test_header_names_are_case_insensitive_and_body_may_be_bytes() -> None:
    """Frameworks hand over Title-Case headers and raw bytes."""
    sent = {
        "Webhook-Id": "msg_j1",
        "WEBHOOK-TIMESTAMP": str(NOW),
        "Webhook-Signature": signature(OLD_SECRET),
    }
    assert verify_webhook(BODY.encode(), sent, OLD_SECRET, now=NOW) == PAYLOAD


def test_secret_without_prefix_or_padding_is_accepted() -> None:
    """The bare base64 of a secret, unpadded or with stray whitespace, is the same key."""
    sent = headers(signature(NEW_SECRET))
    for form in (
        "dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA==",
        "dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA",
    ):
        assert verify_webhook(BODY, sent, form, now=NOW) == PAYLOAD
    assert verify_webhook(BODY, sent, f" {NEW_SECRET}\n", now=NOW) == PAYLOAD


@pytest.mark.parametrize("secret", [OLD_SECRET, NEW_SECRET])
def test_header_with_two_signatures_verifies_with_either_secret(secret: str) -> None:
    """While imageq signs with old and new, a receiver holding only one still accepts."""
    sent = headers(f"{signature(OLD_SECRET)} {signature(NEW_SECRET)}")
    assert verify_webhook(BODY, sent, secret, now=NOW) == PAYLOAD


@pytest.mark.parametrize("signer", [OLD_SECRET, NEW_SECRET])
def test_receiver_with_two_secrets_accepts_either_signer(signer: str) -> None:
    """While the receiver holds old and new, imageq may sign with either."""
    sent = headers(signature(signer))
    assert verify_webhook(BODY, sent, [OLD_SECRET, NEW_SECRET], now=NOW) == PAYLOAD


def test_other_versions_are_skipped_not_fatal() -> None:
    """A v2 or malformed entry beside a good v1 one does not spoil it."""
    good = signature(OLD_SECRET)
    sent = headers(f"v2,{good.removeprefix('v1,')} v1,not*base64 v1 {good}")
    assert verify_webhook(BODY, sent, OLD_SECRET, now=NOW) == PAYLOAD


@pytest.mark.parametrize("age_s", [-300, 0, 300])
def test_timestamp_within_tolerance_is_accepted(age_s: int) -> None:
    """Up to tolerance_s either side of now is on time."""
    sent = headers(signature(OLD_SECRET, at=NOW - age_s), at=NOW - age_s)
    assert verify_webhook(BODY, sent, OLD_SECRET, now=NOW) == PAYLOAD


def test_tampered_body_is_refused() -> None:
    """The signature binds the body."""
    tampered = BODY.replace("succeeded", "failed")
    message = refusal(tampered, headers(signature(OLD_SECRET)), OLD_SECRET)
    assert "matches" in message


def test_tampered_id_is_refused() -> None:
    """The signature binds the webhook-id."""
    message = refusal(BODY, headers(signature(OLD_SECRET), msg_id="msg_j2"), OLD_SECRET)
    assert "matches" in message


@pytest.mark.parametrize("secrets", [OTHER_SECRET, [OTHER_SECRET, NEW_SECRET]])
def test_wrong_secret_is_refused(secrets: str | list[str]) -> None:
    """A signature by a secret the receiver does not hold is refused."""
    assert "matches" in refusal(BODY, headers(signature(OLD_SECRET)), secrets)


@pytest.mark.parametrize(
    ("offset_s", "words"), [(-301, "too old"), (-86_400, "too old"), (301, "too new")]
)
def test_timestamp_outside_tolerance_is_refused(offset_s: int, words: str) -> None:
    """A correctly signed but stale or future-dated webhook is refused (replay protection)."""
    at = NOW + offset_s
    assert words in refusal(BODY, headers(signature(OLD_SECRET, at=at), at=at), OLD_SECRET)


def test_tolerance_is_a_parameter() -> None:
    """A tighter tolerance refuses what the default accepts."""
    sent = headers(signature(OLD_SECRET, at=NOW - 30), at=NOW - 30)
    assert verify_webhook(BODY, sent, OLD_SECRET, now=NOW) == PAYLOAD
    with pytest.raises(WebhookVerificationFailed, match="too old"):
        verify_webhook(BODY, sent, OLD_SECRET, now=NOW, tolerance_s=10)


@pytest.mark.parametrize(
    "stamp", ["1780000000.5", "abc", " 1780000000", "+1780000000", "-1", "1_7"]
)
def test_non_integer_timestamp_is_refused(stamp: str) -> None:
    """Only plain ASCII digits are a timestamp."""
    sent = headers(signature(OLD_SECRET), at=stamp)
    assert "not an integer" in refusal(BODY, sent, OLD_SECRET)


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
@pytest.mark.parametrize("empty", [False, True])
def test_missing_header_is_refused_by_name(name: str, empty: bool) -> None:
    """An absent or empty header is named in the message."""
    sent = headers(signature(OLD_SECRET))
    if empty:
        sent[name] = ""
    else:
        del sent[name]
    assert refusal(BODY, sent, OLD_SECRET) == f"missing {name} header"


@pytest.mark.parametrize("entries", ["v2,{sig}", "v1a,{sig} v0,{sig}", "{sig}", "v1,", "v1,!!!"])
def test_no_usable_v1_entry_is_refused(entries: str) -> None:
    """Entries of other versions are ignored, so a header without a good v1 one fails."""
    sig = signature(OLD_SECRET).removeprefix("v1,")
    sent = headers(entries.format(sig=sig))
    assert "matches" in refusal(BODY, sent, OLD_SECRET)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not json", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"x"', "object"),
    ],
)
def test_signed_body_that_is_not_a_json_object_is_refused(body: str, words: str) -> None:
    """A correctly signed body must still be a JSON object to be returned."""
    assert words in refusal(body, headers(signature(OLD_SECRET, body)), OLD_SECRET)


@pytest.mark.parametrize("secrets", [[], ["whsec_***not-base64***"], ["whsec_"]])
def test_misconfigured_secrets_raise_value_error_without_the_secret(secrets: list[str]) -> None:
    """A receiver's own bad configuration is a ValueError, not a refused webhook."""
    with pytest.raises(ValueError, match="webhook secret") as caught:
        verify_webhook(BODY, headers(signature(OLD_SECRET)), secrets, now=NOW)
    assert "not-base64" not in str(caught.value)
