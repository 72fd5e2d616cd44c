"""Bulk files: one generation job per JSONL line or CSV record, checked before anything is queued.

`parse_bulk` is pure. It never stops at a bad row: every row becomes either a `BulkRow` (keyword
arguments for `ImageQueue.enqueue`, already through `validate_params`) or a `RowError` naming its
line and what is wrong. Only problems with the file as a whole (not UTF-8, a CSV header without
the required columns) raise `BulkFileError`, since no row could be read correctly after them.
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

from producers.jobs import MAX_METADATA_BYTES, check_job_id, plain_json
from worker.errors import ImageqError, InvalidParams
from worker.params import DEFAULT_QUALITY, validate_params
from worker.sizes import ASPECT_RATIOS, RESOLUTIONS

BulkFormat = Literal["jsonl", "csv"]

MAX_ROW_BYTES: Final = 256 * 1024
REQUIRED: Final = ("prompt", "aspect_ratio", "resolution")
JSONL_FIELDS: Final = (
    *REQUIRED,
    *("quality", "images", "reference_images", "webhook", "webhook_url", "job_id", "metadata"),
    "params",
)
# Extra API params are nested objects, which a CSV cell cannot hold readably: JSONL only.
CSV_COLUMNS: Final = JSONL_FIELDS[:-1]
_METADATA_PREFIX: Final = "metadata."
_SUFFIXES: Final[dict[str, BulkFormat]] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_IMAGE_SEPARATORS = re.compile(r"[\s|]+")

# What the format readers hand on: the line a row starts on, its fields by name (as much as
# could be read), and the reason it cannot be used, if the format itself already refused it.
_Record = tuple[int, dict[str, Any], str | None]


class BulkFileError(ImageqError):
    """The file as a whole cannot be read; `offset` is the bad byte's, for encoding errors."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class BulkRow:
    """A valid row: `options` are keyword arguments for `ImageQueue.enqueue`."""

    line: int
    options: dict[str, Any]


@dataclass(frozen=True)
class RowError:
    """A refused row: its first line (1-based) and why, as "field: what is wrong"."""

    line: int
    reason: str


def read_bulk_file(
    path: Path, *, fmt: BulkFormat | None = None
) -> tuple[list[BulkRow], list[RowError]]:
    """Read and parse a UTF-8 bulk file (BOM allowed); the format comes from the extension,
    else from the content. Raises `BulkFileError` if it is not UTF-8, `OSError` if unreadable.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # The codec counts from after the BOM it skipped; report the offset in the file.
        offset = error.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise BulkFileError(
            f"{path} is not UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line {line})",
            offset=offset,
        ) from None
    return parse_bulk(text, fmt=fmt or _SUFFIXES.get(path.suffix.lower()) or _sniff(text))


def parse_bulk(text: str, *, fmt: BulkFormat) -> tuple[list[BulkRow], list[RowError]]:
    """Split a bulk file's text into valid rows and refused ones, both in file order.

    Blank lines are skipped; a file with no rows gives ([], []).
    """
    text = text.removeprefix("\ufeff")
    if fmt == "jsonl":
        return _check(_jsonl_records(text), JSONL_FIELDS, noun="field")
    if fmt == "csv":
        return _check(_csv_records(text), CSV_COLUMNS, noun="column")
    raise ValueError(f"unknown bulk format {fmt!r}: expected jsonl or csv")


def _sniff(text: str) -> BulkFormat:
    return "jsonl" if text.lstrip("\ufeff \t\r\n").startswith("{") else "csv"


def _check(
    records: Iterator[_Record], allowed: tuple[str, ...], *, noun: str
) -> tuple[list[BulkRow], list[RowError]]:
    rows: list[BulkRow] = []
    errors: list[RowError] = []
    first_use: dict[str, int] = {}
    for line, fields, problem in records:
        # Any readable id claims its first line, even on a refused row: were the later row
        # queued, the first one, once fixed, would silently get the other row's job back.
        job_id = fields.get("job_id")
        first = first_use.setdefault(job_id, line) if isinstance(job_id, str) else line
        try:
            if problem is None:
                options = _options(fields, allowed, noun=noun)
            if first != line:
                raise InvalidParams("job_id", f"{job_id!r} already used on line {first}")
        except InvalidParams as error:
            problem = problem or str(error)
        if problem is None:
            rows.append(BulkRow(line, options))
        else:
            errors.append(RowError(line, problem))
    return rows, errors


def _options(fields: dict[str, Any], allowed: tuple[str, ...], *, noun: str) -> dict[str, Any]:
    """A row's fields as `enqueue` keyword arguments; raises `InvalidParams` on the first fault."""
    unknown = [name for name in fields if name not in allowed]
    if unknown:
        allowed_text = ", ".join(allowed) + (", metadata.KEY" if noun == "column" else "")
        raise InvalidParams(", ".join(unknown), f"unknown {noun}; allowed: {allowed_text}")
    for name, wanted in zip(
        REQUIRED, ("a non-blank text", ASPECT_RATIOS, RESOLUTIONS), strict=True
    ):
        if fields.get(name) is None:
            raise InvalidParams(
                name, f"required: {wanted if isinstance(wanted, str) else ', '.join(wanted)}"
            )
    extra, quality = fields.get("params"), fields.get("quality")
    if extra is not None and not isinstance(extra, dict):
        raise InvalidParams("params", "must be a JSON object of extra API params")
    params = validate_params(
        fields["prompt"],
        aspect_ratio=fields["aspect_ratio"],
        resolution=fields["resolution"],
        quality=DEFAULT_QUALITY if quality is None else quality,
        reference_images=_either(fields, "images", "reference_images"),
        extra=extra,
    )
    options: dict[str, Any] = {
        "prompt": params.prompt,
        "aspect_ratio": params.aspect_ratio,
        "resolution": params.resolution,
        "quality": params.quality,
    }
    if params.reference_images:
        options["reference_images"] = list(params.reference_images)
    if params.extra:
        options["extra_params"] = dict(params.extra)
    if (job_id := fields.get("job_id")) is not None:
        options["job_id"] = check_job_id(job_id)
    # Only the shape is checked here: whether imageq may call the host is enqueue's check,
    # which needs the settings and a DNS lookup.
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
            value = _loads(raw)
        except json.JSONDecodeError as error:
            yield line, {}, f"not valid JSON: {error.msg} at column {error.colno}"
        except ValueError as error:
            yield line, {}, f"not valid JSON: {error}"
        else:
            if isinstance(value, dict):
                yield line, value, None
            else:
                yield line, {}, f"the line must hold a JSON object, not {type(value).__name__}"


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; no other JSON reader, the API included, does.
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key would otherwise keep only its last value, silently.
    keys = [key for key, _ in pairs]
    if len(set(keys)) < len(keys):
        raise ValueError(f"key {next(key for key in keys if keys.count(key) > 1)!r} repeated")
    return dict(pairs)


def _csv_records(text: str) -> Iterator[_Record]:
    """The records after the header; raises `BulkFileError` for a bad header."""
    names: list[str] | None = None
    for line, lines in _split_csv(text):
        if not "".join(lines).strip():
            continue
        if names is None:
            names = _header(line, lines)
        elif too_big := _oversized("".join(lines)):
            yield line, {}, too_big
        else:
            try:
                cells = next(csv.reader(lines), [])
            except csv.Error as error:  # a cell over the csv module's field size limit
                yield line, {}, f"not readable as CSV: {error}"
                continue
            if any(cell.strip() for cell in cells[len(names) :]):
                yield line, {}, f"{len(cells)} cells, but the header has {len(names)} columns"
            else:
                yield line, *_csv_fields(dict(zip(names, cells, strict=False)))


def _header(line: int, lines: list[str]) -> list[str]:
    try:
        cells = next(csv.reader(lines), [])
    except csv.Error as error:
        raise BulkFileError(f"line {line}: the CSV header is not readable: {error}") from None
    # An unnamed column still gets a name, so a value under it is reported, not dropped.
    names = [cell.strip() or f"column {index}" for index, cell in enumerate(cells, start=1)]
    missing = [name for name in REQUIRED if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    faults = [f"lacks column(s) {', '.join(missing)}"] if missing else []
    faults += [f"repeats column(s) {', '.join(repeated)}"] if repeated else []
    if faults:
        raise BulkFileError(
            f"line {line}: the CSV header {' and '.join(faults)}; it needs"
            f" {', '.join(REQUIRED)} and may have {', '.join(CSV_COLUMNS[3:])}, metadata.KEY"
        )
    return names


def _csv_fields(cells: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    fields: dict[str, Any] = {}
    tagged: dict[str, str] = {}
    for name, cell in cells.items():
        if not cell.strip():
            continue  # an empty cell is an absent field
        # The prompt is the user's text, kept exactly; every other cell is a token.
        value = cell if name == "prompt" else cell.strip()
        if name.startswith(_METADATA_PREFIX) and name != _METADATA_PREFIX:
            tagged[name.removeprefix(_METADATA_PREFIX)] = value
        else:
            fields[name] = value
    for name in ("images", "reference_images"):
        if name in fields:
            fields[name] = _IMAGE_SEPARATORS.split(fields[name])
    if "metadata" in fields and tagged:
        return fields, "metadata: use the metadata column or metadata.KEY columns, not both"
    if "metadata" in fields:
        try:
            fields["metadata"] = _loads(fields["metadata"])
        except ValueError as error:
            return fields, f"metadata: the cell must hold a JSON object ({error})"
    elif tagged:
        fields["metadata"] = tagged
    return fields, None


def _split_csv(text: str) -> Iterator[tuple[int, list[str]]]:
    """Physical lines grouped into CSV records, each with the number of its first line.

    Grouped here, not by one `csv.reader` over the file, so that a record's size is known before
    it is parsed, and a record the reader fails on cannot shift the records after it.
    """
    start, quoted, lines = 1, False, []
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        start = start if lines else number
        lines.append(line)
        quoted = _ends_quoted(line, quoted)
        if not quoted:
            yield start, lines
            lines = []
    if lines:
        yield start, lines


def _ends_quoted(line: str, quoted: bool) -> bool:
    """Whether a line ends inside a quoted field, read as the csv module's default dialect does:
    a quote opens a field only at its start, and "" inside a quoted field is a literal quote.
    """
    if not quoted and '"' not in line:
        return False
    can_open = not quoted
    for char in line:
        if quoted:
            # A quote leaves the field, unless the next character is a quote, reopening it.
            quoted, can_open = char != '"', char == '"'
        elif can_open and char == '"':
            quoted = True
        else:
            can_open = char == ","
    return quoted
