"""`JobOptions`: one definition of a job's options, checked by name for untyped callers."""

from __future__ import annotations

from typing import Any

import pytest

from imageq.config import Settings
from imageq.producers.api import ImageQueue
from imageq.producers.bulkfile import parse_bulk
from imageq.producers.jobs import JOB_OPTIONS, REQUIRED_JOB_OPTIONS, build_job, check_options
from imageq.worker.errors import InvalidParams
from tests.unit.memory_queue import MemoryStore
from tests.unit.memory_queue import memory_queue as memory_queue_with

GOOD: dict[str, Any] = {"prompt": "a castle", "aspect_ratio": "16:9", "resolution": "2K"}
SETTINGS = Settings(webhook={"secrets": []})


def memory_queue() -> tuple[ImageQueue, MemoryStore]:
    queue, store, _ = memory_queue_with(SETTINGS)
    return queue, store


def test_the_options_are_named_once() -> None:
    """The option names and the required ones come from the TypedDict itself."""
    assert REQUIRED_JOB_OPTIONS == ("aspect_ratio", "resolution")
    assert {"quality", "reference_images", "job_id", "webhook_url", "metadata"} <= {*JOB_OPTIONS}


@pytest.mark.parametrize(
    "options",
    [
        {"aspect_ratio": "1:1", "resolution": "1K"},
        {"aspect_ratio": "1:1", "resolution": "1K", "quality": "low", "job_id": None},
        {name: None for name in JOB_OPTIONS},
    ],
)
def test_known_names_pass_unchanged(options: dict[str, Any]) -> None:
    """Names are all `check_options` looks at; the values are build_job's."""
    assert check_options(options) == options


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"aspect_ratio": "1:1", "resolution": "1K", "qualty": "low"}, "qualty", "unknown option"),
        ({"aspect_ratio": "1:1", "resolution": "1K", "lane": "bulk"}, "lane", "unknown option"),
        ({"aspect_ratio": "1:1", "resolution": "1K", "a": 1, "b": 2}, "a, b", "unknown option"),
        ({"resolution": "1K"}, "aspect_ratio", "required"),
        ({}, "aspect_ratio, resolution", "required"),
    ],
)
def test_unknown_or_missing_names_are_refused_naming_the_options(
    options: dict[str, Any], field: str, words: str
) -> None:
    """An unknown or missing name is an InvalidParams that names the options."""
    with pytest.raises(InvalidParams, match=words) as caught:
        check_options(options)
    assert caught.value.field == field
    assert "prompt, aspect_ratio, resolution" in caught.value.message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"quality": "high", "reference_images": []}),
        # A literal public address: the guard resolves reference hosts, and a unit test asks
        # no DNS server.
        (
            {"quality": "LOW", "reference_images": ["https://93.184.216.34/b.png"]},
            {"quality": "low"},
        ),
    ],
)
def test_build_job_takes_the_options(options: dict[str, Any], expected: dict[str, Any]) -> None:
    """Absent options take their defaults; given ones are validated and normalised."""
    job = build_job(SETTINGS, "a castle", aspect_ratio="1:1", resolution="1k", now=1.0, **options)
    assert job.params["resolution"] == "1K"
    assert expected.items() <= job.params.items()


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ({**GOOD, "qualty": "low"}, "qualty: unknown option; the options are prompt,"),
        ({**GOOD, "lane": "interactive"}, "lane: unknown option"),
        ({"prompt": "a castle", "resolution": "2K"}, "aspect_ratio: required"),
        ({"aspect_ratio": "16:9", "resolution": "2K"}, "prompt: a non-blank text is required"),
        ({**GOOD, "quality": "ultra"}, "quality: 'ultra' is not one of low, medium, high"),
    ],
)
def test_one_bad_row_does_not_stop_the_others(bad_row: dict[str, Any], reason: str) -> None:
    """A refused row is reported by its line; the rows around it are queued."""
    queue, store = memory_queue()
    report = queue.enqueue_many([GOOD, bad_row, GOOD], batch_id="b1")
    assert [line for line, _ in report.errors] == [2]
    assert report.errors[0][1].startswith(reason)
    assert report.jobs == {1: "b1-000001", 3: "b1-000003"}
    assert report.queued == 2
    assert set(store.jobs) == {"b1-000001", "b1-000003"}


@pytest.mark.parametrize(
    ("options", "field"),
    [({"qualty": "low"}, "qualty"), ({"batch_id": "b1"}, "batch_id"), ({"now": 1.0}, "now")],
)
def test_enqueue_refuses_names_the_type_checker_would(options: dict[str, Any], field: str) -> None:
    """Untyped callers get InvalidParams naming the options, and nothing is stored."""
    queue, store = memory_queue()
    with pytest.raises(InvalidParams, match="unknown option") as caught:
        queue.enqueue("a castle", aspect_ratio="1:1", resolution="1K", **options)
    assert caught.value.field == field
    assert store.jobs == {}


@pytest.mark.parametrize(
    "line",
    [
        '{"prompt": "p", "aspect_ratio": "1:1", "resolution": "1K"}',
        '{"prompt": "p", "aspect_ratio": "1:1", "resolution": "1K", "quality": "low",'
        ' "images": ["https://a/b.png"], "params": {"seed": 1}, "job_id": "j1",'
        ' "webhook": "https://example.com/h", "metadata": {"k": "v"}}',
    ],
)
def test_bulk_rows_are_prompt_and_job_options(line: str) -> None:
    """What a bulk file row becomes is a prompt and options `check_options` accepts."""
    (row,), errors = parse_bulk(line, fmt="jsonl")
    assert errors == []
    options = {name: value for name, value in row.options.items() if name != "prompt"}
    assert check_options(options) == options
