"""Parsing both envelopes, every status word, outputs in every place, error classes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from imageq.worker import errors
from imageq.worker.domain.status import TERMINAL_REMOTE_STATUSES, RemoteStatus, remote_status
from imageq.worker.upstream.responses import error_for_http, parse_retry_after, parse_task

WORDS = {
    "submitted": RemoteStatus.PENDING,
    "pending": RemoteStatus.PENDING,
    "queued": RemoteStatus.PENDING,
    "processing": RemoteStatus.RUNNING,
    "running": RemoteStatus.RUNNING,
    "in_progress": RemoteStatus.RUNNING,
    "completed": RemoteStatus.SUCCEEDED,
    "succeeded": RemoteStatus.SUCCEEDED,
    "success": RemoteStatus.SUCCEEDED,
    "failed": RemoteStatus.FAILED,
    "fail": RemoteStatus.FAILED,
    "error": RemoteStatus.FAILED,
    "cancelled": RemoteStatus.CANCELLED,
    "canceled": RemoteStatus.CANCELLED,
    "timeout": RemoteStatus.TIMED_OUT,
}


@pytest.mark.parametrize(("word", "status"), WORDS.items())
def test_every_status_word(word: str, status: RemoteStatus) -> None:
    """Each word in the API notes maps to one status, in any case."""
    assert remote_status(word) is status
    assert remote_status(word.upper()) is status


@pytest.mark.parametrize("word", ["", "weird", None, 3, "In Progress"])
def test_unknown_words_are_not_terminal(word: object) -> None:
    """An unknown word keeps polling going (and spaces fold to underscores)."""
    assert remote_status(word) not in TERMINAL_REMOTE_STATUSES


def test_model_envelope() -> None:
    """The gpt_image_2_official submit answer: code + data list."""
    task = parse_task({"code": 200, "data": [{"status": "submitted", "task_id": "task_01"}]})
    assert (task.task_id, task.status, task.output_urls) == ("task_01", RemoteStatus.PENDING, ())


def test_platform_envelope() -> None:
    """The platform's answer: statusCode + message + data object, outputs under output[]."""
    task = parse_task(
        {
            "statusCode": 200,
            "message": "",
            "data": {
                "task_id": "order_1",
                "out_task_id": "mine",
                "status": "completed",
                "output": [{"url": "https://cdn/x/item-0.jpeg"}],
            },
        }
    )
    assert task.status is RemoteStatus.SUCCEEDED
    assert task.out_task_id == "mine"
    assert task.output_urls == ("https://cdn/x/item-0.jpeg",)


@pytest.mark.parametrize(
    "data",
    [
        {"output": [{"url": "https://a/1.png"}, {"url": "https://a/2.png"}]},
        {"data": [{"url": "https://a/1.png"}, {"url": "https://a/2.png"}]},
        {"result": {"data": [{"url": "https://a/1.png"}, {"url": "https://a/2.png"}]}},
        {"output": ["https://a/1.png"], "image_url": "https://a/2.png"},
        {"images": [{"image_url": "https://a/1.png"}, "https://a/2.png"]},
    ],
)
def test_outputs_found_everywhere(data: dict[str, Any]) -> None:
    """output[].url, data[].url, result.data[].url, image_url: all documented places."""
    task = parse_task({"code": 200, "data": {"task_id": "t", "status": "success", **data}})
    assert task.output_urls == ("https://a/1.png", "https://a/2.png")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"code": 400, "message": "prompt rejected by content safety review"}, "SafetyRejected"),
        ({"code": 401, "message": "invalid api key"}, "AuthenticationFailed"),
        ({"statusCode": 402, "message": "insufficient credits"}, "ApiRejected"),
        ({"code": 429, "msg": "slow down"}, "RateLimited"),
        ({"code": 500, "message": "oops"}, "ApiUnavailable"),
        ({"statusCode": 404, "message": "task not found"}, "TaskNotFound"),
        ({"code": "abc"}, "ApiUnavailable"),
        ({"code": 200, "data": []}, "ApiUnavailable"),
        ({"code": 200, "data": [{"status": "x"}]}, "ApiUnavailable"),
        ([1, 2], "ApiUnavailable"),
        ("text", "ApiUnavailable"),
    ],
)
def test_bad_bodies_are_classified(body: object, kind: str) -> None:
    """An HTTP 200 with a non-200 code, or no task, is an error of the right class."""
    with pytest.raises(errors.ApiError) as caught:
        parse_task(body)
    assert type(caught.value).__name__ == kind
    assert caught.value.retryable is (kind in ("RateLimited", "ApiUnavailable"))


@pytest.mark.parametrize(
    ("status", "text", "kind", "retryable"),
    [
        (400, '{"code": 400, "message": "bad aspect_ratio"}', errors.ApiRejected, False),
        (
            401,
            '{"statusCode": 401, "message": "invalid api key"}',
            errors.AuthenticationFailed,
            False,
        ),
        (403, "forbidden", errors.AuthenticationFailed, False),
        (404, '{"statusCode": 404, "message": "task not found"}', errors.TaskNotFound, False),
        (422, '{"message": "Your prompt violates our policy"}', errors.SafetyRejected, False),
        (429, '{"code": 429, "message": "rate limited"}', errors.RateLimited, True),
        (500, "<html>boom</html>", errors.ApiUnavailable, True),
        (502, "", errors.ApiUnavailable, True),
        (503, '{"message": "maintenance"}', errors.ApiUnavailable, True),
        (408, "", errors.ApiUnavailable, True),
    ],
)
def test_http_errors_are_classified(
    status: int, text: str, kind: type[errors.ApiError], retryable: bool
) -> None:
    """Retryable: 429, 408, 5xx. Final: other 4xx. Status and message kept."""
    error = error_for_http(status, text, {})
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.http_status == status
    assert error.to_record()["retryable"] is retryable
    if text.startswith("{"):
        assert error.message in text


def test_retry_after_seconds_and_date() -> None:
    """Retry-After is honoured as delta-seconds and as an HTTP date."""
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("Thu, 26 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
    error = error_for_http(429, "", {"Retry-After": "12"})
    assert isinstance(error, errors.RateLimited)
    assert error.retry_after_s == 12.0


def test_errors_share_one_base() -> None:
    """Every imageq error is an ImageqError."""
    for kind in (
        errors.RateLimited,
        errors.SafetyRejected,
        errors.InvalidParams,
        errors.JobNotFound,
    ):
        assert issubclass(kind, errors.ImageqError)
