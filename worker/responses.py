"""Parsing the API's answers into typed values. Pure: no I/O, no clock but the one passed in.

Two envelopes are documented (`{"code", "data": [...]}` for gpt_image_2_official and
`{"statusCode", "message", "data": {...}}` for the platform); both parse into `RemoteTask`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from worker.errors import (
    ApiError,
    ApiRejected,
    ApiUnavailable,
    AuthenticationFailed,
    RateLimited,
    SafetyRejected,
    TaskNotFound,
)
from worker.status import RemoteStatus, remote_status

_SAFETY_WORDS: Final = ("safety", "sensitive", "moderation", "violat", "unsafe", "policy")
_MAX_MESSAGE_CHARS: Final = 500


@dataclass(frozen=True)
class RemoteTask:
    """What the API says of one task, whatever the envelope."""

    task_id: str
    status: RemoteStatus
    status_word: str
    out_task_id: str | None = None
    output_urls: tuple[str, ...] = ()
    error: str | None = None


def parse_task(body: object) -> RemoteTask:
    """Parse a submit or query answer (already decoded JSON); raise `ApiError` if it is one."""
    if not isinstance(body, Mapping):
        raise ApiUnavailable(f"expected a JSON object, got {type(body).__name__}")
    raise_for_body_code(body)
    data = body.get("data")
    if isinstance(data, list):
        data = data[0] if data and isinstance(data[0], Mapping) else None
    if not isinstance(data, Mapping):
        raise ApiUnavailable("the answer has no task in its `data`")
    task_id = data.get("task_id") or data.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise ApiUnavailable("the answer's task has no `task_id`")
    word = data.get("status")
    out_task_id = data.get("out_task_id")
    return RemoteTask(
        task_id=task_id,
        status=remote_status(word),
        status_word=str(word),
        out_task_id=out_task_id if isinstance(out_task_id, str) else None,
        output_urls=find_output_urls(data),
        error=_error_text(data),
    )


def raise_for_body_code(body: Mapping[str, Any]) -> None:
    """An HTTP 200 whose body `code`/`statusCode` is not 200 is an error all the same."""
    code = body.get("code", body.get("statusCode"))
    if code is None or code == 200 or code == "200":
        return
    try:
        number = int(code)
    except (TypeError, ValueError):
        raise ApiUnavailable(f"the answer has an unreadable code {code!r}") from None
    message = _message(body)
    raise classify(number, message)(message or f"code {number}", http_status=200, code=number)


def find_output_urls(data: Mapping[str, Any]) -> tuple[str, ...]:
    """Image URLs from every documented place: output[], data[], image_url, result.data[]."""
    urls: list[str] = []
    result = data.get("result")
    for items in (
        data.get("output"),
        data.get("data"),
        data.get("images"),
        result.get("data") if isinstance(result, Mapping) else None,
    ):
        if isinstance(items, Mapping):
            items = [items]
        if isinstance(items, list):
            urls.extend(url for url in map(_url_of, items) if url)
    for key in ("image_url", "url"):
        if isinstance(data.get(key), str):
            urls.append(data[key])
    return tuple(dict.fromkeys(urls))


def classify(status: int, message: str) -> type[ApiError]:
    """The error class for an HTTP status or a body code: retryable or final."""
    if status == 429:
        return RateLimited
    if status in (408, 425) or status >= 500:
        return ApiUnavailable
    if any(word in message.lower() for word in _SAFETY_WORDS):
        return SafetyRejected
    if status in (401, 403):
        return AuthenticationFailed
    if status == 404:
        return TaskNotFound
    return ApiRejected


def error_for_http(
    http_status: int, text: str, headers: Mapping[str, str], *, now: datetime | None = None
) -> ApiError:
    """The error for a non-2xx answer, keeping the body's code and message."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        message = _message(body)
        code = body.get("code", body.get("statusCode"))
    else:
        message, code = text.strip()[:_MAX_MESSAGE_CHARS], None
    return classify(http_status, message)(
        message or f"HTTP {http_status}",
        http_status=http_status,
        code=code if isinstance(code, int) else None,
        retry_after_s=parse_retry_after(headers.get("Retry-After"), now=now),
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _url_of(item: object) -> str | None:
    if isinstance(item, str) and item.startswith(("http://", "https://")):
        return item
    if isinstance(item, Mapping):
        url = item.get("url") or item.get("image_url")
        return url if isinstance(url, str) and url else None
    return None


def _message(body: Mapping[str, Any]) -> str:
    for key in ("message", "msg", "error", "detail"):
        value = body.get(key)
        if isinstance(value, Mapping):
            value = value.get("message")
        if isinstance(value, str) and value:
            return value[:_MAX_MESSAGE_CHARS]
    return ""


def _error_text(data: Mapping[str, Any]) -> str | None:
    for key in ("error", "fail_reason", "error_message"):
        value = data.get(key)
        if isinstance(value, Mapping):
            value = value.get("message")
        if isinstance(value, str) and value:
            return value[:_MAX_MESSAGE_CHARS]
    return None
