"""Reading stored records, pure: a job or batch record that cannot be decoded is a
`CorruptRecord` naming the record and the field (never its value), not a stray KeyError,
ValueError or JSONDecodeError; a sound one reads back with its states as enums."""

from __future__ import annotations

from dataclasses import fields
from typing import get_type_hints

import pytest

from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import Delivery, Downloads, Job, JobFields, is_default
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import CorruptRecord, ImageqError
from tests.unit.records import CALLBACK, HOOK, job

SECRET_LOOKING = "sk-live-should-never-be-echoed"

Raw = dict[bytes | str, bytes | str]


def stored(record: Job) -> Raw:
    """The hash as Redis hands it back: bytes, defaults left out."""
    encoded = record.to_hash().items()
    return {key.encode(): value.encode() for key, value in encoded if not is_default(key, value)}


def test_job_fields_match_the_job() -> None:
    """JobFields names every field of Job, with the same type."""
    assert get_type_hints(JobFields) == get_type_hints(Job)
    assert list(JobFields.__annotations__) == [spec.name for spec in fields(Job)]


def test_a_sound_record_reads_back_with_enum_states() -> None:
    """Read back, the record equals the job, its states enum members (not plain strings)."""
    record = job(
        status=JobStatus.SUCCEEDED,
        downloads_state=Downloads.DONE,
        callback=CALLBACK,
        callback_state=Delivery.SENT,
        webhook_url=HOOK,
        webhook_state=Delivery.DEAD,
    )
    back = Job.from_hash(stored(record))
    assert back == record
    assert type(back.status) is JobStatus
    assert type(back.downloads_state) is Downloads
    assert (type(back.callback_state), type(back.webhook_state)) == (Delivery, Delivery)


def test_unknown_fields_are_ignored() -> None:
    """A field this version does not know (written by a newer one) is left aside."""
    raw: Raw = {**stored(job()), b"future_field": b'{"x": 1}', b"\xff": b"1"}
    assert Job.from_hash(raw) == job()


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("status", b'"bogus"', "not a JobStatus"),
        ("status", b"3", "expected str, got int"),
        ("webhook_state", b'"lost"', "not a Delivery"),
        ("downloads_state", b"null", "expected str, got NoneType"),
        ("poll_count", b'"3"', "expected int, got str"),
        ("poll_token", b"true", "expected int, got bool"),
        ("poll_token", b"1.5", "expected int, got float"),
        ("deadline_at", b'"soon"', "expected float or int or NoneType, got str"),
        ("held", b"1", "expected bool, got int"),
        ("params", b"[]", "expected dict, got list"),
        ("outputs", b"{not json", "not JSON"),
        ("metadata", b"", "not JSON"),
        ("error", b"\xff\xfe", "not JSON"),
        ("webhook_attempts", f'"{SECRET_LOOKING}"'.encode(), "expected list, got str"),
    ],
)
def test_a_corrupt_field_is_named(field: str, value: bytes, reason: str) -> None:
    """A field that is not JSON, or of the wrong kind, is named with the job's id."""
    raw: Raw = {**stored(job()), field.encode(): value}
    with pytest.raises(CorruptRecord) as caught:
        Job.from_hash(raw, job_id="j1")
    assert (caught.value.record_id, caught.value.field, caught.value.reason) == (
        "j1",
        field,
        reason,
    )
    assert str(caught.value) == f"job record 'j1' is corrupt: {field}: {reason}"
    assert SECRET_LOOKING not in str(caught.value)


@pytest.mark.parametrize("field", ["job_id", "params", "status"])
def test_a_missing_required_field_is_named(field: str) -> None:
    """A record without its id, parameters or status is corrupt (status is always stored)."""
    raw: Raw = {key: value for key, value in stored(job()).items() if key != field.encode()}
    with pytest.raises(CorruptRecord) as caught:
        Job.from_hash(raw, job_id="j1")
    assert (caught.value.field, caught.value.reason) == (field, "missing")


@pytest.mark.parametrize(
    ("given", "own", "named"),
    [("key-id", b'"j1"', "key-id"), (None, b'"j1"', "j1"), (None, b"{", "?"), (None, None, "?")],
    ids=["given", "own-field", "own-unreadable", "own-missing"],
)
def test_the_record_is_named_by_its_key_or_its_own_id(
    given: str | None, own: bytes | None, named: str
) -> None:
    """The error names the id the record is stored under, else the record's own if readable."""
    raw: Raw = {b"params": b"{}", b"status": b'"nope"'}
    if own is not None:
        raw[b"job_id"] = own
    with pytest.raises(CorruptRecord) as caught:
        Job.from_hash(raw, job_id=given)
    assert caught.value.record_id == named


def test_corrupt_record_is_an_imageq_error_and_a_value_error() -> None:
    """Under the project's base, and a ValueError, for callers that caught that before."""
    assert issubclass(CorruptRecord, ImageqError)
    assert issubclass(CorruptRecord, ValueError)


def test_a_sound_batch_reads_back() -> None:
    """A batch's fields and its counters read back as written."""
    batch = Batch("b1", total=3, created_at=5.0, webhook_url=HOOK, callback=CALLBACK, name="n")
    raw: Raw = {"queued": "1", "succeeded": "2", "completed_at": "9.5"}
    raw.update(batch.to_hash())
    assert Batch.from_hash("b1", raw) == Batch(
        "b1",
        total=3,
        created_at=5.0,
        completed_at=9.5,
        counts={"queued": 1, "succeeded": 2},
        webhook_url=HOOK,
        callback=CALLBACK,
        name="n",
    )


@pytest.mark.parametrize(
    ("field", "value", "named", "reason"),
    [
        ("total", "three", "total", "not an integer"),
        ("created_at", "yesterday", "created_at", "not a number"),
        ("completed_at", "later", "completed_at", "not a number"),
        ("succeeded", "2.5", "succeeded", "not an integer"),
        ("meta", "{", "meta", "not a JSON object"),
        ("meta", "[1]", "meta", "not a JSON object"),
        ("meta", '{"webhook_url": 5}', "meta.webhook_url", "expected str"),
        ("meta", '{"callback": "x"}', "meta.callback", "expected dict"),
        ("total", b"\xff", "total", "not an integer"),
    ],
)
def test_a_corrupt_batch_field_is_named(
    field: str, value: str | bytes, named: str, reason: str
) -> None:
    """A batch field that cannot be read is named with the batch's id."""
    raw: Raw = {"total": "2", field: value}
    with pytest.raises(CorruptRecord) as caught:
        Batch.from_hash("b1", raw)
    assert (caught.value.kind, caught.value.record_id) == ("batch", "b1")
    assert (caught.value.field, caught.value.reason) == (named, reason)
