"""The job's lifecycle transitions, pure: what each write expects and changes, what it does to
the indexes, what follows it, and which records refuse it."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from imageq.worker.domain import submits, transitions
from imageq.worker.domain.job import Delivery, Downloads, Job
from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from imageq.worker.domain.transitions import Slot, Transition
from imageq.worker.messages import (
    BatchFinished,
    PollFacts,
    ScheduleCallback,
    ScheduleDownload,
    SchedulePoll,
    ScheduleWebhook,
    Submit,
)
from imageq.worker.policy.polling import Finish
from tests.unit.records import CALLBACK, HOOK, NOW, job

URLS = ("https://cdn.example/0.png", "https://cdn.example/1.png")
FACTS = PollFacts("task-1", NOW + 180, 3)
NOT_TERMINAL = (JobStatus.QUEUED, JobStatus.SUBMITTED)


def submitted(**fields: Any) -> Job:
    return job(
        **{"status": JobStatus.SUBMITTED, "poll_token": 4, "deadline_at": NOW + 180, **fields}
    )


def claimed(**fields: Any) -> Job:
    return job(**{"submit_attempts": 2, "submit_lease_until": NOW + 30, **fields})


@pytest.mark.parametrize("slot", [None, Slot(limit=5, expires_at=NOW + 300)])
def test_claim_submit_counts_the_attempt_under_a_lease(slot: Slot | None) -> None:
    """A queued job's claim counts the attempt, takes a lease and (if capped) a slot; the
    work is due now, so the sweeper looks at it a grace later; the first attempt's time stays."""
    record = job(submit_attempts=1, submit_first_at=NOW - 50)
    claim = submits.claim_submit(record, now=NOW, lease_s=15, send_s=None, slot=slot)
    assert claim == Transition(
        "j1",
        expect={"status": JobStatus.QUEUED, "submit_attempts": 1},
        changes={
            "submit_attempts": 2,
            "submit_lease_until": NOW + 15,
            "submit_first_at": NOW - 50,
        },
        slot=slot,
        due_at=NOW,
    )


def test_first_claim_notes_the_first_attempt_and_the_request_window() -> None:
    """The first attempt's time starts the outage window; an attempt that sends at once marks
    how long its request may land in the same write."""
    claim = submits.claim_submit(job(), now=NOW, lease_s=15, send_s=36, slot=None)
    assert claim is not None
    assert claim.changes == {
        "submit_attempts": 1,
        "submit_lease_until": NOW + 15,
        "submit_first_at": NOW,
        "submit_sent_until": NOW + 36,
    }


@pytest.mark.parametrize(
    ("record", "looks_up"),
    [
        (job(), False),
        (job(submit_attempts=3, submit_first_at=NOW - 9), False),  # none can have reached it
        (job(submit_attempts=1, submit_first_at=NOW - 9, submit_sent_until=NOW - 1), True),
        (job(submit_attempts=1, submit_first_at=NOW - 9, submit_sent_until=NOW + 30), True),
        (job(submit_attempts=1), True),  # a record from before submit_first_at was kept
    ],
    ids=["first", "never-sent", "sent-window-closed", "sent-window-open", "legacy"],
)
def test_looks_up_first_after_any_attempt_that_may_have_reached_the_api(
    record: Job, looks_up: bool
) -> None:
    """Only an attempt that may have reached the API makes the next one look the job up."""
    assert submits.looks_up_first(record) is looks_up


def test_send_submit_waits_for_an_earlier_request_to_close() -> None:
    """A submit goes out only once no earlier request may still land, and marks its own."""
    assert submits.send_submit(claimed(submit_sent_until=NOW + 5), now=NOW, send_s=36) is None
    sending = submits.send_submit(claimed(submit_sent_until=NOW - 1), now=NOW, send_s=36)
    assert sending == Transition(
        "j1",
        expect={"status": JobStatus.QUEUED, "submit_attempts": 2},
        changes={"submit_sent_until": NOW + 36},
    )
    assert submits.send_submit(claimed(status=JobStatus.SUBMITTED), now=NOW, send_s=1) is None


@pytest.mark.parametrize(
    "record",
    [
        job(status=JobStatus.SUBMITTED),
        job(status=JobStatus.CANCELLED),
        job(submit_lease_until=NOW + 1),
    ],
    ids=["submitted", "cancelled", "leased"],
)
def test_claim_submit_refused(record: Job) -> None:
    """Only a queued job whose last attempt's lease has ended can be claimed."""
    assert submits.claim_submit(record, now=NOW, lease_s=30, send_s=None, slot=None) is None


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (job(submit_lease_until=NOW + 2), Submit("j1", "interactive", countdown_s=2.1)),
        (job(submit_lease_until=NOW + 2, lane="bulk"), Submit("j1", "bulk", countdown_s=2.1)),
        (job(submit_lease_until=NOW), None),
        (job(status=JobStatus.SUBMITTED, submit_lease_until=NOW + 2), None),
    ],
    ids=["leased", "leased-bulk", "lease-over", "submitted"],
)
def test_submit_busy_waits_out_another_workers_lease(record: Job, expected: Submit | None) -> None:
    """A submit finding another worker's lease checks again just after it ends."""
    assert submits.submit_busy(record, now=NOW) == expected


def test_record_submit_starts_polling() -> None:
    """The API took the attempt: submitted, deadline set, first poll due, slot kept to it."""
    recorded = submits.record_submit(
        claimed(),
        remote_task_id="task-1",
        remote_status="queued",
        now=NOW,
        first_poll_s=15,
        deadline_s=180,
        outage_window_s=600,
    )
    assert recorded is not None
    # Any attempt may record it: one whose answer came late still knows the one task.
    assert recorded.expect == {"status": JobStatus.QUEUED}
    assert recorded.changes == {
        "status": JobStatus.SUBMITTED,
        "remote_task_id": "task-1",
        "remote_status": "queued",
        "submitted_at": NOW,
        "deadline_at": NOW + 180,
        "submit_lease_until": 0.0,
        "submit_sent_until": 0.0,
        "poll_token": 1,
        "next_poll_at": NOW + 15,
    }
    # The slot is kept through the last check an outage may delay.
    assert (recorded.due_at, recorded.slot_expires_at) == (NOW + 15, NOW + 180 + 600 + 60)
    # The poll messages carry the submit time and the job's kind, to place each poll by.
    facts = PollFacts("task-1", NOW + 180, 0, NOW, "high", "1K")
    assert recorded.follow_ups() == [SchedulePoll("j1", 1, 15, facts)]


@pytest.mark.parametrize("status", [s for s in JobStatus if s is not JobStatus.QUEUED])
def test_record_and_retry_submit_refused_once_not_queued(status: JobStatus) -> None:
    """A job no longer queued (cancelled meanwhile, say) takes no submit outcome."""
    record = claimed(status=status)
    assert (
        submits.record_submit(
            record,
            remote_task_id="t",
            remote_status=None,
            now=NOW,
            first_poll_s=1,
            deadline_s=9,
            outage_window_s=9,
        )
        is None
    )
    assert submits.retry_submit(record, error={}, now=NOW, delay_s=1, sent_until=0) is None
    assert transitions.fail_submit(record, error={}, now=NOW) is None


def test_retry_submit_gives_up_the_lease_and_sends_again_later() -> None:
    """A retryable failure records the error, ends the lease, and queues the submit again."""
    error = {"type": "ApiUnavailable", "message": "503", "retryable": True}
    retry = submits.retry_submit(
        claimed(lane="bulk"), error=error, now=NOW, delay_s=4, sent_until=NOW + 30
    )
    assert retry == Transition(
        "j1",
        expect={"status": JobStatus.QUEUED, "submit_attempts": 2},
        changes={"submit_lease_until": 0.0, "error": error, "submit_sent_until": NOW + 30},
        due_at=NOW + 4,
        then=(Submit("j1", "bulk", 4),),
    )


def test_fail_submit_ends_the_job() -> None:
    """A final failure ends the claimed job as failed, with the error, and frees its slot."""
    error = {"type": "ApiRejected", "message": "bad", "retryable": False}
    failed = transitions.fail_submit(claimed(webhook_url=HOOK), error=error, now=NOW)
    assert failed is not None
    assert failed.expect == {"status": JobStatus.QUEUED, "submit_attempts": 2}
    assert failed.changes["status"] is JobStatus.FAILED
    assert (failed.changes["error"], failed.changes["outputs"]) == (error, [])
    assert (failed.free_slot, failed.due_at) == (True, NOW)
    assert failed.follow_ups() == [ScheduleWebhook("j1", attempt=1)]


@pytest.mark.parametrize("word", ["running", None])
def test_poll_on_hands_on_the_token(word: str | None) -> None:
    """A poll that goes on moves the token and the count, and files the next poll."""
    moving = transitions.poll_on(
        "j1", token=4, facts=FACTS, now=NOW, delay_s=4.5, remote_status=word
    )
    assert moving == Transition(
        "j1",
        expect={"status": JobStatus.SUBMITTED, "poll_token": 4},
        changes={
            "poll_token": 5,
            "poll_count": 4,
            "next_poll_at": NOW + 4.5,
            "remote_status": word,
        },
        due_at=NOW + 4.5,
        then=(SchedulePoll("j1", 5, 4.5, PollFacts("task-1", NOW + 180, 4)),),
    )


@pytest.mark.parametrize(
    ("storage_on", "outcome", "downloads", "then"),
    [
        (True, Finish(JobStatus.SUCCEEDED, URLS), Downloads.PENDING, [ScheduleDownload("j1", 1)]),
        (False, Finish(JobStatus.SUCCEEDED, URLS), Downloads.NONE, [ScheduleCallback("j1")]),
        (True, Finish(JobStatus.FAILED, error={"m": 1}), Downloads.NONE, [ScheduleCallback("j1")]),
    ],
    ids=["saving", "storage-off", "failed"],
)
def test_finish_poll_saves_outputs_first_only_when_there_are_some(
    storage_on: bool, outcome: Finish, downloads: Downloads, then: list[object]
) -> None:
    """The ending poll saves outputs first if storage is on and it succeeded with some."""
    ending = transitions.finish_poll(
        submitted(callback=CALLBACK),
        token=4,
        outcome=outcome,
        now=NOW,
        poll_count=7,
        storage_on=storage_on,
    )
    assert ending is not None
    assert ending.expect == {"status": JobStatus.SUBMITTED, "poll_token": 4}
    assert ending.changes["downloads_state"] is downloads
    assert (ending.changes["status"], ending.changes["poll_count"]) == (outcome.status, 7)
    assert ending.follow_ups() == then


def test_finish_poll_records_outputs_at_the_jobs_size() -> None:
    """Each output URL is recorded with the pixel size the parameters produce."""
    ending = transitions.finish_poll(
        submitted(),
        token=4,
        outcome=Finish(JobStatus.SUCCEEDED, URLS),
        now=NOW,
        poll_count=1,
        storage_on=False,
    )
    assert ending is not None
    assert ending.changes["outputs"] == [{"url": url, "width": 1536, "height": 864} for url in URLS]
    assert (ending.changes["finished_at"], ending.changes["next_poll_at"]) == (NOW, None)


@pytest.mark.parametrize(
    "record",
    [submitted(poll_token=5), job(), submitted(status=JobStatus.CANCELLED)],
    ids=["stale-token", "queued", "cancelled"],
)
def test_finish_poll_refused(record: Job) -> None:
    """Only the poll holding a submitted job's current token may end it."""
    outcome = Finish(JobStatus.SUCCEEDED, URLS)
    assert (
        transitions.finish_poll(
            record, token=4, outcome=outcome, now=NOW, poll_count=1, storage_on=True
        )
        is None
    )


def test_time_out_ends_a_job_long_past_its_deadline() -> None:
    """Past its deadline by more than the grace: timed out, expecting the token as read."""
    ending = transitions.time_out(submitted(), now=NOW + 196, grace_s=15)
    assert ending is not None
    assert ending.expect == {"status": JobStatus.SUBMITTED, "poll_token": 4}
    assert ending.changes["status"] is JobStatus.TIMED_OUT
    assert ending.changes["error"] == transitions.LATE
    assert (ending.settled, ending.due_at, ending.follow_ups()) == (True, None, [])


@pytest.mark.parametrize(
    ("record", "now"),
    [
        (submitted(), NOW + 195),
        (submitted(deadline_at=None), NOW + 999),
        (job(deadline_at=NOW), NOW + 999),
        (submitted(status=JobStatus.SUCCEEDED), NOW + 999),
    ],
    ids=["within-grace", "no-deadline", "queued", "finished"],
)
def test_time_out_refused(record: Job, now: float) -> None:
    """Only a submitted job past its deadline and the grace is timed out by the sweeper."""
    assert transitions.time_out(record, now=now, grace_s=15) is None


@pytest.mark.parametrize("status", NOT_TERMINAL)
def test_cancel_ends_an_unfinished_job(status: JobStatus) -> None:
    """Cancel expects the status and token as read, so a poll or submit racing it loses."""
    ending = transitions.cancel(
        job(status=status, poll_token=3, callback=CALLBACK, webhook_url=HOOK), now=NOW
    )
    assert ending is not None
    assert ending.expect == {"status": status, "poll_token": 3}
    assert ending.changes["status"] is JobStatus.CANCELLED
    assert ending.changes["error"] == transitions.CANCELLED
    assert ending.changes["webhook_next_at"] == NOW
    assert ending.follow_ups() == [ScheduleCallback("j1"), ScheduleWebhook("j1", 1)]


@pytest.mark.parametrize("status", sorted(TERMINAL_JOB_STATUSES))
def test_cancel_refused_once_finished(status: JobStatus) -> None:
    """A finished job cannot be cancelled."""
    assert transitions.cancel(job(status=status), now=NOW) is None


@pytest.mark.parametrize(
    ("callback", "webhook", "states", "then"),
    [
        (None, None, (Delivery.NONE, Delivery.NONE, None), []),
        (CALLBACK, None, (Delivery.PENDING, Delivery.NONE, None), [ScheduleCallback("j1")]),
        (None, HOOK, (Delivery.NONE, Delivery.PENDING, NOW), [ScheduleWebhook("j1", 1)]),
    ],
    ids=["nothing", "callback", "webhook"],
)
def test_an_ending_sets_up_the_notifications(
    callback: dict[str, Any] | None,
    webhook: str | None,
    states: tuple[Delivery, Delivery, float | None],
    then: list[object],
) -> None:
    """The end makes each notification pending, and stays due only while one is to go out."""
    ending = transitions.cancel(job(callback=callback, webhook_url=webhook), now=NOW)
    assert ending is not None
    changes = ending.changes
    assert (changes["callback_state"], changes["webhook_state"], changes["webhook_next_at"]) == (
        states
    )
    assert (ending.due_at, ending.settled) == ((NOW, False) if then else (None, True))
    assert ending.follow_ups() == then


@pytest.mark.parametrize(
    ("batch_id", "complete", "last"),
    [("b1", True, [BatchFinished("b1")]), ("b1", False, []), (None, True, [])],
    ids=["last-of-batch", "not-last", "no-batch"],
)
def test_the_write_ending_a_batch_tells_it(
    batch_id: str | None, complete: bool, last: list[object]
) -> None:
    """Only an ending that the store says completed the batch adds the batch's notice, last."""
    ending = transitions.cancel(job(batch_id=batch_id, callback=CALLBACK), now=NOW)
    assert ending is not None
    assert ending.follow_ups(batch_complete=complete) == [ScheduleCallback("j1"), *last]


def test_release_sends_a_held_job_once() -> None:
    """A held job is released (once: the write expects it held) and its submit is sent."""
    released = transitions.release(job(held=True, lane="bulk"), now=NOW)
    assert released == Transition(
        "j1",
        expect={"held": True},
        changes={"held": False},
        due_at=NOW,
        then=(Submit("j1", "bulk"),),
    )


@pytest.mark.parametrize(
    "record", [job(), job(held=True, status=JobStatus.CANCELLED)], ids=["not-held", "cancelled"]
)
def test_release_refused(record: Job) -> None:
    """A job not held, or held but finished (cancelled), is not released."""
    assert transitions.release(record, now=NOW) is None


def test_settle_takes_a_job_with_nothing_left_out_of_the_index() -> None:
    """A finished job with nothing left is settled by an unconditional write."""
    done = job(status=JobStatus.SUCCEEDED, webhook_state=Delivery.SENT)
    assert transitions.settle(done) == Transition("j1", expect={}, changes={}, settled=True)


@pytest.mark.parametrize(
    "record",
    [
        job(status=JobStatus.SUBMITTED),
        job(status=JobStatus.SUCCEEDED, downloads_state=Downloads.PENDING),
        job(status=JobStatus.SUCCEEDED, callback_state=Delivery.SENDING),
        job(status=JobStatus.FAILED, webhook_state=Delivery.PENDING),
    ],
    ids=["unfinished", "saving", "callback-sending", "webhook-pending"],
)
def test_settle_refused_while_work_is_left(record: Job) -> None:
    """A job with a poll, a download or a notification still to go stays indexed."""
    assert transitions.settle(record) is None


def test_applied_to_is_the_record_the_write_leaves() -> None:
    """Applying a transition to the record read gives the record as written."""
    record = job(submit_attempts=1, submit_first_at=NOW - 1)
    claim = submits.claim_submit(record, now=NOW, lease_s=30, send_s=None, slot=None)
    assert claim is not None
    assert claim.applied_to(record) == job(
        submit_attempts=2, submit_lease_until=NOW + 30, submit_first_at=NOW - 1
    )


def test_a_job_from_queue_to_settled() -> None:
    """Chained on the records they leave, the transitions take a job through its whole life."""
    record = job(callback=CALLBACK)
    claim = submits.claim_submit(record, now=NOW, lease_s=30, send_s=36, slot=None)
    assert claim is not None
    record = claim.applied_to(record)
    step = submits.record_submit(
        record,
        remote_task_id="t",
        remote_status="queued",
        now=NOW,
        first_poll_s=1,
        deadline_s=9,
        outage_window_s=9,
    )
    assert step is not None
    record = step.applied_to(record)
    facts = PollFacts("t", NOW + 9, 0)
    step = transitions.poll_on(
        "j1", token=1, facts=facts, now=NOW + 1, delay_s=1, remote_status=None
    )
    record = step.applied_to(record)
    outcome = Finish(JobStatus.SUCCEEDED, URLS)
    ending = transitions.finish_poll(
        record, token=2, outcome=outcome, now=NOW + 2, poll_count=2, storage_on=False
    )
    assert ending is not None
    record = ending.applied_to(record)
    assert (record.status, record.poll_count, record.callback_state) == (
        JobStatus.SUCCEEDED,
        2,
        Delivery.PENDING,
    )
    assert transitions.settle(record) is None  # the callback is still to go
    assert transitions.settle(replace(record, callback_state=Delivery.SENT)) is not None


SAMPLES = [
    submits.claim_submit(job(), now=NOW, lease_s=1, send_s=2, slot=None),
    submits.send_submit(claimed(), now=NOW, send_s=2),
    submits.record_submit(
        claimed(),
        remote_task_id="t",
        remote_status=None,
        now=NOW,
        first_poll_s=1,
        deadline_s=2,
        outage_window_s=3,
    ),
    submits.retry_submit(claimed(), error={}, now=NOW, delay_s=1, sent_until=0),
    transitions.fail_submit(claimed(), error={}, now=NOW),
    transitions.poll_on("j1", token=1, facts=FACTS, now=NOW, delay_s=1, remote_status=None),
    transitions.time_out(submitted(), now=NOW + 999, grace_s=1),
    transitions.cancel(job(), now=NOW),
    transitions.release(job(held=True), now=NOW),
]


@pytest.mark.parametrize("transition", SAMPLES)
def test_every_field_named_is_a_job_field(transition: Transition | None) -> None:
    """Expected and changed fields are the record's own (mypy checks the literals too)."""
    assert transition is not None
    names = {spec.name for spec in fields(Job)}
    assert set(transition.expect) | set(transition.changes) <= names
