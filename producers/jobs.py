"""Turning a producer's request into a valid `Job` record, or an `InvalidParams` naming why not."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from imageq.config import Settings
from imageq.worker.domain.job import Job
from imageq.worker.domain.params import DEFAULT_QUALITY, validate_params
from imageq.worker.errors import InvalidParams, UnsafeTarget
from imageq.worker.webhooks.guard import check_webhook_target

Lane = Literal["interactive", "bulk"]
JOB_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
MAX_METADATA_BYTES: Final = 16 * 1024


def build_job(
    settings: Settings,
    prompt: str,
    *,
    aspect_ratio: str,
    resolution: str,
    quality: str = DEFAULT_QUALITY,
    reference_images: Sequence[str] = (),
    extra_params: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    webhook_url: str | None = None,
    callback: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    lane: Lane = "interactive",
    batch_id: str | None = None,
    now: float,
) -> Job:
    """Check everything a job carries; return its record, ready to store."""
    params = validate_params(
        prompt,
        aspect_ratio=aspect_ratio,
        resolution=resolution,
        quality=quality,
        reference_images=reference_images,
        extra=extra_params,
    )
    if lane not in ("interactive", "bulk"):
        raise InvalidParams("lane", f"{lane!r} is not one of interactive, bulk")
    return Job(
        job_id=check_job_id(job_id) if job_id is not None else new_job_id(),
        params=params.to_record(),
        created_at=now,
        updated_at=now,
        metadata=plain_json("metadata", metadata or {}, limit=MAX_METADATA_BYTES),
        webhook_url=check_webhook_url(settings, webhook_url),
        callback=plain_json("callback", callback, limit=None) if callback else None,
        lane=lane,
        batch_id=batch_id,
    )


def new_job_id() -> str:
    return f"iq_{uuid.uuid4().hex}"


def check_job_id(job_id: object, *, field: str = "job_id") -> str:
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise InvalidParams(
            field, "1 to 128 characters: letters, digits and _ . : - (starting alphanumeric)"
        )
    return job_id


def check_webhook_url(settings: Settings, url: str | None) -> str | None:
    """A webhook needs a signing secret and a target imageq may call."""
    if url is None:
        return None
    if not settings.webhook.secrets:
        raise InvalidParams(
            "webhook_url", "webhooks are signed: set webhook.secrets (IMAGEQ_WEBHOOK__SECRETS)"
        )
    try:
        check_webhook_target(url, allow_private=settings.webhook.allow_private_targets)
    except UnsafeTarget as error:
        raise InvalidParams("webhook_url", str(error)) from None
    return url


def plain_json(field: str, value: Any, *, limit: int | None) -> Any:
    """The value as plain JSON (a Celery signature becomes its dict), within `limit` bytes."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as error:
        raise InvalidParams(field, f"must be plain JSON ({error})") from None
    if limit is not None and len(text.encode()) > limit:
        raise InvalidParams(field, f"{len(text.encode()):,} bytes; at most {limit:,} are allowed")
    return json.loads(text)
