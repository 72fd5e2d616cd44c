"""Finding work again, the pure parts: cursors and merged pages over index entries, times given
as ISO 8601 or an age, and the listing rows of jobs and batches."""

from __future__ import annotations

import pytest

from imageq.cli.finding import batch_row, job_row, parse_when
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import InvalidParams
from imageq.worker.store.paging import (
    Cursor,
    Entry,
    after_cursor,
    cursor_after,
    merge_newest_first,
)

NOW = 1_790_000_000.0


@pytest.mark.parametrize("cursor", [Cursor(NOW, 0), Cursor(1_796_596_324.5974832, 17)])
def test_a_cursor_reads_back_as_printed(cursor: Cursor) -> None:
    """encode then decode gives the same cursor, to the last digit of its score."""
    assert Cursor.decode(cursor.encode()) == cursor


@pytest.mark.parametrize("text", ["", "abc", "1.5", "1.5~x", "1.5~-1", "nan~0", "~3"])
def test_a_cursor_not_printed_by_a_listing_is_refused(text: str) -> None:
    """Anything but score~skip (skip >= 0, a real score) is an InvalidParams naming the cursor."""
    with pytest.raises(InvalidParams, match="cursor"):
        Cursor.decode(text)


def test_merge_is_newest_first_with_ties_by_id_descending() -> None:
    """Entries of several indexes merge newest first; equal times by id, descending (as
    ZREVRANGEBYSCORE gives them); an id in two sources appears once."""
    queued: list[Entry] = [("b-3", 5.0), ("b-1", 5.0), ("a", 1.0)]
    failed: list[Entry] = [("c", 9.0), ("b-2", 5.0), ("a", 1.0)]
    assert merge_newest_first([queued, failed]) == [
        ("c", 9.0),
        ("b-3", 5.0),
        ("b-2", 5.0),
        ("b-1", 5.0),
        ("a", 1.0),
    ]


def test_pages_over_tied_entries_list_each_once() -> None:
    """Walking a merged listing two at a time with cursors, as the store does, lists every
    entry exactly once, though most share one creation time."""
    entries: list[Entry] = sorted(
        [(f"j{n}", 5.0) for n in range(7)] + [("new", 8.0), ("old", 1.0)],
        key=lambda entry: (-entry[1], [-ord(c) for c in entry[0]]),
    )
    seen: list[str] = []
    cursor: Cursor | None = None
    for _ in range(20):
        # What the index read returns: entries at the cursor's score or older, then skipped.
        source = [e for e in entries if cursor is None or e[1] <= cursor.score]
        page = after_cursor(source, cursor)[:2]
        if not page:
            break
        seen += [entry[0] for entry in page]
        cursor = cursor_after(page, cursor)
    assert sorted(seen) == sorted(entry[0] for entry in entries)
    assert len(seen) == len(set(seen))
    assert seen[0] == "new"
    assert seen[-1] == "old"


def test_cursor_after_counts_the_ties_taken_so_far() -> None:
    """The next cursor skips the entries at the last score taken, adding those skipped before."""
    page: list[Entry] = [("x", 7.0), ("b", 5.0), ("a", 5.0)]
    assert cursor_after(page, None) == Cursor(5.0, 2)
    assert cursor_after([("c", 5.0)], Cursor(5.0, 2)) == Cursor(5.0, 3)
    assert cursor_after([], Cursor(5.0, 2)) == Cursor(5.0, 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90),
        ("15m", NOW - 900),
        ("1h", NOW - 3600),
        ("2d", NOW - 2 * 86400),
        ("1w", NOW - 7 * 86400),
        ("1.5h", NOW - 5400),
        ("2026-09-21T14:13:20Z", NOW),
        ("2026-09-21T14:13:20", NOW),  # no offset: UTC
        ("2026-09-21T16:13:20+02:00", NOW),
        ("2026-09-21T14:13:20.250Z", NOW + 0.25),
    ],
)
def test_times_are_iso_8601_or_an_age(text: str, expected: float) -> None:
    """--since/--until take ISO 8601 (UTC without an offset) or an age before now."""
    assert parse_when(text, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", "h", "2026-13-01"])
def test_other_times_are_refused_naming_what_is_accepted(text: str) -> None:
    """An unreadable time is an InvalidParams that names both accepted forms."""
    with pytest.raises(InvalidParams, match=r"ISO 8601.*90s"):
        parse_when(text, now=NOW)


def test_job_row_has_prompt_times_in_iso_and_the_error() -> None:
    """A listed job: its prompt, metadata, ISO 8601 UTC times, and its error's type and text."""
    job = Job(
        "j1",
        {"prompt": "fox", "aspect_ratio": "1:1", "resolution": "1K", "quality": "low"},
        status=JobStatus.FAILED,
        created_at=NOW,
        finished_at=NOW + 2.5,
        batch_id="b1",
        metadata={"n": 1},
        error={"type": "JobError", "message": "simulated", "http_status": None},
    )
    assert job_row(job) == {
        "job_id": "j1",
        "status": "failed",
        "held": False,
        "batch_id": "b1",
        "prompt": "fox",
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "quality": "low",
        "metadata": {"n": 1},
        "created_at": "2026-09-21T14:13:20.000Z",
        "finished_at": "2026-09-21T14:13:22.500Z",
        "error": {"type": "JobError", "message": "simulated"},
    }


def test_batch_row_has_counts_and_progress() -> None:
    """A listed batch: every status counted (0 if none), finished / total as progress."""
    batch = Batch("b1", total=4, created_at=NOW, counts={"succeeded": 3, "submitted": 1})
    row = batch_row(batch)
    assert row["progress"] == 0.75
    assert row["counts"] == {
        "queued": 0,
        "submitted": 1,
        "succeeded": 3,
        "failed": 0,
        "timed_out": 0,
        "cancelled": 0,
    }
    assert (row["complete"], row["created_at"]) == (False, "2026-09-21T14:13:20.000Z")
    assert batch_row(Batch("empty", total=0))["progress"] == 1.0
