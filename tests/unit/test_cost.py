"""The pure parts of cost: reading `credits_used`, estimating a file, the job and batch records,
the payload's optional field, the manifest's reason and the simulator's made-up prices."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jsonschema
import pytest

from imageq.producers.manifest import manifest_entry_for_job
from imageq.simulator.credits import MADE_UP_CREDITS, task_credits
from imageq.worker.domain import transitions
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.cost import (
    BUDGET_REASON,
    batch_credits,
    credits_text,
    estimate_file,
    parse_credits,
)
from imageq.worker.domain.job import Job
from imageq.worker.domain.payload import batch_payload, completion_payload, load_schema
from imageq.worker.domain.status import JobStatus
from imageq.worker.policy.polling import Finish
from imageq.worker.upstream.responses import parse_task
from tests.unit.records import NOW, job


def as_raw(fields: dict[str, str]) -> dict[bytes | str, bytes | str]:
    """A record's fields as the store reads them back."""
    return {name: value for name, value in fields.items()}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (100, 100.0),
        (12.5, 12.5),
        ("40", 40.0),
        (" 7.25 ", 7.25),
        (0, 0.0),
        (None, None),
        ("", None),
        ("lots", None),
        (True, None),
        (-3, None),
        (float("nan"), None),
        ("inf", None),
        ([100], None),
        ({"credits": 1}, None),
    ],
)
def test_parse_credits_takes_numbers_and_ignores_junk(value: Any, expected: float | None) -> None:
    """An int, a float or a numeric string is read; anything else is no amount, not an error."""
    assert parse_credits(value) == expected


@pytest.mark.parametrize(("raw", "expected"), [(100, 100.0), ("12", 12.0), ("?", None)])
def test_parse_task_reads_credits_used(raw: Any, expected: float | None) -> None:
    """The query answer's `credits_used` lands on the remote task; junk leaves it None."""
    body = {
        "statusCode": 200,
        "data": {"task_id": "t1", "status": "completed", "credits_used": raw},
    }
    assert parse_task(body).credits_used == expected


def test_parse_task_without_credits_has_none() -> None:
    """The submit answer (and an undocumented poll answer) carries no credits."""
    body = {"code": 200, "data": [{"status": "submitted", "task_id": "t1"}]}
    assert parse_task(body).credits_used is None


def test_estimate_sums_per_row_medians() -> None:
    """Each row costs its group's median; the time is spread over the concurrency, but never
    below the slowest group's one job."""
    low, high = ("low", "1K"), ("high", "2K")
    found = estimate_file(
        [low, low, high, low],
        credit_samples={low: [10, 30, 20], high: [200, 210]},
        time_samples={low: [1.0, 3.0, 2.0], high: [9.0, 11.0]},
        min_samples=3,
        concurrency=2,
    )
    assert found.credits == 3 * 20 + 205
    assert found.job_seconds == 3 * 2.0 + 10.0
    assert found.wall_s == 10.0
    assert [(g.quality, g.rows, g.samples, g.enough) for g in found.groups] == [
        ("high", 1, 2, False),
        ("low", 3, 3, True),
    ]
    assert not found.enough


def test_estimate_without_samples_is_unknown() -> None:
    """A group with no sample at all makes the totals unknown, not zero."""
    found = estimate_file(
        [("low", "1K")], credit_samples={}, time_samples={}, min_samples=1, concurrency=4
    )
    assert (found.credits, found.job_seconds, found.wall_s, found.enough) == (
        None,
        None,
        None,
        False,
    )


def test_batch_reads_its_credits_and_budget() -> None:
    """The store's fields come back typed; a batch without them has spent nothing, no budget."""
    stored = as_raw(Batch("b1", total=2, max_credits=35).to_hash())
    fresh = Batch.from_hash("b1", stored)
    assert (fresh.credits_used, fresh.max_credits, fresh.budget_reached) == (0.0, 35.0, False)
    raw: dict[bytes | str, bytes | str] = {**stored, "credits_used": "30"}
    raw["credits_in_flight"] = "-1e-12"
    raw["budget_reached"] = "30"
    batch = Batch.from_hash("b1", raw)
    assert (batch.credits_used, batch.credits_in_flight, batch.budget_reached) == (30, 0, True)
    assert batch_credits(batch) == {
        "credits_used": 30.0,
        "max_credits": 35.0,
        "budget_reached": True,
    }
    assert "max_credits" not in Batch("b2", total=1).to_hash()


@pytest.mark.parametrize(
    ("used", "budget", "reached", "text"),
    [
        (None, None, False, "-"),
        (30.0, None, False, "30"),
        (30.0, 35.0, True, "30 of 35, budget reached"),
        (12.5, 100.0, False, "12.5 of 100"),
    ],
)
def test_credits_text(used: float | None, budget: float | None, reached: bool, text: str) -> None:
    """Credits as a person reads them."""
    assert credits_text(used, budget=budget, reached=reached) == text


def test_payload_has_credits_only_when_reported_and_validates() -> None:
    """`credits_used` is an optional field of version 1: present when known, absent when not."""
    ended = job(status=JobStatus.FAILED, finished_at=NOW, error={"type": "JobError"})
    without = completion_payload(ended)
    priced = completion_payload(replace(ended, credits_used=20.0))
    assert "credits_used" not in without
    assert priced["credits_used"] == 20.0
    for payload in (without, priced):
        jsonschema.validate(payload, load_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**priced, "credits_used": "20"}, load_schema())


def test_batch_payload_has_its_total() -> None:
    """The batch's webhook carries the batch's total."""
    batch = Batch("b1", total=1, created_at=NOW, credits_used=42.0)
    assert batch_payload(batch, {})["credits_used"] == 42.0


def test_finish_poll_records_credits_and_cancel_for_budget_says_why() -> None:
    """The terminal write carries the job's credits; a budget cancel ends the claimed job
    cancelled, reason budget, notified like any cancelled job."""
    running = job(status=JobStatus.SUBMITTED, poll_token=2, deadline_at=NOW + 180)
    ending = transitions.finish_poll(
        running,
        token=2,
        outcome=Finish(JobStatus.SUCCEEDED, output_urls=("https://cdn.example/0.png",)),
        now=NOW,
        poll_count=3,
        storage_on=False,
        credits_used=10.0,
    )
    assert ending is not None
    assert ending.changes["credits_used"] == 10.0
    claimed = job(submit_attempts=1, webhook_url="https://hooks.example/x")
    cancel = transitions.cancel_for_budget(claimed, now=NOW)
    assert cancel is not None
    assert cancel.changes["status"] is JobStatus.CANCELLED
    assert cancel.expect == {"status": JobStatus.QUEUED, "submit_attempts": 1}
    assert cancel.free_slot
    assert [type(action).__name__ for action in cancel.then] == ["ScheduleWebhook"]
    cancelled = cancel.applied_to(claimed)
    entry = manifest_entry_for_job(4, cancelled)
    assert (entry["status"], entry["reason"], entry["credits_used"]) == (
        "cancelled",
        BUDGET_REASON,
        None,
    )
    assert transitions.cancel_for_budget(cancelled, now=NOW) is None


def test_job_record_round_trips_credits() -> None:
    """The job hash keeps credits as JSON, and an old record without them reads None."""
    priced = Job(job_id="j1", params={"prompt": "x"}, credits_used=12.5)
    record = as_raw(priced.to_hash())
    assert Job.from_hash(record).credits_used == 12.5
    old: dict[bytes | str, bytes | str] = {
        name: value for name, value in record.items() if name != "credits_used"
    }
    assert Job.from_hash(old).credits_used is None


@pytest.mark.parametrize(
    ("quality", "resolution", "completed", "expected"),
    [("low", "1K", True, 10), ("high", "4K", True, 400), ("high", "4K", False, 0)],
)
def test_simulator_prices_by_quality_and_resolution(
    quality: str, resolution: str, completed: bool, expected: int
) -> None:
    """The simulator's made-up table: a completed task costs its price, any other nothing."""
    found = task_credits(
        MADE_UP_CREDITS, quality=quality, resolution=resolution, completed=completed
    )
    assert found == expected
