"""The transitions after a job's end, pure: saving outputs, the callback, the webhook's attempts,
dead letter and replay, and which records refuse each."""

from __future__ import annotations

from typing import Any

import pytest

from imageq.worker.domain import deliveries
from imageq.worker.domain.job import Delivery, Downloads, Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.domain.transitions import Transition
from imageq.worker.messages import (
    ScheduleCallback,
    ScheduleDownload,
    ScheduleWebhook,
)
from imageq.worker.policy.delivery_schedule import Delivered, GiveUp, Outcome, RetryIn
from tests.unit.records import CALLBACK, HOOK, NOW, job

SAVED = {"url": "u0", "width": 1, "height": 1, "saved": {"location": "/x"}, "download_error": None}
RETRYABLE = {"url": "u1", "width": 1, "height": 1, "download_error": {"retryable": True}}
FINAL = {"url": "u1", "width": 1, "height": 1, "download_error": {"retryable": False}}
SENT = {"at": NOW, "http_status": 500, "duration_s": 0.1}
EARLIER = {"at": NOW - 5, "http_status": 503, "duration_s": 0.1}


def saving(**fields: Any) -> Job:
    """A succeeded job whose outputs are being saved."""
    values = {"status": JobStatus.SUCCEEDED, "downloads_state": Downloads.PENDING, **fields}
    return job(**values)


def hooked(**fields: Any) -> Job:
    """A finished job with a pending webhook, one attempt made."""
    values = {
        "status": JobStatus.SUCCEEDED,
        "webhook_url": HOOK,
        "webhook_state": Delivery.PENDING,
        "webhook_attempts": [EARLIER],
        "webhook_next_at": NOW,
        **fields,
    }
    return job(**values)


def test_claim_download_takes_a_lease() -> None:
    """The next attempt of a pending download is claimed under a lease, checked in full; the
    work is due now (the sweeper takes it back once it is overdue and the lease has ended)."""
    claim = deliveries.claim_download(saving(download_attempts=1), attempt=2, now=NOW, lease_s=40)
    assert claim == Transition(
        "j1",
        expect={
            "downloads_state": Downloads.PENDING,
            "download_attempts": 1,
            "download_lease_until": 0.0,
        },
        changes={"download_lease_until": NOW + 40},
        due_at=NOW,  # due now: the sweeper looks a grace later, or when the lease ends
    )


@pytest.mark.parametrize(
    ("record", "attempt"),
    [
        (saving(downloads_state=Downloads.DONE), 1),
        (saving(downloads_state=Downloads.NONE), 1),
        (saving(download_attempts=1), 1),
        (saving(), 2),
        (saving(download_lease_until=NOW + 1), 1),
    ],
    ids=["done", "none", "duplicate", "ahead", "leased"],
)
def test_claim_download_refused(record: Job, attempt: int) -> None:
    """Only the next attempt of a pending download, with no live lease, is claimed."""
    assert deliveries.claim_download(record, attempt=attempt, now=NOW, lease_s=40) is None


@pytest.mark.parametrize(
    ("outputs", "attempts", "retry"),
    [
        ([SAVED, RETRYABLE], 0, True),
        ([SAVED, RETRYABLE], 2, False),
        ([SAVED, FINAL], 0, False),
        ([SAVED], 0, False),
    ],
    ids=["retryable", "last-attempt", "final-error", "all-saved"],
)
def test_mark_download_retries_only_what_may_still_work(
    outputs: list[dict[str, Any]], attempts: int, retry: bool
) -> None:
    """A retryable failure with attempts left is retried; otherwise saving is done. The first
    attempt of its number to finish is kept, lease or not (a slow one may run twice)."""
    claimed = saving(download_attempts=attempts, download_lease_until=NOW, callback=CALLBACK)
    marked = deliveries.mark_download(claimed, outputs=outputs, max_attempts=3, now=NOW, delay_s=2)
    assert marked is not None
    assert marked.expect == {"downloads_state": Downloads.PENDING, "download_attempts": attempts}
    assert marked.changes["outputs"] == outputs
    assert marked.changes["download_attempts"] == attempts + 1
    if retry:
        assert "downloads_state" not in marked.changes
        assert marked.due_at == NOW + 2
        assert marked.follow_ups() == [ScheduleDownload("j1", attempts + 2, 2)]
    else:
        assert marked.changes["downloads_state"] is Downloads.DONE
        assert marked.follow_ups() == [ScheduleCallback("j1")]


@pytest.mark.parametrize(
    ("fields", "then"),
    [
        ({}, []),
        ({"callback": CALLBACK}, [ScheduleCallback("j1")]),
        ({"webhook_url": HOOK}, [ScheduleWebhook("j1", 1)]),
    ],
    ids=["nothing", "callback", "webhook"],
)
def test_a_done_download_sends_the_notifications_or_settles(
    fields: dict[str, Any], then: list[object]
) -> None:
    """Once saved, the notifications go out; with none, the job leaves the index."""
    marked = deliveries.mark_download(
        saving(**fields), outputs=[SAVED], max_attempts=3, now=NOW, delay_s=2
    )
    assert marked is not None
    assert marked.follow_ups() == then
    assert (marked.due_at, marked.settled) == ((NOW, False) if then else (None, True))


LAGGING = {**RETRYABLE, "download_error": {"retryable": True, "http_status": 404}}
AWAY = {**RETRYABLE, "download_error": {"retryable": True, "http_status": 503}}


@pytest.mark.parametrize(
    ("output", "now", "retry"),
    [
        (RETRYABLE, NOW + 599, True),
        (AWAY, NOW + 599, True),
        (RETRYABLE, NOW + 600, False),
        (LAGGING, NOW + 10, False),
    ],
    ids=["no-answer", "503", "window-over", "404"],
)
def test_mark_download_retries_past_its_attempts_within_the_outage_window(
    output: dict[str, Any], now: float, retry: bool
) -> None:
    """Out of attempts, a host that is away (no answer, 5xx) is still retried until
    `retry_until`: an outage shorter than the window never costs the saved image. A file not
    there (404) keeps to its attempts."""
    claimed = saving(download_attempts=5, callback=CALLBACK)
    marked = deliveries.mark_download(
        claimed, outputs=[output], max_attempts=3, now=now, delay_s=2, retry_until=NOW + 600
    )
    assert marked is not None
    assert ("downloads_state" not in marked.changes) is retry


def test_mark_download_refused_once_not_pending() -> None:
    """A download no longer pending takes no result."""
    done = saving(downloads_state=Downloads.DONE)
    assert deliveries.mark_download(done, outputs=[], max_attempts=3, now=NOW, delay_s=1) is None


@pytest.mark.parametrize(
    "record",
    [
        job(callback=CALLBACK, callback_state=Delivery.PENDING),
        job(callback=CALLBACK, callback_state=Delivery.SENDING, callback_lease_until=NOW),
    ],
    ids=["pending", "lease-lapsed"],
)
def test_claim_callback(record: Job) -> None:
    """A pending callback, or one whose sender was lost, is claimed as found, under a lease."""
    claim = deliveries.claim_callback(record, now=NOW, lease_s=30)
    assert claim == Transition(
        "j1",
        expect={
            "callback_state": record.callback_state,
            "callback_lease_until": record.callback_lease_until,
        },
        changes={"callback_state": Delivery.SENDING, "callback_lease_until": NOW + 30},
        due_at=NOW,  # due now: the sweeper looks a grace later, or when the lease ends
    )


@pytest.mark.parametrize(
    "record",
    [
        job(callback=None, callback_state=Delivery.PENDING),
        job(callback=CALLBACK, callback_state=Delivery.SENT),
        job(callback=CALLBACK, callback_state=Delivery.NONE),
        job(callback=CALLBACK, callback_state=Delivery.SENDING, callback_lease_until=NOW + 1),
    ],
    ids=["no-callback", "sent", "none", "being-sent"],
)
def test_claim_callback_refused(record: Job) -> None:
    """A callback sent, not asked for, or being sent under a live lease is not claimed."""
    assert deliveries.claim_callback(record, now=NOW, lease_s=30) is None


@pytest.mark.parametrize(
    ("webhook", "downloads", "settled"),
    [
        (Delivery.NONE, Downloads.NONE, True),
        (Delivery.SENT, Downloads.DONE, True),
        (Delivery.DEAD, Downloads.NONE, True),
        (Delivery.PENDING, Downloads.NONE, False),
        (Delivery.NONE, Downloads.PENDING, False),
    ],
)
def test_mark_callback_settles_only_when_nothing_is_left(
    webhook: Delivery, downloads: Downloads, settled: bool
) -> None:
    """The sent callback settles the job unless its webhook or outputs are still under way."""
    claimed = job(
        status=JobStatus.SUCCEEDED,  # a callback goes out only once its job has ended
        callback=CALLBACK,
        callback_state=Delivery.SENDING,
        webhook_state=webhook,
        downloads_state=downloads,
    )
    assert deliveries.mark_callback(claimed) == Transition(
        "j1",
        expect={"callback_state": Delivery.SENDING},
        changes={"callback_state": Delivery.SENT},
        settled=settled,
    )


def test_mark_callback_refused_unless_claimed() -> None:
    """A callback that is not being sent is not marked sent."""
    assert deliveries.mark_callback(job(callback=CALLBACK, callback_state=Delivery.PENDING)) is None


@pytest.mark.parametrize(
    ("record", "attempt", "hop"),
    [
        (hooked(webhook_next_at=NOW + 0.5), 2, ScheduleWebhook("j1", 2, 0.5)),
        (hooked(webhook_next_at=NOW + 300), 2, ScheduleWebhook("j1", 2, 10)),
        (hooked(), 2, None),
        (hooked(webhook_next_at=None), 2, None),
        (hooked(webhook_next_at=NOW + 300), 1, None),
        (hooked(webhook_next_at=NOW + 300, webhook_state=Delivery.SENT), 2, None),
    ],
    ids=["early", "far-off", "due", "no-time", "stale-attempt", "delivered"],
)
def test_webhook_hop(record: Job, attempt: int, hop: ScheduleWebhook | None) -> None:
    """The current attempt's early message hops towards its due time, never further than
    the longest countdown; a due, stale or finished one does not hop."""
    assert deliveries.webhook_hop(record, attempt=attempt, now=NOW, max_hop_s=10) == hop


def test_claim_webhook_takes_a_lease() -> None:
    """The due attempt is claimed under a lease, expecting the attempts as read."""
    claim = deliveries.claim_webhook(hooked(), attempt=2, now=NOW, lease_s=9)
    assert claim == Transition(
        "j1",
        expect={
            "webhook_state": Delivery.PENDING,
            "webhook_attempts": [EARLIER],
            "webhook_lease_until": 0.0,
        },
        changes={"webhook_lease_until": NOW + 9},
        due_at=NOW,  # due now: the sweeper looks a grace later, or when the lease ends
    )


@pytest.mark.parametrize(
    ("record", "attempt"),
    [
        (hooked(webhook_state=Delivery.SENT), 2),
        (hooked(webhook_url=None), 2),
        (hooked(), 1),
        (hooked(), 3),
        (hooked(webhook_next_at=NOW + 1), 2),
        (hooked(webhook_lease_until=NOW + 1), 2),
    ],
    ids=["sent", "no-url", "stale", "ahead", "early", "leased"],
)
def test_claim_webhook_refused(record: Job, attempt: int) -> None:
    """Only the due next attempt of a pending delivery, with no live lease, is claimed."""
    assert deliveries.claim_webhook(record, attempt=attempt, now=NOW, lease_s=9) is None


@pytest.mark.parametrize(
    ("callback_state", "due_at", "settled"),
    [(Delivery.NONE, None, True), (Delivery.SENT, None, True), (Delivery.PENDING, NOW, False)],
)
def test_a_delivered_webhook_settles_unless_the_callback_is_left(
    callback_state: Delivery, due_at: float | None, settled: bool
) -> None:
    """Delivered: sent, the attempt kept; the job settles unless its callback is still due."""
    claimed = hooked(callback_state=callback_state, webhook_lease_until=NOW + 9)
    marked = deliveries.record_webhook(
        claimed, sent=SENT, outcome=Delivered(), now=NOW, max_hop_s=10
    )
    assert marked == Transition(
        "j1",
        expect={"webhook_state": Delivery.PENDING, "webhook_attempts": [EARLIER]},
        changes={
            "webhook_attempts": [EARLIER, SENT],
            "webhook_lease_until": 0.0,
            "webhook_state": Delivery.SENT,
            "webhook_next_at": None,
        },
        due_at=due_at,
        settled=settled,
    )


@pytest.mark.parametrize(("delay_s", "hop_s"), [(4.0, 4.0), (300.0, 10.0)])
def test_a_failed_attempt_is_retried_on_schedule(delay_s: float, hop_s: float) -> None:
    """A retry is due after the delay; its message hops at most the longest countdown."""
    retry = deliveries.record_webhook(
        hooked(), sent=SENT, outcome=RetryIn(delay_s), now=NOW, max_hop_s=10
    )
    assert retry is not None
    assert retry.changes == {
        "webhook_attempts": [EARLIER, SENT],
        "webhook_lease_until": 0.0,
        "webhook_next_at": NOW + delay_s,
    }
    assert (retry.due_at, retry.settled) == (NOW + delay_s, False)
    assert retry.follow_ups() == [ScheduleWebhook("j1", 3, hop_s)]


def test_a_given_up_webhook_is_dead_lettered_in_the_same_write() -> None:
    """Given up: dead, and filed in the dead-letter list with the reason and the count."""
    dead = deliveries.record_webhook(
        hooked(), sent=SENT, outcome=GiveUp("410 Gone"), now=NOW, max_hop_s=10
    )
    assert dead is not None
    assert dead.changes["webhook_state"] is Delivery.DEAD
    assert dead.dead_letter == {"reason": "410 Gone", "at": NOW, "attempts": 2}
    assert (dead.settled, dead.follow_ups()) == (True, [])


@pytest.mark.parametrize("outcome", [Delivered(), RetryIn(1.0), GiveUp("gone")])
@pytest.mark.parametrize("state", [Delivery.SENT, Delivery.DEAD, Delivery.NONE])
def test_recording_an_attempt_refused_once_not_pending(outcome: Outcome, state: Delivery) -> None:
    """An attempt on a delivery no longer pending (replayed or over) records nothing."""
    claimed = hooked(webhook_state=state)
    assert (
        deliveries.record_webhook(claimed, sent=SENT, outcome=outcome, now=NOW, max_hop_s=1) is None
    )


@pytest.mark.parametrize("state", [Delivery.DEAD, Delivery.SENT])
def test_replay_starts_a_fresh_schedule(state: Delivery) -> None:
    """A delivered or dead webhook is due again at once, counted afresh, out of the dead
    letters, under the same attempts list."""
    replayed = deliveries.replay_webhook(hooked(webhook_state=state), now=NOW)
    assert replayed == Transition(
        "j1",
        expect={"webhook_state": state, "webhook_attempts": [EARLIER]},
        changes={
            "webhook_state": Delivery.PENDING,
            "webhook_next_at": NOW,
            "webhook_lease_until": 0.0,
            "webhook_replay_base": 1,
        },
        revive=True,
        then=(ScheduleWebhook("j1", 2),),
    )


@pytest.mark.parametrize(
    "record",
    [hooked(), hooked(webhook_state=Delivery.NONE), hooked(webhook_url=None)],
    ids=["under-way", "none", "no-url"],
)
def test_replay_refused(record: Job) -> None:
    """A delivery under way, or a job without a webhook, is not replayed."""
    assert deliveries.replay_webhook(record, now=NOW) is None
