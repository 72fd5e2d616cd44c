"""Job ids as idempotency keys: the same request again gets the known job and says so; a
different one is a `JobConflict` naming the fields, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from imageq.config import Settings
from imageq.producers.api import ImageQueue
from imageq.producers.idempotency import REQUEST_FIELDS
from imageq.producers.jobs import JOB_OPTIONS, build_job
from imageq.worker.domain.job import Job
from imageq.worker.errors import ImageqError, InvalidParams, JobConflict
from tests.conftest import WEBHOOK_SECRET
from tests.unit.memory_queue import MemoryStore, SentTasks, memory_queue

SETTINGS = Settings(_env_file=None, webhook={"secrets": WEBHOOK_SECRET})
HOOK = "https://93.184.216.34/hooks/a?token=s3cr3t"  # an address literal: no DNS lookup
CALLBACK = {"task": "app.done", "args": [], "kwargs": {}, "options": {}}
ASKED: dict[str, Any] = {
    "aspect_ratio": "16:9",
    "resolution": "2K",
    "quality": "low",
    "reference_images": ["https://93.184.216.34/a.png"],
    "extra_params": {"seed": 7, "style": {"a": 1, "b": [1, 2]}},
    "webhook_url": HOOK,
    "callback": CALLBACK,
    "metadata": {"order": 42, "tags": ["x"]},
    "job_id": "order-42",
}
# One different value for each request field that `enqueue` takes.
CHANGED: dict[str, Any] = {
    "prompt": "a different castle",
    "aspect_ratio": "9:16",
    "resolution": "1K",
    "quality": "high",
    "reference_images": [],
    "extra_params": {"seed": 8, "style": {"a": 1, "b": [1, 2]}},
    "webhook_url": "https://93.184.216.34/hooks/b",
    "callback": {**CALLBACK, "task": "app.other"},
    "metadata": {"order": 43, "tags": ["x"]},
}


@pytest.fixture
def known() -> tuple[ImageQueue, MemoryStore, SentTasks]:
    """A queue that already holds job `order-42`, made from `ASKED`."""
    queue, store, app = memory_queue(SETTINGS)
    assert not queue.enqueue_job("a castle", **ASKED).already_known
    return queue, store, app


def test_the_same_request_again_is_already_known(
    known: tuple[ImageQueue, MemoryStore, SentTasks],
) -> None:
    """Same id, same request: the same id back, marked already known; nothing written or sent."""
    queue, store, app = known
    record = dict(store.records["order-42"])
    again = queue.enqueue_job("a castle", **ASKED)
    assert (again.job_id, again.already_known) == ("order-42", True)
    assert queue.enqueue("a castle", **ASKED) == "order-42"
    assert store.records["order-42"] == record
    assert store.writes == 1
    assert app.names == ["imageq.submit"]


@pytest.mark.parametrize(
    "spelled",
    [
        {"resolution": "2k", "quality": " LOW"},
        {"reference_images": ("https://93.184.216.34/a.png",)},
        {"extra_params": {"style": {"b": [1, 2], "a": 1}, "seed": 7}},
        {"metadata": {"tags": ("x",), "order": 42}},
    ],
)
def test_the_same_request_spelled_otherwise_is_the_same(
    known: tuple[ImageQueue, MemoryStore, SentTasks], spelled: dict[str, Any]
) -> None:
    """Values compare as validated and stored: case, tuples and key order are not differences."""
    queue, _, _ = known
    assert queue.enqueue_job("a castle", **{**ASKED, **spelled}).already_known


def test_the_lane_is_not_part_of_the_request(
    known: tuple[ImageQueue, MemoryStore, SentTasks],
) -> None:
    """How soon a job runs does not change what it makes or where it reports."""
    queue, _, _ = known
    assert queue.enqueue_job("a castle", lane="bulk", **ASKED).already_known


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_a_different_request_under_a_known_id_is_a_conflict(
    known: tuple[ImageQueue, MemoryStore, SentTasks], field: str
) -> None:
    """Each request field counts: a JobConflict naming it, and the record and queue unchanged."""
    queue, store, app = known
    record = dict(store.records["order-42"])
    asked = {"prompt": "a castle", **ASKED, field: CHANGED[field]}
    prompt = asked.pop("prompt")
    with pytest.raises(JobConflict) as caught:
        queue.enqueue(prompt, **asked)
    assert caught.value.fields == (field,)
    assert caught.value.job_id == "order-42"
    assert f"'order-42' is already a job with a different {field};" in str(caught.value)
    assert store.records["order-42"] == record
    assert app.names == ["imageq.submit"]


def test_a_conflict_names_every_differing_field_and_no_value(
    known: tuple[ImageQueue, MemoryStore, SentTasks],
) -> None:
    """Several fields differ: all are named, in option order; no value (a token) is quoted."""
    queue, _, _ = known
    asked = {**ASKED, "resolution": "1K", "webhook_url": f"{HOOK}-other"}
    with pytest.raises(JobConflict) as caught:
        queue.enqueue("another castle", **asked)
    assert caught.value.fields == ("prompt", "resolution", "webhook_url")
    assert "s3cr3t" not in str(caught.value)
    assert "castle" not in str(caught.value)


def test_a_conflict_is_an_invalid_params_under_the_base() -> None:
    """Callers that catch InvalidParams (refused before anything was queued) catch it too."""
    error = JobConflict("j1", ("prompt",))
    assert isinstance(error, InvalidParams)
    assert isinstance(error, ImageqError)
    assert error.field == "job_id"


def test_every_request_field_is_an_option_or_the_batch() -> None:
    """The fields compared are named as producers name them."""
    assert set(REQUEST_FIELDS) - {"prompt", "batch_id"} <= set(JOB_OPTIONS)
    assert set(JOB_OPTIONS) - set(REQUEST_FIELDS) == {"job_id"}


# -- batches ----------------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"prompt": f"castle {n}", "aspect_ratio": "1:1", "resolution": "1K"} for n in range(3)
]


def test_a_resumed_batch_is_already_known_and_submits_nothing_twice() -> None:
    """Same rows, same batch id: every job known, none sent again, held or not."""
    queue, store, app = memory_queue(SETTINGS)
    first = queue.enqueue_many(ROWS, batch_id="b1", hold=True)
    again = queue.enqueue_many(ROWS, batch_id="b1")
    assert (first.queued, first.already_known) == (3, 0)
    assert (again.queued, again.already_known, again.errors) == (0, 3, [])
    assert again.jobs == first.jobs
    assert app.sent == []  # held the first time; known the second
    assert store.writes == 3


def test_a_row_known_with_another_request_is_a_row_error() -> None:
    """A changed row under a known id is refused by line; the others run; nothing changes."""
    queue, store, app = memory_queue(SETTINGS)
    queue.enqueue_many(ROWS, batch_id="b1")
    records = dict(store.records)
    changed = [ROWS[0], {**ROWS[1], "prompt": "a lake", "quality": "low"}, ROWS[2]]
    report = queue.enqueue_many([*changed, {**ROWS[0], "prompt": "new"}], batch_id="b1")
    assert report.errors == [
        (2, "job_id: 'b1-000002' is already a job with a different prompt, quality;"
            " an id names one job: give a new id for a different one"),
    ]  # fmt: skip
    assert report.jobs == {1: "b1-000001", 3: "b1-000003", 4: "b1-000004"}
    assert (report.queued, report.already_known) == (1, 2)
    assert {job_id: store.records[job_id] for job_id in records} == records
    assert len(app.sent) == 4


def test_a_row_reusing_a_job_of_no_batch_conflicts_on_the_batch() -> None:
    """A batch cannot count a job that reports elsewhere: `batch_id` is part of the request."""
    queue, store, _ = memory_queue(SETTINGS)
    queue.enqueue("castle 0", aspect_ratio="1:1", resolution="1K", job_id="mine")
    report = queue.enqueue_many([{**ROWS[0], "job_id": "mine"}, ROWS[1]], batch_id="b2")
    assert [line for line, _ in report.errors] == [1]
    assert "different batch_id" in report.errors[0][1]
    assert store.batch_jobs("b2") == {2: "b2-000002"}
    assert store.get("mine").batch_id is None


class LateWriter(MemoryStore):
    """A store where another producer writes `order-42` between the check and the write."""

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        found = super().get_many(job_ids)
        if "order-42" in job_ids and "order-42" not in self.records:
            other = build_job(SETTINGS, "someone else's", aspect_ratio="1:1", resolution="1K",
                              job_id="order-42", now=1.0)  # fmt: skip
            self.create(other)
        return found


def test_a_conflict_written_since_the_check_is_still_a_row_error() -> None:
    """Two writers racing for one id: the batch's write finds the other's record and refuses."""
    queue, store, _ = memory_queue(SETTINGS, LateWriter())
    report = queue.enqueue_many([{**ROWS[0], "job_id": "order-42"}, ROWS[1]], batch_id="b3")
    assert [line for line, _ in report.errors] == [1]
    assert "different prompt" in report.errors[0][1]
    assert report.jobs == {2: "b3-000002"}
    assert store.get("order-42").params["prompt"] == "someone else's"


class Vanishing(MemoryStore):
    """A store whose record for an id expires between a refused create and the read after."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 1

    def create(
        self, job: Job, *, due_at: float | None = None, schedule_submit: bool = False
    ) -> bool:
        if self.refusals:
            self.refusals -= 1
            return False
        return super().create(job, due_at=due_at)


def test_an_id_freed_between_two_reads_is_taken() -> None:
    """The known record vanished before it could be compared: the id is free, the job new."""
    queue, store, app = memory_queue(SETTINGS, Vanishing())
    made = queue.enqueue_job("a castle", aspect_ratio="1:1", resolution="1K", job_id="j1")
    assert not made.already_known
    assert store.get("j1").params["prompt"] == "a castle"
    assert app.names == ["imageq.submit"]
