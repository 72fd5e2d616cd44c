"""Bulk files and manifests: rows parsed into enqueue options or row errors; results written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imageq.producers.bulkfile import (
    MAX_ROW_BYTES,
    BulkFileError,
    BulkFormat,
    BulkRow,
    RowError,
    parse_bulk,
    read_bulk_file,
)
from imageq.producers.manifest import (
    manifest_entry_for_error,
    manifest_entry_for_job,
    summarize,
    write_manifest,
)
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus

URL = "https://img.example.com/ref.png"
BASE = {"prompt": "a lighthouse", "aspect_ratio": "16:9", "resolution": "2K"}
HUGE_PROMPT = "x" * (MAX_ROW_BYTES + 10)


def jsonl(*lines: dict[str, Any] | str) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def reasons(errors: list[RowError]) -> dict[int, str]:
    return {error.line: error.reason for error in errors}


def one_row(text: str, fmt: BulkFormat = "jsonl") -> BulkRow:
    rows, errors = parse_bulk(text, fmt=fmt)
    assert errors == []
    assert len(rows) == 1
    return rows[0]


def test_jsonl_mixed_file() -> None:
    """Valid lines become options; each bad line is reported with its line and reason."""
    text = jsonl(
        {
            **BASE,
            "quality": "Low",
            "images": [URL],
            "webhook": "https://hooks.example.com/in",
            "job_id": "row-1",
            "metadata": {"sku": 7},
            "params": {"seed": 42},
        },
        "",
        {**BASE, "aspect_ratio": "7:3"},
        {**BASE, "aspect_ratio": "1:1", "resolution": "4K"},
        {**BASE, "prompt": "   "},
        {**BASE, "qualty": "low"},
        '{"prompt": "a cat", "aspect_ratio": ',
        "[1, 2]",
        "   ",
        {"prompt": "a cat", "aspect_ratio": "1:1"},
        {**BASE, "images": [URL] * 10},
        {**BASE, "job_id": "-starts-with-dash"},
        {**BASE, "job_id": "row-1"},
        {**BASE, "prompt": HUGE_PROMPT},
        {**BASE, "resolution": "4k", "reference_images": [URL]},
    )
    rows, errors = parse_bulk(text, fmt="jsonl")
    assert rows == [
        BulkRow(
            1,
            {
                **BASE,
                "quality": "low",
                "reference_images": [URL],
                "extra_params": {"seed": 42},
                "job_id": "row-1",
                "webhook_url": "https://hooks.example.com/in",
                "metadata": {"sku": 7},
            },
        ),
        BulkRow(15, {**BASE, "resolution": "4K", "quality": "high", "reference_images": [URL]}),
    ]
    got = reasons(errors)
    assert sorted(got) == [3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14]
    assert got[3].startswith("aspect_ratio: '7:3' is not one of 1:1, 3:2")
    assert got[4].startswith("aspect_ratio: 1:1 is not available at 4K")
    assert "16:9, 9:16, 2:1, 1:2, 21:9, 9:21" in got[4]
    assert got[5] == "prompt: a non-blank text is required"
    assert got[6].startswith("qualty: unknown field; allowed: prompt, aspect_ratio, resolution")
    assert got[7].startswith("not valid JSON: Expecting value at column")
    assert got[8] == "not a JSON object but list"
    assert got[10] == "resolution: required (one of 1K, 2K, 4K)"
    assert got[11] == "reference_images: 10 given; at most 9 are allowed"
    assert got[12].startswith("job_id: 1 to 128 characters")
    assert got[13] == "job_id: 'row-1' already used on line 1"
    assert got[14].startswith(f"row too large: {len(jsonl({**BASE, 'prompt': HUGE_PROMPT})) - 1:,}")
    assert f"at most {MAX_ROW_BYTES:,}" in got[14]


CSV_MIXED = (
    "prompt,aspect_ratio,resolution,quality,images,job_id,metadata.team\n"  # 1
    '"a harbour, at dusk",16:9,2K,,,,\n'  # 2
    "\n"  # 3
    '"a poem:\nline two, ""quoted""\nline three",1:1,1K,medium,,poem-1,blue\n'  # 4-6
    "a cat,7:3,1K,,,,\n"  # 7
    "a cat,1:1,4K,,,,\n"  # 8
    ",1:1,1K,,,,\n"  # 9
    "a cat, sitting,1:1,1K,,,,red\n"  # 10: an unquoted comma
    "a cat,1:1,,,,,\n"  # 11
    f"a cat,1:1,1K,,{'|'.join([URL] * 10)},,\n"  # 12
    "a cat,1:1,1K,,,bad id,\n"  # 13
    "a cat,1:1,1K,,,poem-1,\n"  # 14
    f'"{HUGE_PROMPT}",1:1,1K,,,,\n'  # 15
    "   \n"  # 16
    '5" nails,2:1,4K,,,,\n'  # 17
)


def test_csv_mixed_file() -> None:
    """Quoted commas and newlines keep later line numbers right; bad rows are reported."""
    rows, errors = parse_bulk(CSV_MIXED, fmt="csv")
    assert rows == [
        BulkRow(2, {**BASE, "prompt": "a harbour, at dusk", "quality": "high"}),
        BulkRow(
            4,
            {
                "prompt": 'a poem:\nline two, "quoted"\nline three',
                "aspect_ratio": "1:1",
                "resolution": "1K",
                "quality": "medium",
                "job_id": "poem-1",
                "metadata": {"team": "blue"},
            },
        ),
        BulkRow(
            17, {"prompt": '5" nails', "aspect_ratio": "2:1", "resolution": "4K", "quality": "high"}
        ),
    ]
    got = reasons(errors)
    assert sorted(got) == [7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert got[7].startswith("aspect_ratio: '7:3' is not one of")
    assert got[8].startswith("aspect_ratio: 1:1 is not available at 4K")
    assert got[9] == "prompt: required (a non-blank text)"
    assert got[10] == "8 cells, but the header has 7 columns"
    assert got[11] == "resolution: required (one of 1K, 2K, 4K)"
    assert got[12] == "reference_images: 10 given; at most 9 are allowed"
    assert got[13].startswith("job_id: 1 to 128 characters")
    assert got[14] == "job_id: 'poem-1' already used on line 4"
    assert got[15].startswith("row too large: ")


def test_csv_unknown_column_only_where_filled() -> None:
    """A typo'd column is an error on each row that fills it, naming the allowed columns."""
    text = "prompt,aspect_ratio,resolution,qualty\na cat,1:1,1K,low\na dog,1:1,1K,\n"
    rows, errors = parse_bulk(text, fmt="csv")
    assert [row.line for row in rows] == [3]
    assert errors[0].line == 2
    assert errors[0].reason.startswith("qualty: unknown field; allowed: prompt,")
    assert errors[0].reason.endswith("metadata, metadata.KEY")


def test_csv_params_column_is_unknown() -> None:
    """Extra API params are JSONL only; a CSV params column is refused, not ignored."""
    _, errors = parse_bulk('prompt,aspect_ratio,resolution,params\nx,1:1,1K,"{}"\n', fmt="csv")
    assert errors[0].reason.startswith("params: unknown field")


def test_csv_blank_extra_cells_are_absent() -> None:
    """Trailing empty cells beyond the header carry nothing, so they are not an error."""
    row = one_row("prompt,aspect_ratio,resolution\na cat,1:1,1K,,\n", fmt="csv")
    assert row.options["prompt"] == "a cat"


def test_csv_cells_are_trimmed_but_prompt_kept() -> None:
    """Spaces around tokens are dropped; the prompt is the user's text, kept as written."""
    row = one_row("prompt,aspect_ratio,resolution\n  a cat , 1:1 , 2k \n", fmt="csv")
    assert row.options == {
        "prompt": "  a cat ",
        "aspect_ratio": "1:1",
        "resolution": "2K",
        "quality": "high",
    }


def test_csv_cell_over_field_limit_does_not_shift_later_rows() -> None:
    """A multi-line cell too big for the csv module fails alone; later rows keep their lines."""
    images = "\n".join(f"data:image/png;base64,{'A' * 20_000}" for _ in range(8))
    text = f'prompt,aspect_ratio,resolution,images\nx,1:1,1K,"{images}"\nlater,1:1,1K,\n'
    rows, errors = parse_bulk(text, fmt="csv")
    assert errors == [RowError(2, errors[0].reason)]
    assert errors[0].reason.startswith("not readable as CSV: field larger than field limit")
    assert [row.line for row in rows] == [10]
    assert rows[0].options["prompt"] == "later"


@pytest.mark.parametrize(
    ("header", "cells", "metadata"),
    [
        ("metadata.team,metadata.run", "red,7", {"team": "red", "run": "7"}),
        ("metadata.team,metadata.run", "red,", {"team": "red"}),
        ("metadata", '"{""team"": ""red"", ""run"": 7}"', {"team": "red", "run": 7}),
    ],
)
def test_csv_metadata(header: str, cells: str, metadata: dict[str, Any]) -> None:
    """metadata.KEY columns give string values; a metadata column holds a JSON object."""
    row = one_row(f"prompt,aspect_ratio,resolution,{header}\nx,1:1,1K,{cells}\n", fmt="csv")
    assert row.options["metadata"] == metadata


@pytest.mark.parametrize(
    ("header", "cells", "reason"),
    [
        ("metadata", "not json", "metadata: the cell must hold a JSON object"),
        ("metadata", "[1]", "metadata: must be a JSON object"),
        ("metadata,metadata.team", '"{}",red', "metadata: use the metadata column or"),
    ],
)
def test_csv_bad_metadata(header: str, cells: str, reason: str) -> None:
    """A metadata cell that is not a JSON object, or both metadata styles, refuse the row."""
    _, errors = parse_bulk(
        f"prompt,aspect_ratio,resolution,{header}\nx,1:1,1K,{cells}\n", fmt="csv"
    )
    assert errors[0].reason.startswith(reason)


@pytest.mark.parametrize(
    "cell",
    [
        f"{URL}|{URL}2",
        f"{URL} {URL}2",
        f'"{URL} |\n {URL}2"',
        f"{URL}||{URL}2|",
        f'" {URL}\t{URL}2 "',
    ],
)
def test_csv_images_split(cell: str) -> None:
    """Image URLs in one cell are split on | and any whitespace, empty pieces dropped."""
    row = one_row(f"prompt,aspect_ratio,resolution,images\nx,1:1,1K,{cell}\n", fmt="csv")
    assert row.options["reference_images"] == [URL, f"{URL}2"]


def test_missing_csv_columns_raise() -> None:
    """A header without the required columns is one file error naming them, not N row errors."""
    with pytest.raises(BulkFileError, match=r"lacks column\(s\) aspect_ratio, resolution"):
        parse_bulk("prompt,size\na cat,big\n", fmt="csv")


def test_repeated_csv_column_raises() -> None:
    """A column given twice would silently lose one of its values; the file is refused."""
    with pytest.raises(BulkFileError, match="repeats prompt"):
        parse_bulk("prompt,aspect_ratio,resolution,prompt\n", fmt="csv")


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("", "jsonl"),
        ("", "csv"),
        ("\n  \n\r\n", "jsonl"),
        ("prompt,aspect_ratio,resolution\n", "csv"),
        ("\ufeffprompt,aspect_ratio,resolution\r\n\r\n,,\r\n", "csv"),
    ],
)
def test_no_rows(text: str, fmt: BulkFormat) -> None:
    """An empty file, blank lines, or a lone header give no rows and no errors."""
    assert parse_bulk(text, fmt=fmt) == ([], [])


def test_jsonl_field_rules() -> None:
    """Aliases are exclusive, nulls are absent, NaN and clashing extra params are refused."""
    text = jsonl(
        {**BASE, "images": [URL], "reference_images": [URL]},
        {**BASE, "quality": None, "webhook": None},
        '{"prompt": "x", "aspect_ratio": "1:1", "resolution": "1K", "params": {"seed": NaN}}',
        {**BASE, "params": {"quality": "low"}},
        {**BASE, "params": [1]},
        {**BASE, "metadata": "team=red"},
        {**BASE, "webhook_url": 5},
        {**BASE, "metadata": {"notes": "x" * 20_000}},
    )
    rows, errors = parse_bulk(text, fmt="jsonl")
    assert rows == [BulkRow(2, {**BASE, "quality": "high"})]
    assert reasons(errors) == {
        1: "reference_images: give images or reference_images, not both",
        3: "not valid JSON: NaN is not allowed",
        4: "params.quality: give quality as its own field",
        5: "params: must be a JSON object of extra API params",
        6: "metadata: must be a JSON object",
        7: "webhook_url: must be a URL",
        8: "metadata: 20,013 bytes; at most 16,384 are allowed",
    }


def test_duplicate_of_a_refused_row_is_still_a_duplicate() -> None:
    """A job id is claimed by its first row even when that row is refused for another reason."""
    text = jsonl({**BASE, "job_id": "a", "aspect_ratio": "7:3"}, {**BASE, "job_id": "a"})
    rows, errors = parse_bulk(text, fmt="jsonl")
    assert rows == []
    assert reasons(errors)[2] == "job_id: 'a' already used on line 1"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings(newline: str) -> None:
    """LF, CRLF and CR files number their lines the same."""
    text = newline.join(
        ["prompt,aspect_ratio,resolution", "", "a,1:1,1K", '"b', 'c",1:1,1K', "d,1:1,1K"]
    )
    rows, _ = parse_bulk(text + newline, fmt="csv")
    assert [row.line for row in rows] == [3, 4, 6]
    assert rows[1].options["prompt"] == f"b{newline}c"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_bom_is_ignored(fmt: BulkFormat, tmp_path: Path) -> None:
    """A UTF-8 BOM, in the text or in the file, does not become part of the first name."""
    text = jsonl(BASE) if fmt == "jsonl" else "prompt,aspect_ratio,resolution\nx,1:1,1K\n"
    assert one_row("\ufeff" + text, fmt=fmt).line == 1 + (fmt == "csv")
    path = tmp_path / f"rows.{fmt}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    rows, errors = read_bulk_file(path)
    assert (len(rows), errors) == (1, [])


@pytest.mark.parametrize(("bom", "offset"), [(b"", 12), (b"\xef\xbb\xbf", 15)])
def test_invalid_utf8_raises_with_offset(bom: bytes, offset: int, tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused whole, with the bad byte's offset in the file."""
    path = tmp_path / "rows.csv"
    path.write_bytes(bom + b"prompt,a,b\nx\xff,1:1,1K\n")
    with pytest.raises(BulkFileError, match=f"byte 0xff at offset {offset} \\(line 2\\)") as caught:
        read_bulk_file(path)
    assert caught.value.offset == offset


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("rows.jsonl", jsonl(BASE), 1),
        ("rows.NDJSON", jsonl(BASE), 1),
        ("rows.json", jsonl(BASE), 1),
        ("rows.csv", "prompt,aspect_ratio,resolution\nx,1:1,1K\n", 2),
        ("rows.txt", "\n" + jsonl(BASE), 2),
        ("rows", "prompt,aspect_ratio,resolution\nx,1:1,1K\n", 2),
    ],
)
def test_format_from_extension_or_content(
    name: str, content: str, line: int, tmp_path: Path
) -> None:
    """The extension decides the format; without a known one, a leading { means JSONL."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    rows, errors = read_bulk_file(path)
    assert errors == []
    assert [row.line for row in rows] == [line]


def test_explicit_format_wins(tmp_path: Path) -> None:
    """`fmt` overrides the extension."""
    path = tmp_path / "rows.csv"
    path.write_text(jsonl(BASE), encoding="utf-8")
    assert len(read_bulk_file(path, fmt="jsonl")[0]) == 1


# --- manifests ------------------------------------------------------------------------------

PARAMS = {**BASE, "quality": "high", "reference_images": [], "extra": {}}
OUTPUT = {"url": "https://cdn.example.com/1.png", "width": 2048, "height": 1152}


def test_entry_for_succeeded_job() -> None:
    """A finished job's entry carries its prompt, metadata, times and outputs (as the
    completion payload has them)."""
    job = Job(
        "j1",
        PARAMS,
        status=JobStatus.SUCCEEDED,
        remote_task_id="task-9",
        created_at=1_789_999_990.0,
        finished_at=1_790_000_000.25,
        outputs=[OUTPUT],
        metadata={"order": 7},
    )
    assert manifest_entry_for_job(3, job) == {
        "line": 3,
        "job_id": "j1",
        "prompt": PARAMS["prompt"],
        "metadata": {"order": 7},
        "status": "succeeded",
        "outputs": [OUTPUT | {"saved": None, "download_error": None}],
        "error": None,
        "remote_task_id": "task-9",
        "created_at": "2026-09-21T14:13:10.000Z",
        "finished_at": "2026-09-21T14:13:20.250Z",
        "credits_used": None,
        "reason": None,
    }


def test_entry_for_failed_job() -> None:
    """A failed job's entry has no outputs and the payload's error."""
    error = {"type": "SafetyRejected", "message": "refused", "http_status": 400, "code": 1301}
    job = Job("j2", PARAMS, status=JobStatus.FAILED, finished_at=1_790_000_000.0, error=error)
    entry = manifest_entry_for_job(5, job)
    assert (entry["status"], entry["outputs"]) == ("failed", [])
    assert entry["error"] == error | {"retryable": False}


def test_entry_for_unfinished_job() -> None:
    """A job still running shows its status and nothing that is not final yet."""
    job = Job("j3", PARAMS, status=JobStatus.SUBMITTED, remote_task_id="task-1", outputs=[OUTPUT])
    entry = manifest_entry_for_job(2, job)
    assert entry == entry | {
        "status": "submitted",
        "outputs": [],
        "error": None,
        "finished_at": None,
    }


def test_entry_for_invalid_row() -> None:
    """A refused row has no job and says why, as a non-retryable InvalidRow error, with the
    prompt and metadata it had."""
    refused = RowError(4, "resolution: required", prompt="fox", metadata={"n": 1})
    assert manifest_entry_for_error(refused) == {
        "line": 4,
        "job_id": None,
        "prompt": "fox",
        "metadata": {"n": 1},
        "status": "invalid",
        "outputs": [],
        "error": {"type": "InvalidRow", "message": "resolution: required", "retryable": False},
        "remote_task_id": None,
        "created_at": None,
        "finished_at": None,
        "credits_used": None,
        "reason": None,
    }


def test_refused_rows_keep_their_prompt_and_metadata() -> None:
    """parse_bulk hands a refused row's readable prompt and metadata on to its manifest entry."""
    text = '{"prompt": "fox", "aspect_ratio": "7:3", "resolution": "1K", "metadata": {"n": 2}}\n'
    rows, errors = parse_bulk(text, fmt="jsonl")
    assert rows == []
    assert (errors[0].line, errors[0].prompt, errors[0].metadata) == (1, "fox", {"n": 2})


def test_write_manifest_sorted_and_atomic(tmp_path: Path) -> None:
    """Entries are written by line, parents made, an old manifest replaced, no temp file left."""
    entries = [
        manifest_entry_for_error(RowError(9, "bad")),
        manifest_entry_for_job(2, Job("j1", PARAMS)),
        manifest_entry_for_error(RowError(4, "bad")),
    ]
    path = tmp_path / "out" / "run" / "manifest.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("old\n", encoding="utf-8")
    assert write_manifest(path, entries) == path
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["line"] for line in lines] == [2, 4, 9]
    assert json.loads(lines[0])["status"] == "queued"
    assert list(path.parent.iterdir()) == [path]
    assert write_manifest(tmp_path / "new" / "m.jsonl", []).read_text(encoding="utf-8") == ""


def test_write_manifest_failure_leaves_old_file(tmp_path: Path) -> None:
    """An entry that cannot be written leaves the old manifest whole and no temp file."""
    path = tmp_path / "manifest.jsonl"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Out of range float"):
        write_manifest(path, [{"line": 1, "status": "invalid", "x": float("nan")}])
    assert path.read_text(encoding="utf-8") == "old\n"
    assert list(tmp_path.iterdir()) == [path]


def test_summarize() -> None:
    """Counts per status: terminal ones and invalid always, others when present."""
    statuses = ["succeeded", "succeeded", "failed", "invalid", "queued", "timed_out"]
    assert summarize({"line": n, "status": s} for n, s in enumerate(statuses)) == {
        "succeeded": 2,
        "failed": 1,
        "timed_out": 1,
        "cancelled": 0,
        "invalid": 1,
        "queued": 1,
    }
