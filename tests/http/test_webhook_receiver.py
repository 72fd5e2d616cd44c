"""The development webhook receiver's counts, as a process in another namespace serves them."""

from __future__ import annotations

import requests

from imageq.devenv.webhook_receiver import COUNTS_PATH, WebhookReceiver


def test_counts_name_each_accepted_delivery_by_sender_and_id() -> None:
    """2xx deliveries are counted by sender address and listed by webhook-id, in order; a
    refused one (503 while down) is not."""
    with WebhookReceiver() as receiver:
        hook = f"{receiver.base_url}/hooks"
        requests.post(hook, data=b"{}", headers={"webhook-id": "msg_a"}, timeout=5)
        receiver.down = True
        requests.post(hook, data=b"{}", headers={"webhook-id": "msg_b"}, timeout=5)
        receiver.down = False
        requests.post(hook, data=b"{}", headers={"webhook-id": "msg_a"}, timeout=5)
        counts = requests.get(f"{receiver.base_url}{COUNTS_PATH}", timeout=5).json()
        missing = requests.get(f"{receiver.base_url}/elsewhere", timeout=5)
    assert counts["accepted_by_client"] == {"127.0.0.1": 2}
    assert list(counts["accepted_by_id"]) == ["msg_a"]
    first, second = counts["accepted_by_id"]["msg_a"]
    assert first["client"] == second["client"] == "127.0.0.1"
    assert 0 < first["at"] <= second["at"]
    assert missing.status_code == 404
