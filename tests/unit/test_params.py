"""Parameters and the size table: every cell, every field's refusal message."""

from __future__ import annotations

import pytest

from imageq.worker.domain.params import MAX_PROMPT_CHARS, validate_params
from imageq.worker.domain.sizes import ASPECT_RATIOS, RESOLUTIONS, pixel_size, ratios_at
from imageq.worker.errors import InvalidParams

FOUR_K_RATIOS = ("16:9", "9:16", "2:1", "1:2", "21:9", "9:21")
TABLE = {
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
CELLS = [
    (ratio, resolution, sizes[index])
    for ratio, sizes in TABLE.items()
    for index, resolution in enumerate(("1K", "2K", "4K"))
]


def test_table_has_39_cells() -> None:
    """13 ratios by 3 resolutions, as the model page lists."""
    assert len(CELLS) == 39
    assert len(ASPECT_RATIOS) * len(RESOLUTIONS) == 39


@pytest.mark.parametrize(("ratio", "resolution", "size"), CELLS)
def test_every_cell(ratio: str, resolution: str, size: tuple[int, int] | None) -> None:
    """Each cell gives the documented pixels, or is refused with the 4K ratios named."""
    assert pixel_size(ratio, resolution) == size
    if size is None:
        with pytest.raises(InvalidParams) as caught:
            validate_params("a castle", aspect_ratio=ratio, resolution=resolution)
        assert caught.value.field == "aspect_ratio"
        assert all(allowed in str(caught.value) for allowed in FOUR_K_RATIOS)
    else:
        params = validate_params("a castle", aspect_ratio=ratio, resolution=resolution)
        assert params.size == size


@pytest.mark.parametrize(("ratio", "resolution", "size"), [c for c in CELLS if c[2]])
def test_sizes_obey_model_limits(ratio: str, resolution: str, size: tuple[int, int]) -> None:
    """Edges are multiples of 16 (bar the documented 1360), at most 3840, at most 8.3 MP."""
    width, height = size
    assert max(width, height) <= 3840
    assert width * height <= 8_294_400
    assert max(width, height) / min(width, height) <= 3


def test_ratios_at_4k() -> None:
    """Only six ratios exist at 4K; every ratio exists at 1K and 2K."""
    assert ratios_at("4K") == FOUR_K_RATIOS
    assert ratios_at("1K") == ratios_at("2K") == ASPECT_RATIOS


def test_defaults_and_normalisation() -> None:
    """Quality defaults to high; case and surrounding space are forgiven in the enums."""
    params = validate_params("x", aspect_ratio=" 16:9", resolution="2k", quality="HIGH ")
    assert (params.aspect_ratio, params.resolution, params.quality) == ("16:9", "2K", "high")
    assert validate_params("x", aspect_ratio="1:1", resolution="1K").quality == "high"


@pytest.mark.parametrize(
    ("kwargs", "field", "named"),
    [
        ({"prompt": ""}, "prompt", "non-blank"),
        ({"prompt": "   \n"}, "prompt", "non-blank"),
        ({"prompt": None}, "prompt", "non-blank"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt", "32,000"),
        ({"aspect_ratio": "7:3"}, "aspect_ratio", "21:9"),
        ({"aspect_ratio": None}, "aspect_ratio", "1:1"),
        ({"resolution": "8K"}, "resolution", "1K, 2K, 4K"),
        ({"quality": "ultra"}, "quality", "low, medium, high"),
        ({"reference_images": ["ftp://x/y.png"]}, "reference_images[0]", "http(s)"),
        ({"reference_images": "https://x/y.png"}, "reference_images", "list"),
        ({"reference_images": ["https://x/a.png"] * 10}, "reference_images", "at most 9"),
        ({"reference_images": ["data:image/png;base64,@@@"]}, "reference_images[0]", "data:"),
        ({"reference_images": ["data:text/plain;base64,aGk="]}, "reference_images[0]", "data:"),
        ({"extra": {"prompt": "again"}}, "prompt", "own argument"),
    ],
)
def test_refusals_name_field_and_allowed_values(
    kwargs: dict[str, object], field: str, named: str
) -> None:
    """Each bad field is refused with its name and what it allows."""
    call: dict[str, object] = {"prompt": "a castle", "aspect_ratio": "1:1", "resolution": "1K"}
    call.update(kwargs)
    with pytest.raises(InvalidParams) as caught:
        validate_params(**call)  # type: ignore[arg-type]  # the bad values are the point
    assert caught.value.field == field
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        ("a\x00castle", "U+0000 (NUL) at character 2"),
        ("a castle\x1b[31m", "U+001B (ESC) at character 9"),
        ("\x07", "U+0007 (BEL) at character 1"),
        ("a\x0ccastle", "U+000C (FF) at character 2"),
        ("a castle\x0b", "U+000B (VT) at character 9"),
        ("a\x7fcastle", "U+007F (DEL) at character 2"),
        ("a \x85castle", "U+0085 at character 3"),
        ("ok\n\x01", "U+0001 at character 4"),
    ],
)
def test_control_characters_in_the_prompt_are_refused_by_code_and_place(
    prompt: str, named: str
) -> None:
    """A control character other than newline and tab is refused, named by code and place."""
    with pytest.raises(InvalidParams) as caught:
        validate_params(prompt, aspect_ratio="1:1", resolution="1K")
    assert caught.value.field == "prompt"
    assert named in caught.value.message
    assert "only line breaks and tabs" in caught.value.message


@pytest.mark.parametrize(
    "prompt",
    ["two\nlines", "a\ttab", "crlf\r\nline", "cr\rline", "ok\u2028\u00a0\u200b", "[/] [bold]"],
)
def test_newlines_tabs_and_other_text_are_kept_as_given(prompt: str) -> None:
    """LF, CR, CRLF, tab, Unicode separators and brackets are ordinary prompt text."""
    assert validate_params(prompt, aspect_ratio="1:1", resolution="1K").prompt == prompt


def test_prompt_at_the_limit_is_accepted() -> None:
    """Exactly 32,000 characters is allowed."""
    params = validate_params("x" * MAX_PROMPT_CHARS, aspect_ratio="1:1", resolution="1K")
    assert len(params.prompt) == MAX_PROMPT_CHARS


def test_reference_images_and_extras_reach_the_api_unchanged() -> None:
    """Nine mixed references pass; unknown params pass through untouched."""
    images = ["https://example.com/a.png"] * 8 + ["data:image/png;base64,iVBORw0KGgo="]
    params = validate_params(
        "x",
        aspect_ratio="21:9",
        resolution="4K",
        reference_images=images,
        extra={"seed": 7, "style": {"a": [1, 2]}},
    )
    body = params.to_api(reference_images_field="image_urls")
    assert body == {
        "prompt": "x",
        "aspect_ratio": "21:9",
        "resolution": "4K",
        "quality": "high",
        "image_urls": images,
        "seed": 7,
        "style": {"a": [1, 2]},
    }


def test_record_round_trip() -> None:
    """to_record/from_record lose nothing."""
    params = validate_params(
        "x", aspect_ratio="9:21", resolution="2K", quality="low", extra={"n": 1}
    )
    assert type(params).from_record(params.to_record()) == params
