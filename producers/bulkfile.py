"""Bulk files: one generation job per JSONL line or CSV record, checked before anything is queued.

`parse_bulk` is pure and never stops at a bad row: each row becomes a `BulkRow` (keyword
arguments for `ImageQueue.enqueue`, already through `validate_params`) or a `RowError` with its
line and reason. Only faults of the whole file (not UTF-8; a CSV header without the required
columns) raise `BulkFileError`: one clear message beats the same error on every row.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from imageq.producers.jobs import MAX_METADATA_BYTES, check_job_id, plain_json
from imageq.worker.domain.params import DEFAULT_QUALITY, validate_params
from imageq.worker.domain.sizes import ASPECT_RATIOS, RESOLUTIONS
from imageq.worker.errors import BulkFileError as BulkFileError  # re-exported: it was defined here
from imageq.worker.errors import InvalidParams

BulkFormat = Literal["jsonl", "csv"]

MAX_ROW_BYTES: Final = 256 * 1024
REQUIRED: Final = {
    "prompt": "a non-blank text",
    "aspect_ratio": f"one of {', '.join(ASPECT_RATIOS)}",
    "resolution": f"one of {', '.join(RESOLUTIONS)}",
}
_OPTIONAL: Final = ("quality", "images", "reference_images", "webhook", "webhook_url", "job_id")
# Extra API params are nested objects, which a CSV cell cannot hold readably: JSONL only.
JSONL_FIELDS: Final = (*REQUIRED, *_OPTIONAL, "metadata", "params")
CSV_COLUMNS: Final = (*REQUIRED, *_OPTIONAL, "metadata", "metadata.KEY")
_SUFFIXES: Final[dict[str, BulkFormat]] = {
    **dict.fromkeys((".jsonl", ".ndjson", ".json"), "jsonl"),
    ".csv": "csv",
}
_IMAGE_SEPARATORS: Final = re.compile(r"[\s|]+")

# A row as a format reader hands it on: its first line, its fields (as far as they could be
# read), and why it is refused, if the format itself already refused it.
_Record = tuple[int, dict[str, Any], str | None]


@dataclass(frozen=True)
class BulkRow:
    """A valid row: `options` are keyword arguments for `ImageQueue.enqueue`."""

    line: int
    options: dict[str, Any]


@dataclass(frozen=True)
class RowError:
    """A refused row: its first line (1-based) and why, as "field: what is wrong"; and its
    prompt and metadata when the row had readable ones, for the manifest."""

    line: int
    reason: str
    prompt: str | None = None
    metadata: dict[str, Any] | None = None


Parsed = tuple[list[BulkRow], list[RowError]]


def read_bulk_file(path: Path, *, fmt: BulkFormat | None = None) -> Parsed:
    """Read and parse a UTF-8 file (a BOM is fine); `fmt` defaults to the extension's format,
    else the content's. Raises `BulkFileError` if it is not UTF-8, `OSError` if unreadable.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # The codec counts from after the BOM it skipped; the offset reported is the file's.
        offset = error.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise BulkFileError(
            f"{path} is not UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line {line})",
            offset=offset,
        ) from None
    sniffed: BulkFormat = "jsonl" if text.lstrip().startswith("{") else "csv"
    return parse_bulk(text, fmt=fmt or _SUFFIXES.get(path.suffix.lower(), sniffed))


def parse_bulk(text: str, *, fmt: BulkFormat) -> Parsed:
    """Valid rows and refused rows, each in file order; blank lines are skipped, so a file
    without rows gives ([], []). Raises `BulkFileError` for a CSV header lacking required
    columns, repeating one, or unreadable.
    """
    text = text.removeprefix("\ufeff")
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown bulk format {fmt!r}: expected jsonl or csv")
    records = _jsonl_records(text) if fmt == "jsonl" else _csv_records(text)
    rows: list[BulkRow] = []
    errors: list[RowError] = []
    first_use: dict[str, int] = {}
    for line, fields, problem in records:
        # Any readable id claims its line, even on a refused row: were a later duplicate
        # queued, the first row, once fixed and rerun, would silently get that job back.
        job_id = fields.get("job_id")
        first = first_use.setdefault(job_id, line) if isinstance(job_id, str) else line
        if problem is None:
            try:
                options = _options(fields, JSONL_FIELDS if fmt == "jsonl" else CSV_COLUMNS)
                if first != line:
                    raise InvalidParams("job_id", f"{job_id!r} already used on line {first}")
            except InvalidParams as error:
                problem = str(error)
            else:
                rows.append(BulkRow(line, options))
                continue
        prompt, metadata = fields.get("prompt"), fields.get("metadata")
        errors.append(
            RowError(
                line,
                problem,
                prompt=prompt if isinstance(prompt, str) else None,
                metadata=metadata if isinstance(metadata, dict) else None,
            )
        )
    return rows, errors


def _options(fields: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """A row's fields as `enqueue` keyword arguments; raises `InvalidParams` at the first fault."""
    unknown = [name for name in fields if name not in allowed]
    if unknown:
        raise InvalidParams(", ".join(unknown), f"unknown field; allowed: {', '.join(allowed)}")
    for name, wanted in REQUIRED.items():
        if fields.get(name) is None:
            raise InvalidParams(name, f"required ({wanted})")
    extra, quality = fields.get("params"), fields.get("quality")
    if not isinstance(extra, dict | None):
        raise InvalidParams("params", "must be a JSON object of extra API params")
    if clash := sorted({*REQUIRED, "quality"} & set(extra or {})):
        raise InvalidParams(f"params.{clash[0]}", f"give {clash[0]} as its own field")
    params = validate_params(
        fields["prompt"],
        aspect_ratio=fields["aspect_ratio"],
        resolution=fields["resolution"],
        quality=DEFAULT_QUALITY if quality is None else quality,
        reference_images=_either(fields, "images", "reference_images"),
        extra=extra,
    )
    # The normalised values ("4k" -> "4K"), and only the optional ones the row gave.
    record = params.to_record()
    options = {name: record[name] for name in ("prompt", *REQUIRED, "quality")}
    options |= {"reference_images": record["reference_images"]} if params.reference_images else {}
    options |= {"extra_params": record["extra"]} if params.extra else {}
    if fields.get("job_id") is not None:
        options["job_id"] = check_job_id(fields["job_id"])
    # Only the shape is checked here: whether imageq may call the host is enqueue's check, as
    # it needs the settings and a DNS lookup.
    if (webhook := _either(fields, "webhook", "webhook_url")) is not None:
        if not isinstance(webhook, str) or not webhook.strip():
            raise InvalidParams("webhook_url", "must be a URL")
        options["webhook_url"] = webhook
    if (metadata := fields.get("metadata")) is not None:
        if not isinstance(metadata, dict):
            raise InvalidParams("metadata", "must be a JSON object")
        options["metadata"] = plain_json("metadata", metadata, limit=MAX_METADATA_BYTES)
    return options


def _either(fields: dict[str, Any], short: str, full: str) -> Any:
    if fields.get(short) is not None and fields.get(full) is not None:
        raise InvalidParams(full, f"give {short} or {full}, not both")
    return fields.get(full) if fields.get(short) is None else fields[short]


def _oversized(raw: str) -> str | None:
    size = len(raw.rstrip("\r\n").encode())
    if size > MAX_ROW_BYTES:
        return f"row too large: {size:,} bytes; at most {MAX_ROW_BYTES:,} are allowed"
    return None


def _jsonl_records(text: str) -> Iterator[_Record]:
    # newline="" splits on \n, \r\n and \r only, as the CSV reader does; str.splitlines would
    # also split on characters a JSON string may hold raw, such as U+2028.
    for line, raw in enumerate(io.StringIO(text, newline=""), start=1):
        if not raw.strip():
            continue
        if too_big := _oversized(raw):
            yield line, {}, too_big
            continue
        try:
            value = _loads(raw.rstrip("\r\n"))  # so a column past the end is on this line
        except json.JSONDecodeError as error:
            yield line, {}, f"not valid JSON: {error.msg} at column {error.colno}"
        except ValueError as error:
            yield line, {}, f"not valid JSON: {error}"
        else:
            if isinstance(value, dict):
                yield line, value, None
            else:
                yield line, {}, f"not a JSON object but {type(value).__name__}"


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; no other JSON reader, the API included, does.
    raise ValueError(f"{name} is not allowed")


def _csv_records(text: str) -> Iterator[_Record]:
    names: list[str] | None = None
    for line, lines in _split_csv(text):
        problem = _oversized("".join(lines))
        try:
            cells = [] if problem else next(csv.reader(lines), [])
        except csv.Error as error:  # a cell over the csv module's field size limit
            cells, problem = [], f"not readable as CSV: {error}"
        if problem is None and not any(cell.strip() for cell in cells):
            continue  # a blank line, or a spreadsheet's row of empty cells
        if names is None:
            names = _header(line, cells, problem)
        elif problem is not None:
            yield line, {}, problem
        elif any(cell.strip() for cell in cells[len(names) :]):
            yield line, {}, f"{len(cells)} cells, but the header has {len(names)} columns"
        else:
            yield line, *_csv_fields(dict(zip(names, cells, strict=False)))


def _header(line: int, cells: list[str], problem: str | None) -> list[str]:
    if problem is not None:
        raise BulkFileError(f"line {line}: unreadable CSV header: {problem}")
    # An unnamed column still gets a name, so that a value under it is reported, not dropped.
    names = [cell.strip() or f"column {index}" for index, cell in enumerate(cells, start=1)]
    if missing := [name for name in REQUIRED if name not in names]:
        raise BulkFileError(
            f"line {line}: the CSV header lacks column(s) {', '.join(missing)}; it needs"
            f" {', '.join(REQUIRED)} and may have {', '.join(CSV_COLUMNS[3:])}"
        )
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise BulkFileError(f"line {line}: the CSV header repeats {', '.join(repeated)}")
    return names


def _csv_fields(cells: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    fields: dict[str, Any] = {}
    tagged: dict[str, str] = {}
    for name, cell in cells.items():
        if not cell.strip():
            continue  # an empty cell is an absent field
        # The prompt is kept exactly as written; any other cell is a token, trimmed.
        value = cell if name == "prompt" else cell.strip()
        if name.startswith("metadata.") and name != "metadata.":
            tagged[name.removeprefix("metadata.")] = value
        elif name in ("images", "reference_images"):
            fields[name] = [url for url in _IMAGE_SEPARATORS.split(value) if url]
        else:
            fields[name] = value
    if "metadata" in fields and tagged:
        return fields, "metadata: use the metadata column or metadata.KEY columns, not both"
    if tagged:
        fields["metadata"] = tagged
    elif "metadata" in fields:
        try:
            fields["metadata"] = _loads(fields["metadata"])
        except ValueError as error:
            return fields, f"metadata: the cell must hold a JSON object ({error})"
    return fields, None


def _split_csv(text: str) -> Iterator[tuple[int, list[str]]]:
    """Physical lines grouped into CSV records, each with the number of its first line.

    Grouped here, not by one `csv.reader` over the file, so that a record's size is known before
    it is parsed and a record the reader fails on cannot shift the ones after it. The rule is the
    csv module's default dialect: a quote opens a field only at the field's start, and "" inside
    a quoted field is a literal quote.
    """
    lines: list[str] = []
    start, quoted = 1, False
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        start = start if lines else number
        lines.append(line)
        can_open = not quoted
        for char in line if quoted or '"' in line else "":
            if quoted:  # a quote closes the field; a second one reopens it
                quoted, can_open = char != '"', char == '"'
            elif can_open and char == '"':
                quoted = True
            else:
                can_open = char == ","
        if not quoted:
            yield start, lines
            lines = []
    if lines:  # the file ended inside a quoted field: the reader takes the rest as its value
        yield start, lines
