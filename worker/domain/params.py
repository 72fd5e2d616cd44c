"""Generation parameters for `gpt_image_2_official`, validated before anything is queued.

`validate_params` is pure: it either returns `GenerationParams` or raises `InvalidParams`
naming the field and the values it allows.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from imageq.worker.domain.sizes import ASPECT_RATIOS, RESOLUTIONS, Size, pixel_size, ratios_at
from imageq.worker.errors import InvalidParams

QUALITIES: Final = ("low", "medium", "high")
DEFAULT_QUALITY: Final = "high"
MAX_PROMPT_CHARS: Final = 32_000
MAX_REFERENCE_IMAGES: Final = 9
# Line breaks and tabs are layout a prompt may need; every other control character (NUL, ESC,
# the C1 codes...) is invisible, can rewrite a terminal that shows the prompt, and means nothing
# to the model. A line break is LF, CRLF or a lone CR, as bulk files count lines (a CR file's
# multi-line cell holds CRs). Unicode's control category (Cc) is U+0000-001F and U+007F-009F.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_NAMES: Final = {
    0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x0B: "VT", 0x0C: "FF", 0x1B: "ESC",
    0x7F: "DEL",
}  # fmt: skip

# The names validate_params owns; anything else in `extra` goes to the API untouched.
_OWN_FIELDS: Final = frozenset({"prompt", "aspect_ratio", "resolution", "quality"})
_DATA_URI = re.compile(r"data:image/[a-z0-9.+-]+;base64,(?P<data>.+)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class GenerationParams:
    """A valid request: the table's combination, the prompt, and extras passed through."""

    prompt: str
    aspect_ratio: str
    resolution: str
    quality: str = DEFAULT_QUALITY
    reference_images: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> Size:
        """The pixel size the API produces for this combination."""
        size = pixel_size(self.aspect_ratio, self.resolution)
        assert size is not None, "validate_params admits only tabled combinations"
        return size

    def to_record(self) -> dict[str, Any]:
        """Plain JSON for the job record; `from_record` reverses it."""
        return {
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "quality": self.quality,
            "reference_images": list(self.reference_images),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GenerationParams:
        return cls(
            prompt=record["prompt"],
            aspect_ratio=record["aspect_ratio"],
            resolution=record["resolution"],
            quality=record["quality"],
            reference_images=tuple(record.get("reference_images", ())),
            extra=dict(record.get("extra", {})),
        )

    def to_api(self, *, reference_images_field: str) -> dict[str, Any]:
        """The `params` object of a submit request."""
        body: dict[str, Any] = dict(self.extra)
        body.update(
            prompt=self.prompt,
            aspect_ratio=self.aspect_ratio,
            resolution=self.resolution,
            quality=self.quality,
        )
        if self.reference_images:
            body[reference_images_field] = list(self.reference_images)
        return body


def validate_params(
    prompt: object,
    *,
    aspect_ratio: object,
    resolution: object,
    quality: object = DEFAULT_QUALITY,
    reference_images: object = (),
    extra: Mapping[str, Any] | None = None,
) -> GenerationParams:
    """Check every field against the model's rules; raise `InvalidParams` on the first bad one."""
    if extra is not None and not isinstance(extra, Mapping):
        raise InvalidParams("extra_params", "must be an object of extra API params")
    extra = dict(extra or {})
    if not all(isinstance(key, str) for key in extra):
        raise InvalidParams("extra_params", "keys must be strings")
    clash = sorted(_OWN_FIELDS & extra.keys())
    if clash:
        raise InvalidParams(clash[0], "pass it as its own argument, not among extra params")
    ratio = _choice("aspect_ratio", aspect_ratio, ASPECT_RATIOS)
    res = _choice("resolution", resolution, RESOLUTIONS, normalise=str.upper)
    if pixel_size(ratio, res) is None:
        raise InvalidParams(
            "aspect_ratio",
            f"{ratio} is not available at {res} (it exceeds the model's pixel limit);"
            f" at {res} the allowed ratios are {', '.join(ratios_at(res))}",
        )
    return GenerationParams(
        prompt=_prompt(prompt),
        aspect_ratio=ratio,
        resolution=res,
        quality=_choice("quality", quality, QUALITIES, normalise=str.lower),
        reference_images=_reference_images(reference_images),
        extra=extra,
    )


def _choice(
    name: str,
    value: object,
    allowed: Sequence[str],
    *,
    normalise: Any = None,
) -> str:
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and normalise is not None:
        text = normalise(text)
    if text not in allowed:
        raise InvalidParams(name, f"{value!r} is not one of {', '.join(allowed)}")
    assert isinstance(text, str)
    return text


def _prompt(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParams("prompt", "a non-blank text is required")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidParams(
            "prompt", f"{len(value):,} characters; at most {MAX_PROMPT_CHARS:,} are allowed"
        )
    if control := _CONTROL.search(value):
        code = ord(control[0])
        name = f" ({_CONTROL_NAMES[code]})" if code in _CONTROL_NAMES else ""
        raise InvalidParams(
            "prompt",
            f"control character U+{code:04X}{name} at character {control.start() + 1};"
            " only line breaks and tabs are allowed",
        )
    return value


def _reference_images(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidParams("reference_images", "a list of image URLs or data URIs is required")
    if len(value) > MAX_REFERENCE_IMAGES:
        raise InvalidParams(
            "reference_images", f"{len(value)} given; at most {MAX_REFERENCE_IMAGES} are allowed"
        )
    for index, image in enumerate(value):
        if not _is_image_reference(image):
            raise InvalidParams(
                f"reference_images[{index}]",
                "must be an http(s) URL or a data:image/...;base64, URI",
            )
    return tuple(value)


def _is_image_reference(value: object) -> bool:
    if not isinstance(value, str):
        return False
    match = _DATA_URI.fullmatch(value)
    if match:
        try:
            base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value
