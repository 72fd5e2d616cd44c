"""Parsing the API's answers into typed values. Pure: no I/O, no clock but the one passed in.

Two envelopes are documented (`{"code", "data": [...]}` for gpt_image_2_official and
`{"statusCode", "message", "data": {...}}` for the platform); both parse into `RemoteTask`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from imageq.worker.domain.cost import parse_credits
from imageq.worker.domain.status import RemoteStatus, remote_status
from imageq.worker.errors import (
    ApiError,
    ApiRejected,
    ApiUnavailable,
    AuthenticationFailed,
    RateLimited,
    SafetyRejected,
    TaskNotFound,
)

_SAFETY_WORDS: Final = ("safety", "sensitive", "moderation", "violat", "unsafe", "policy")
_MAX_MESSAGE_CHARS: Final = 500
MAX_RETRY_AFTER_S: Final = 24 * 3600.0


@dataclass(frozen=True)
class RemoteTask:
    """What the API says of one task, whatever the envelope."""

    task_id: str
    status: RemoteStatus
    status_word: str
    out_task_id: str | None = None
    output_urls: tuple[str, ...] = ()
    error: str | None = None
    created_at: float | None = None
    completed_at: float | None = None
    # What the task cost, when the answer says (`credits_used`); None when it does not.
    credits_used: float | None = None

    @property
    def generation_s(self) -> float | None:
        """How long the platform took, when it says when it started and finished."""
        if self.created_at is None or self.completed_at is None:
            return None
        return max(0.0, self.completed_at - self.created_at)


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
        created_at=parse_time(data.get("created_at")),
        completed_at=parse_time(data.get("completed_at")),
        credits_used=parse_credits(data.get("credits_used")),
    )


def parse_time(value: object) -> float | None:
    """An ISO 8601 time (`2025-12-18T10:13:41.000Z`) or epoch number as epoch seconds; None if
    absent or unreadable (a missing time is never an error)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def raise_for_body_code(body: Mapping[str, Any]) -> None:
    """An HTTP 200 whose body `code`/`statusCode` is not 200 is an error all the same."""
    code = body.get("code", body.get("statusCode"))
    if code is None or code == 200 or code == "200":
        return
    try:
        number = int(code)
    except (TypeError, ValueError, OverflowError):
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
    body = loads_or_none(text)
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


def loads_or_none(text: str) -> Any:
    """Decoded JSON, or None for anything that is not JSON (nesting too deep included)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date, at most a day (a server
    asking for more, or for `inf`, gets a day: a wait is never unbounded)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


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
