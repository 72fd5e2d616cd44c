"""Validation of a submit body into a `Submission`, the way the platform checks it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from imageq.simulator.markers import MarkerError, Markers, parse_markers
from imageq.worker.domain.sizes import ASPECT_RATIOS, MODEL, RESOLUTIONS, Size, pixel_size

QUALITIES: Final = ("low", "medium", "high", "auto")
DEFAULTS: Final = {"aspect_ratio": "1:1", "resolution": "1K", "quality": "high"}


class SubmitError(ValueError):
    """The body is not an acceptable submit; the message names the offending value."""


@dataclass(frozen=True)
class Submission:
    """An accepted submit. `params` is kept exactly as sent, unknown keys included."""

    out_task_id: str
    params: dict[str, Any]
    quality: str
    resolution: str
    size: Size
    markers: Markers
    prompt: str
    aspect_ratio: str


def parse_submit(body: object) -> Submission:
    """Check model, out_task_id and params; raise SubmitError with a message on the first fault."""
    if not isinstance(body, dict):
        raise SubmitError("body must be a JSON object")
    if body.get("model") != MODEL:
        raise SubmitError(f"unsupported model {body.get('model')!r}: expected {MODEL!r}")
    out_task_id = body.get("out_task_id")
    if not isinstance(out_task_id, str) or not out_task_id.strip():
        raise SubmitError("out_task_id is required")
    params = body.get("params")
    if not isinstance(params, dict):
        raise SubmitError("params must be an object")
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise SubmitError("params.prompt is required")
    ratio, resolution, quality = (params.get(key, default) for key, default in DEFAULTS.items())
    if ratio not in ASPECT_RATIOS:
        raise SubmitError(f"invalid aspect_ratio {ratio!r}: expected one of {list(ASPECT_RATIOS)}")
    if resolution not in RESOLUTIONS:
        raise SubmitError(f"invalid resolution {resolution!r}: expected one of {list(RESOLUTIONS)}")
    size = pixel_size(ratio, resolution)
    if size is None:
        raise SubmitError(
            f"aspect_ratio {ratio} is not available at resolution {resolution}: "
            "it exceeds the model's pixel limit"
        )
    if quality not in QUALITIES:
        raise SubmitError(f"invalid quality {quality!r}: expected one of {list(QUALITIES)}")
    try:
        markers = parse_markers(prompt)
    except MarkerError as error:
        raise SubmitError(str(error)) from error
    return Submission(
        out_task_id, params, quality, resolution, size, markers, prompt=prompt, aspect_ratio=ratio
    )
