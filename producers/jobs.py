"""Turning a producer's request into a valid `Job` record, or an `InvalidParams` naming why not.

`JobOptions` names a job's options once: `enqueue`'s keyword arguments, the keys of an
`enqueue_many` row (with `prompt`) and `build_job`'s options are all it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypedDict, Unpack, cast

from imageq.config import Settings
from imageq.worker.domain.job import Job
from imageq.worker.domain.params import DEFAULT_QUALITY, validate_params
from imageq.worker.errors import InvalidParams, UnsafeTarget
from imageq.worker.webhooks.guard import check_target, target_policy

Lane = Literal["interactive", "bulk"]
JOB_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
MAX_METADATA_BYTES: Final = 16 * 1024


class _RequiredJobOptions(TypedDict):
    aspect_ratio: str  # one of imageq.worker.domain.sizes.ASPECT_RATIOS
    resolution: str  # 1K, 2K or 4K


class JobOptions(_RequiredJobOptions, total=False):
    """A job's options besides its prompt; `aspect_ratio` and `resolution` are required."""

    quality: str  # low, medium or high; high when absent
    reference_images: Sequence[str]  # http(s) URLs or data:image/...;base64, URIs
    extra_params: Mapping[str, Any] | None  # passed to the API unchanged
    job_id: str | None  # your own id; a new one when absent
    webhook_url: str | None  # signed (Standard Webhooks) with webhook.secrets
    callback: Mapping[str, Any] | None  # a Celery signature, called with the payload
    metadata: Mapping[str, Any] | None  # plain JSON, returned in the payload


JOB_OPTIONS: Final = tuple(JobOptions.__annotations__)
REQUIRED_JOB_OPTIONS: Final = tuple(
    name for name in JOB_OPTIONS if name in JobOptions.__required_keys__
)


def check_options(options: Mapping[str, Any]) -> JobOptions:
    """`options` as `JobOptions`, if each name is an option and each required one is given;
    else `InvalidParams` naming the options. The values are `build_job`'s to check.

    For callers the type checker does not see: rows read from files, and untyped code.
    """
    if unknown := [name for name in options if name not in JOB_OPTIONS]:
        known = ", ".join(("prompt", *JOB_OPTIONS))
        raise InvalidParams(", ".join(unknown), f"unknown option; the options are {known}")
    if missing := [name for name in REQUIRED_JOB_OPTIONS if name not in options]:
        required = ", ".join(("prompt", *REQUIRED_JOB_OPTIONS))
        raise InvalidParams(", ".join(missing), f"required; the required options are {required}")
    return cast(JobOptions, options)


def build_job(
    settings: Settings,
    prompt: str,
    *,
    lane: Lane = "interactive",
    batch_id: str | None = None,
    now: float,
    **options: Unpack[JobOptions],
) -> Job:
    """Check every value a job carries; return its record, ready to store. The option names
    are the type checker's to check, or `check_options`'s where it cannot see them."""
    params = validate_params(
        prompt,
        aspect_ratio=options["aspect_ratio"],
        resolution=options["resolution"],
        quality=options.get("quality", DEFAULT_QUALITY),
        reference_images=options.get("reference_images", ()),
        extra=options.get("extra_params"),
    )
    check_reference_urls(settings, params.reference_images)
    if lane not in ("interactive", "bulk"):
        raise InvalidParams("lane", f"{lane!r} is not one of interactive, bulk")
    job_id, callback = options.get("job_id"), options.get("callback")
    return Job(
        job_id=check_job_id(job_id) if job_id is not None else new_job_id(),
        params=params.to_record(),
        created_at=now,
        updated_at=now,
        metadata=plain_json("metadata", options.get("metadata") or {}, limit=MAX_METADATA_BYTES),
        webhook_url=check_webhook_url(settings, options.get("webhook_url")),
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
        check_target(url, target_policy(settings.webhook))
    except UnsafeTarget as error:
        raise InvalidParams("webhook_url", str(error)) from None
    return url


def check_reference_urls(settings: Settings, images: Sequence[str]) -> None:
    """Reference images' http(s) URLs by the webhook rule. imageq never fetches them, the API
    does; but an internal address there is a job aimed at a private network all the same."""
    policy = target_policy(settings.webhook)
    for index, image in enumerate(images):
        if image[:5].lower() == "data:":  # inline bytes: nothing to reach
            continue
        field = f"reference_images[{index}]"
        try:
            check_target(image, policy, field=field)
        except UnsafeTarget as error:
            raise InvalidParams(field, str(error)) from None


def plain_json(field: str, value: Any, *, limit: int | None) -> Any:
    """The value as plain JSON (a Celery signature becomes its dict), within `limit` bytes."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as error:
        raise InvalidParams(field, f"must be plain JSON ({error})") from None
    if limit is not None and len(text.encode()) > limit:
        raise InvalidParams(field, f"{len(text.encode()):,} bytes; at most {limit:,} are allowed")
    return json.loads(text)
