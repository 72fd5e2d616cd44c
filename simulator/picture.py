"""The image the simulator serves for a job: a gradient with the job's prompt (wrapped), aspect
ratio, resolution and pixel size written on it, so a contact sheet shows which image is which.

The same job gives the same bytes every time (the colour comes from a hash of the prompt, not a
random source); a drawn image is cached, so a repeated download costs nothing.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageDraw, ImageFont

# zlib level 1: a 4K image encodes in a fraction of the time of level 6, and a gradient with
# some text compresses almost as well either way.
_COMPRESS_LEVEL: Final = 1
_MARGIN: Final = 0.06  # of the shorter side
_PROMPT_TEXT: Final = 0.09  # prompt text height, of the shorter side
_LABEL_TEXT: Final = 0.06
_TEXT: Final = (255, 255, 255)
_LABEL: Final = (255, 236, 200)
# The cached fonts are shared, and a FreeType face is not safe to use from two threads at once
# (python-pillow/Pillow#9497); the simulator draws in its executor's threads.
_FONTS_IN_USE: Final = threading.Lock()


@dataclass(frozen=True)
class Caption:
    """What is written on an image: the job's parameters and which of its images it is."""

    prompt: str
    aspect_ratio: str
    resolution: str
    width: int
    height: int
    index: int = 0
    count: int = 1

    def label(self) -> str:
        """The line under the prompt: `16:9 · 2K · 2048 x 1152 px` (and `image 2/3` if several)."""
        parts = [self.aspect_ratio, self.resolution, f"{self.width} x {self.height} px"]
        if self.count > 1:
            parts.append(f"image {self.index + 1}/{self.count}")
        return " \u00b7 ".join(parts)


@functools.lru_cache(maxsize=64)
def caption_png(caption: Caption) -> bytes:
    """A PNG of exactly caption.width x caption.height pixels with the caption drawn on it."""
    if caption.width < 1 or caption.height < 1:
        raise ValueError(f"PNG size must be positive, got {caption.width}x{caption.height}")
    image = _background(caption.prompt, caption.width, caption.height)
    with _FONTS_IN_USE:
        _write(ImageDraw.Draw(image), caption)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=_COMPRESS_LEVEL)
    return out.getvalue()


def wrap(
    text: str, font: ImageFont.FreeTypeFont, width_px: float, *, max_lines: int | None = None
) -> list[str]:
    """`text` in lines no wider than `width_px`: broken at spaces, and inside a word only when
    the word alone is too wide. With `max_lines`, stops once it has more than that many (so a
    32,000-character prompt costs no more than a short one)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        if max_lines is not None and len(lines) > max_lines:
            return lines
        line = ""
        for word in paragraph.split():
            if max_lines is not None and len(lines) > max_lines:
                return lines
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width_px:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:
                if line and font.getlength(line + char) > width_px:
                    lines.append(line)
                    line = ""
                    if max_lines is not None and len(lines) > max_lines:
                        return lines
                line += char
        lines.append(line)
    return lines


@functools.lru_cache(maxsize=32)
def font(size_px: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font at a pixel size (loaded once per size)."""
    loaded = ImageFont.load_default(size=size_px)
    if not isinstance(loaded, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise RuntimeError("the simulator draws its images with FreeType, missing from Pillow")
    return loaded


def _background(prompt: str, width: int, height: int) -> Image.Image:
    """A vertical gradient, dark enough for white text, in two colours picked by the prompt."""
    digest = hashlib.sha256(prompt.encode()).digest()
    top = tuple(40 + value % 100 for value in digest[:3])
    bottom = tuple(10 + value % 60 for value in digest[3:6])
    # Drawn 1 pixel wide and stretched: every row one colour, which also compresses to little.
    column = Image.new("RGB", (1, 256))
    pairs = list(zip(top, bottom, strict=True))
    column.putdata([tuple(t + (b - t) * y // 255 for t, b in pairs) for y in range(256)])
    return column.resize((width, height), Image.Resampling.BILINEAR)


def _write(draw: ImageDraw.ImageDraw, caption: Caption) -> None:
    """The prompt from the top left, as many lines as fit; the label at the bottom left."""
    side = min(caption.width, caption.height)
    margin = round(side * _MARGIN)
    usable = caption.width - 2 * margin
    prompt_font = font(max(8, round(side * _PROMPT_TEXT)))
    label_font = font(max(8, round(side * _LABEL_TEXT)))
    label = caption.label()
    if label_font.getlength(label) > usable:  # a narrow image: the label shrinks to fit
        label_font = font(max(8, int(label_font.size * usable / label_font.getlength(label))))
    label_height = round(label_font.size * 1.3)
    line_height = round(prompt_font.size * 1.25)
    room = max(1, (caption.height - 2 * margin - 2 * label_height) // line_height)
    lines = wrap(caption.prompt, prompt_font, usable, max_lines=room)
    if len(lines) > room:
        lines = [*lines[: room - 1], _shortened(lines[room - 1], prompt_font, usable)]
    for number, line in enumerate(lines):
        draw.text((margin, margin + number * line_height), line, font=prompt_font, fill=_TEXT)
    bottom = caption.height - margin - label_height
    draw.text((margin, bottom), label, font=label_font, fill=_LABEL)


def _shortened(line: str, prompt_font: ImageFont.FreeTypeFont, width_px: float) -> str:
    """The last line that fits, ending in an ellipsis: the prompt goes on beyond it."""
    while line and prompt_font.getlength(line + "\u2026") > width_px:
        line = line[:-1]
    return line + "\u2026"
