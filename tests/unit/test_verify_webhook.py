"""`verify_webhook` on `standardwebhooks`: the caller's clock, and headers the library trips on."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from imageq.producers.verify import verify_webhook
from imageq.worker.errors import WebhookVerificationFailed

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = '{"job_id": "j1", "status": "succeeded"}'


def signed(at: int, body: str = BODY) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed by the reference library at `at`."""
    sig = Webhook(SECRET).sign("msg_j1", datetime.fromtimestamp(at, UTC), body)
    return {"webhook-id": "msg_j1", "webhook-timestamp": str(at), "webhook-signature": sig}


@pytest.mark.parametrize(
    ("clock_offset_s", "sent_ago_s", "tolerance_s"),
    [(-86_400 * 400, 0, 300), (0, 3_600, 7_200), (0, -3_000, 3_600)],
)
def test_the_callers_clock_and_tolerance_rule(
    clock_offset_s: int, sent_ago_s: int, tolerance_s: float
) -> None:
    """Far from the wall clock, or beyond the library's fixed 5 minutes, yet accepted."""
    now = int(time.time()) + clock_offset_s
    sent = signed(now - sent_ago_s)
    payload = verify_webhook(BODY, sent, SECRET, now=now, tolerance_s=tolerance_s)
    assert payload == {"job_id": "j1", "status": "succeeded"}


@pytest.mark.parametrize("extra", ["v1", "v1,abc,def", "v1,,", ",", "v1,=", "v2"])
def test_malformed_entries_beside_a_good_one_are_skipped(extra: str) -> None:
    """Entries the library would raise ValueError on are left out before it sees them."""
    now = int(time.time())
    sent = signed(now)
    sent["webhook-signature"] = f"{extra} {sent['webhook-signature']} {extra}"
    assert verify_webhook(BODY, sent, SECRET, now=now)["job_id"] == "j1"


@pytest.mark.parametrize("entries", ["v1", "v1,abc,def v1", "v1,= ,"])
def test_only_malformed_entries_are_a_refusal_not_a_crash(entries: str) -> None:
    """No usable v1 entry is the usual refusal."""
    now = int(time.time())
    sent = {**signed(now), "webhook-signature": entries}
    with pytest.raises(WebhookVerificationFailed, match="matches any secret"):
        verify_webhook(BODY, sent, SECRET, now=now)


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"a": "\xc3"}'])
def test_a_body_that_is_not_utf8_is_not_json(body: bytes) -> None:
    """The scheme signs text; bytes that are not UTF-8 are refused as not JSON."""
    now = int(time.time())
    with pytest.raises(WebhookVerificationFailed, match="not JSON"):
        verify_webhook(body, signed(now), SECRET, now=now)
