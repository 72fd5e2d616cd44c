"""The simulator's images: each shows its job's prompt, ratio, resolution and pixel size."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from imageq.simulator.picture import Caption, caption_png, font, wrap
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.sizes import pixel_size


def caption(prompt: str = "Ancient castle under the starry sky", ratio: str = "16:9",
            resolution: str = "1K", **more: int) -> Caption:  # fmt: skip
    size = pixel_size(ratio, resolution)
    assert size is not None
    return Caption(prompt, ratio, resolution, *size, **more)


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def bright_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Pixels in `box` light enough to be text (the background is dark)."""
    histogram = image.convert("L").crop(box).histogram()
    return sum(histogram[201:])


@pytest.mark.parametrize(
    ("ratio", "resolution"), [("1:1", "1K"), ("9:21", "1K"), ("21:9", "2K"), ("16:9", "4K")]
)
def test_png_has_the_tabled_pixel_size(ratio: str, resolution: str) -> None:
    """The PNG decodes to exactly the size table's pixels, in RGB."""
    image = decoded(caption_png(caption(ratio=ratio, resolution=resolution)))
    assert (image.format, image.mode) == ("PNG", "RGB")
    assert image.size == pixel_size(ratio, resolution)


def test_same_job_same_bytes() -> None:
    """Drawn twice (cache cleared between), a job's image is byte for byte the same."""
    first = caption_png(caption())
    caption_png.cache_clear()
    assert caption_png(caption()) == first


def test_different_prompts_look_different() -> None:
    """Two prompts give different images, down to the background colour."""
    castle = decoded(caption_png(caption("a castle")))
    fox = decoded(caption_png(caption("a fox")))
    assert castle.getpixel((castle.width - 1, castle.height // 2)) != fox.getpixel(
        (fox.width - 1, fox.height // 2)
    )


def test_prompt_and_label_are_drawn() -> None:
    """Text-coloured pixels at the top left (the prompt) and the bottom left (the label), and
    none in the empty middle right."""
    image = decoded(caption_png(caption()))
    width, height = image.size
    assert bright_pixels(image, (0, 0, width // 2, height // 5)) > 500
    assert bright_pixels(image, (0, height * 4 // 5, width // 2, height)) > 200
    assert bright_pixels(image, (width * 3 // 4, height * 2 // 5, width, height * 3 // 5)) == 0


def test_the_label_names_ratio_resolution_and_pixels() -> None:
    """The label line reads `16:9 · 1K · 1536 x 864 px`; with several images, which one."""
    assert caption().label() == "16:9 \u00b7 1K \u00b7 1536 x 864 px"
    assert caption(index=1, count=3).label().endswith("\u00b7 image 2/3")


def test_differing_label_changes_the_image() -> None:
    """The same prompt at another ratio or as another image of the job is another picture."""
    base = caption_png(caption())
    assert caption_png(caption(ratio="21:9")) != base
    assert caption_png(caption(index=1, count=2)) != base


@pytest.mark.parametrize(
    "text",
    [
        "Ancient castle under the starry sky, oil on canvas, in the style of the old masters",
        "a" * 200,
        "two\nparagraphs of text",
        "",
    ],
)
def test_wrap_keeps_every_character_within_the_width(text: str) -> None:
    """Wrapped lines fit the width, and together hold every non-space character in order."""
    face = font(40)
    lines = wrap(text, face, 400)
    assert all(face.getlength(line) <= 400 for line in lines)
    assert "".join("".join(lines).split()) == "".join(text.split())


def test_a_very_long_prompt_is_cut_with_an_ellipsis_and_stays_cheap() -> None:
    """32,000 characters (the longest prompt allowed) draw in well under a second: only the
    lines that fit are drawn."""
    long = caption(" ".join(["word"] * 6400), ratio="1:1", resolution="1K")
    started = time.perf_counter()
    image = decoded(caption_png(long))
    assert time.perf_counter() - started < 2.0
    assert image.size == (1024, 1024)


def test_wrap_stops_past_max_lines() -> None:
    """With `max_lines`, wrapping stops soon after that many lines."""
    lines = wrap(" ".join(["word"] * 6400), font(40), 400, max_lines=3)
    assert 3 < len(lines) <= 5


def test_fonts_are_loaded_once_per_size() -> None:
    """The same size gives the same font object (cached)."""
    assert font(33) is font(33)


def test_the_start_up_summary_is_one_short_line_without_the_key() -> None:
    """The start-up line gives the latency and what differs from the defaults, nothing else."""
    config = SimConfig(api_key="sk-secret-value", latency="uniform:4,12", status_words="varied")
    summary = config.summary()
    assert summary == "latency uniform:4,12, status words varied"
    assert "sk-secret-value" not in summary
    assert SimConfig(api_key="k").summary() == "latency realistic"
