"""The size table of `gpt_image_2_official`: aspect ratio x resolution -> pixels produced.

This is the one place the table lives. `None` marks a combination the API refuses because it
exceeds the model's pixel limit (only six ratios exist at 4K).
"""

from __future__ import annotations

from typing import Final

MODEL: Final = "gpt_image_2_official"

RESOLUTIONS: Final = ("1K", "2K", "4K")

Size = tuple[int, int]

# ratio -> (1K, 2K, 4K), each (width, height) or None where refused.
_TABLE: Final[dict[str, tuple[Size, Size, Size | None]]] = {
    "1:1": ((1024, 1024), (2048, 2048), None),
    "3:2": ((1536, 1024), (2048, 1360), None),
    "2:3": ((1024, 1536), (1360, 2048), None),
    "4:3": ((1024, 768), (2048, 1536), None),
    "3:4": ((768, 1024), (1536, 2048), None),
    "5:4": ((1280, 1024), (2560, 2048), None),
    "4:5": ((1024, 1280), (2048, 2560), None),
    "16:9": ((1536, 864), (2048, 1152), (3840, 2160)),
    "9:16": ((864, 1536), (1152, 2048), (2160, 3840)),
    "2:1": ((2048, 1024), (2688, 1344), (3840, 1920)),
    "1:2": ((1024, 2048), (1344, 2688), (1920, 3840)),
    "21:9": ((2016, 864), (2688, 1152), (3840, 1648)),
    "9:21": ((864, 2016), (1152, 2688), (1648, 3840)),
}

ASPECT_RATIOS: Final = tuple(_TABLE)


def pixel_size(aspect_ratio: str, resolution: str) -> Size | None:
    """Return (width, height) for a combination, or None if the API refuses it.

    Raises KeyError for a ratio or resolution that is not in the table at all.
    """
    if resolution not in RESOLUTIONS:
        raise KeyError(resolution)
    return _TABLE[aspect_ratio][RESOLUTIONS.index(resolution)]


def ratios_at(resolution: str) -> tuple[str, ...]:
    """The aspect ratios the API accepts at a resolution, in table order."""
    return tuple(ratio for ratio in ASPECT_RATIOS if pixel_size(ratio, resolution) is not None)
