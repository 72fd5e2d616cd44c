"""A fetched message's payload with the strings every message repeats shared, not copied.

A worker holds each countdown message until it is due, and JSON decoding makes every dict key
and every repeated value (the content type, the queue's name, the task's name) a new string in
each message: about 30 of them, 50 to 70 bytes each. Interned, each is one string for all the
messages held; Celery's copy of the headers shares them too. Pure: the payload in, a payload
equal to it out.
"""

from __future__ import annotations

import sys
from typing import Any, Final

_SHARED_VALUES: Final = ("content-type", "content-encoding")


def _shared_keys(value: dict[str, Any], *, values: bool = False) -> dict[str, Any]:
    intern = sys.intern
    if values:
        return {
            intern(key): intern(item) if isinstance(item, str) else item
            for key, item in value.items()
        }
    return {intern(key): item for key, item in value.items()}


def share_strings(payload: Any) -> Any:
    """`payload` (kombu's dict for one fetched message) with its keys, its header and property
    dicts' keys, the content type and encoding, the task name, the body encoding and the
    delivery info's values interned, and the correlation id the task id's string when equal;
    anything not shaped so is returned as it is."""
    if not isinstance(payload, dict) or not all(isinstance(key, str) for key in payload):
        return payload
    shared = _shared_keys(payload)
    for name in _SHARED_VALUES:
        if isinstance(shared.get(name), str):
            shared[name] = sys.intern(shared[name])
    headers = shared.get("headers")
    if isinstance(headers, dict) and all(isinstance(key, str) for key in headers):
        headers = shared["headers"] = _shared_keys(headers)
        if isinstance(headers.get("task"), str):
            headers["task"] = sys.intern(headers["task"])
    properties = shared.get("properties")
    if isinstance(properties, dict) and all(isinstance(key, str) for key in properties):
        properties = shared["properties"] = _shared_keys(properties)
        delivery = properties.get("delivery_info")
        if isinstance(delivery, dict) and all(isinstance(key, str) for key in delivery):
            properties["delivery_info"] = _shared_keys(delivery, values=True)
        if isinstance(properties.get("body_encoding"), str):
            properties["body_encoding"] = sys.intern(properties["body_encoding"])
        # Celery's correlation id is the task id: one string for both.
        if isinstance(headers, dict) and properties.get("correlation_id") == headers.get("id"):
            properties["correlation_id"] = headers.get("id")
    return shared
