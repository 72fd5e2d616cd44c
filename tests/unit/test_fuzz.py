"""Property tests at every boundary that takes outside input: each answers with a value or its
own error, never with a stray exception. The strategies here serve the other layers too: the
HTTP client against a server that answers anything (tests/http/test_fuzz_http.py), and the
producer and fault markers with a real Redis and worker (tests/e2e/test_fuzz_e2e.py).

The holes these tests first found (non-finite Retry-After and body codes, JSON nested past the
recursion limit, non-mapping extra params, credentials quoted in a URL error) each keep a
regression test next to the property they broke.
"""

from __future__ import annotations

import io
import json
import math
import socket
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imageq.producers.bulkfile import BulkFileError, parse_bulk, read_bulk_file
from imageq.worker.domain.params import (
    MAX_PROMPT_CHARS,
    QUALITIES,
    GenerationParams,
    validate_params,
)
from imageq.worker.domain.sizes import ASPECT_RATIOS, RESOLUTIONS, pixel_size
from imageq.worker.domain.status import RemoteStatus
from imageq.worker.errors import ApiError, InvalidParams, UnsafeTarget
from imageq.worker.upstream.responses import (
    RemoteTask,
    error_for_http,
    parse_retry_after,
    parse_task,
)
from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.guard import check_target

# No deadline anywhere: other suites share this machine, and a slow example is not a bug here.
PURE = settings(max_examples=100, deadline=None)
IO = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Python's json raises RecursionError from about 1,000 levels of nesting; the code does not
# catch it (see the regression tests), and the properties' JSON stays far shallower.
DEEP = 5_000

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

# -- strategies -------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.text()
ANY_FIELD = SCALARS | st.lists(SCALARS, max_size=12)
# RFC 8259 JSON: finite numbers only (a literal like 1e400 decodes to inf: see the regressions).
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=16,
)


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` seven times in ten, else `other`: keeps the well-formed path well explored."""
    return st.integers(0, 9).flatmap(lambda n: usual if n < 7 else other)


def spelled(value: str) -> st.SearchStrategy[str]:
    """`value` as a producer may type it: any case, spaces or a tab around it."""
    return st.sampled_from([value, value.lower(), value.upper(), f" {value}", f"{value}\t "])


def near(valid: Sequence[str]) -> st.SearchStrategy[object]:
    """A valid value, spelled loosely, or anything at all."""
    return st.sampled_from(valid).flatmap(spelled) | ANY_FIELD


SHORT_PROMPTS = (
    st.text()
    | st.sampled_from(["a castle", " ", "\u3000", "\n\t", "a\x00b", "x\x1b[0m", "a\r\nb", "a\x0bb"])
    | ANY_FIELD
)
LONG_PROMPTS = st.builds(
    lambda char, count: char * count,
    st.sampled_from(["x", " ", "\U0001f3f0"]),
    st.integers(MAX_PROMPT_CHARS - 5, MAX_PROMPT_CHARS + 5),
)
PROMPTS = SHORT_PROMPTS | LONG_PROMPTS
# Literal public addresses: enqueue resolves reference hosts (tests/e2e/test_fuzz_e2e.py), and
# a test asks no DNS server.
GOOD_IMAGES = st.sampled_from(
    [
        "https://93.184.216.34/a.png",
        "http://[2606:4700::1111]/a.png?sig=x",
        "data:image/png;base64,iVBORw0KGgo=",
        "DATA:IMAGE/WEBP;BASE64,AAAA",
    ]
) | st.from_regex(
    r"https?://[a-z0-9]{1,8}(\.[a-z]{2,4}){1,2}(/[a-z0-9._-]{0,8}){0,2}", fullmatch=True
)
IMAGE = (
    GOOD_IMAGES
    | st.sampled_from(
        [
            "data:image/png;base64,@@@",
            "data:text/plain;base64,aGk=",
            "ftp://example.com/a.png",
            "https://",
            "https://exa mple.com/a.png",
            "https://[::1/a.png",
        ]
    )
    | st.builds(lambda h: f"https://{h}/x.png", st.text())
    | SCALARS
)
REFERENCES = st.none() | st.lists(IMAGE, max_size=11) | st.tuples(IMAGE, IMAGE) | ANY_FIELD
OWN_FIELDS = ["prompt", "aspect_ratio", "resolution", "quality"]
EXTRA = st.none() | st.dictionaries(st.text() | st.sampled_from(OWN_FIELDS), JSON, max_size=4)
TABLED = [(r, res) for r in ASPECT_RATIOS for res in RESOLUTIONS if pixel_size(r, res)]
# What a field may hold when it is not taken from the valid set.
WILD: dict[str, st.SearchStrategy[Any]] = {
    "prompt": PROMPTS,
    "aspect_ratio": near(ASPECT_RATIOS),
    "resolution": near(RESOLUTIONS),
    "quality": near(QUALITIES),
    "reference_images": REFERENCES,
    "extra": EXTRA,
}


@st.composite
def param_calls(draw: st.DrawFn) -> dict[str, Any]:
    """A valid call with none, one or a few fields swapped for anything at all, so valid and
    refused calls both come up often."""
    ratio, resolution = draw(st.sampled_from(TABLED))
    call: dict[str, Any] = {
        "prompt": draw(st.text(min_size=1).filter(str.strip)),
        "aspect_ratio": draw(spelled(ratio)),
        "resolution": draw(spelled(resolution)),
        "quality": draw(st.sampled_from(QUALITIES).flatmap(spelled)),
        "reference_images": draw(st.none() | st.lists(GOOD_IMAGES, max_size=9)),
        "extra": draw(
            st.none() | st.dictionaries(st.sampled_from(["seed", "n"]), JSON, max_size=2)
        ),
    }
    for name in draw(st.sets(st.sampled_from(sorted(WILD)), max_size=3)):
        call[name] = draw(WILD[name])
    return call


PARAMS = param_calls()
# A valid value for each field, to check that the field an error names is really at fault.
VALID = {
    "prompt": "a castle",
    "aspect_ratio": "16:9",  # tabled at every resolution
    "resolution": "1K",
    "quality": "high",
    "reference_images": None,
}


def fix(call: dict[str, Any], named: str) -> dict[str, Any]:
    """The call with the named field (or one reference image) replaced by a valid value."""
    if named.startswith("reference_images["):
        images = list(call["reference_images"])
        images[int(named[len("reference_images[") : -1])] = "https://example.com/ok.png"
        return {**call, "reference_images": images}
    return {**call, named: VALID[named]}


def outcome(call: Callable[[], T], refusal: type[E]) -> T | E:
    """What `call` returns, or the `refusal` it raises; any other exception propagates."""
    try:
        return call()
    except refusal as caught:
        return caught


def check_params(call: dict[str, Any]) -> GenerationParams | InvalidParams:
    """Validate; on a refusal, check that the named field is the one at fault."""
    params = outcome(lambda: validate_params(**call), InvalidParams)
    if isinstance(params, InvalidParams):
        named = params.field
        clash = sorted(set(OWN_FIELDS) & set(call["extra"] or {}))
        if clash:
            assert named == clash[0]
            return params
        assert named in VALID or named.startswith("reference_images[")
        if named.startswith("reference_images["):
            assert 0 <= int(named[len("reference_images[") : -1]) < len(call["reference_images"])
        # Fixing only the named field silences that complaint (another may follow).
        after = outcome(lambda: validate_params(**fix(call, named)), InvalidParams)
        assert not isinstance(after, InvalidParams) or after.field != named, (params, after)
        return params
    assert pixel_size(params.aspect_ratio, params.resolution) is not None
    assert params.prompt.strip()
    assert len(params.prompt) <= MAX_PROMPT_CHARS
    assert not any(
        unicodedata.category(char) == "Cc" and char not in "\n\t\r" for char in params.prompt
    )
    assert params.quality in QUALITIES
    assert all(isinstance(image, str) for image in params.reference_images)
    assert len(params.reference_images) <= 9
    return params


# -- parameters -------------------------------------------------------------------------------


@PURE
@given(PARAMS)
def test_validate_params_returns_params_or_names_the_field(call: dict[str, Any]) -> None:
    """Any values in any field: valid, tabled params, or `InvalidParams` naming the culprit."""
    check_params(call)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(5),
        pytest.param("ab"),
        pytest.param([1, 2]),
        pytest.param(["pr", "qs"]),
    ],
)
def test_non_mapping_extra_is_refused_as_invalid_params(extra: object) -> None:
    """`extra` that is not a mapping is refused as InvalidParams, like every other field."""
    with pytest.raises(InvalidParams):
        validate_params("x", aspect_ratio="1:1", resolution="1K", extra=extra)  # type: ignore[arg-type]  # the bad value is the point


# -- API responses ----------------------------------------------------------------------------

STATUS_WORDS = st.sampled_from(["completed", "processing", "queued", "failed", "In Progress"])
URL_ITEMS = st.lists(GOOD_IMAGES | st.fixed_dictionaries({"url": GOOD_IMAGES | JSON}), max_size=3)
TASK_PARTS = {
    "out_task_id": st.text() | JSON,
    "output": URL_ITEMS | JSON,
    "data": URL_ITEMS | JSON,
    "images": URL_ITEMS | JSON,
    "image_url": GOOD_IMAGES | JSON,
    "result": st.fixed_dictionaries({"data": URL_ITEMS | JSON}) | JSON,
    "error": st.fixed_dictionaries({"message": JSON}) | JSON,
    "fail_reason": JSON,
}
# A task as documented (an id and a status word) with extras, or one with anything missing.
GOOD_TASK = st.fixed_dictionaries(
    {"task_id": st.text(min_size=1), "status": STATUS_WORDS | JSON}, optional=TASK_PARTS
)
TASK = mostly(
    GOOD_TASK,
    st.fixed_dictionaries(
        {},
        optional={
            "task_id": st.text() | JSON,
            "id": st.text() | JSON,
            "status": STATUS_WORDS | JSON,
            **TASK_PARTS,
        },
    ),
)
CODES = mostly(
    st.sampled_from([200, "200"]), st.sampled_from([400, 401, 404, 429, 500, 503, "x"]) | JSON
)
MESSAGE = st.sampled_from(["ok", "content policy violation", "rate limited"]) | JSON
MODEL_ENVELOPE = st.fixed_dictionaries(
    {"code": CODES, "data": mostly(st.lists(TASK, min_size=1, max_size=2), JSON)},
    optional={"message": MESSAGE, "msg": MESSAGE},
)
PLATFORM_ENVELOPE = st.fixed_dictionaries(
    {"statusCode": CODES, "data": mostly(TASK, JSON)},
    optional={"message": MESSAGE, "error": st.fixed_dictionaries({"message": MESSAGE})},
)
BODIES = mostly(MODEL_ENVELOPE | PLATFORM_ENVELOPE, JSON)


@PURE
@given(BODIES)
def test_parse_task_returns_a_task_or_an_api_error(body: object) -> None:
    """Any decoded JSON: a `RemoteTask` with a task id, or an `ApiError`; nothing else."""
    task = outcome(lambda: parse_task(body), ApiError)
    if isinstance(task, ApiError):
        assert isinstance(task.retryable, bool)
        return
    assert isinstance(task, RemoteTask)
    assert isinstance(task.task_id, str)
    assert task.task_id
    assert isinstance(task.status, RemoteStatus)
    assert all(isinstance(url, str) for url in task.output_urls)


def test_parse_task_with_an_infinite_code_is_an_api_error() -> None:
    """`{"code": 1e400}` (valid JSON, decoded as inf) is an unreadable code: an ApiError."""
    with pytest.raises(ApiError):
        parse_task(json.loads('{"code": 1e400, "data": []}'))


RETRYABLE = {408, 425, 429}


@PURE
@given(
    st.integers(100, 599),
    st.text() | BODIES.map(json.dumps),
    st.dictionaries(st.sampled_from(["Retry-After", "Content-Type"]), st.text(), max_size=2),
)
def test_error_for_http_is_retryable_exactly_for_transient_statuses(
    status: int, text: str, headers: dict[str, str]
) -> None:
    """Any status and body: an ApiError, retryable exactly for 408, 425, 429 and 5xx."""
    error = error_for_http(status, text, headers)
    assert isinstance(error, ApiError)
    assert error.http_status == status
    assert error.retryable is (status in RETRYABLE or status >= 500)


def test_error_for_http_survives_deeply_nested_json() -> None:
    """A deeply nested body is just an unreadable body."""
    assert error_for_http(502, "[" * DEEP, {}).retryable


@pytest.mark.parametrize("value", ["inf", "1e400", "Infinity"])
def test_retry_after_is_finite_or_ignored(value: str) -> None:
    """A Retry-After that is not delay-seconds or a date is ignored, never an infinite wait."""
    seconds = parse_retry_after(value)
    assert seconds is None or math.isfinite(seconds)


# -- webhook targets --------------------------------------------------------------------------

PUBLIC = "93.184.216.34"
HOSTS = mostly(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True)
    | st.sampled_from(["example.com", "EXAMPLE.com.", "metadata", "localhost"]),
    st.text()
    | st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip))
    | st.sampled_from(["[::1", "0x7f.1", "2130706433", "xn--", "a..b", "exa\uff0fmple.com"]),
)
URLS = mostly(
    st.builds(
        lambda scheme, userinfo, host, port, path: f"{scheme}://{userinfo}{host}{port}{path}",
        mostly(st.sampled_from(["http", "https", "HTTPS"]), st.sampled_from(["ftp", "", "file"])),
        st.sampled_from(["", "", "user@", "user:pw@", "@"]),
        HOSTS,
        st.sampled_from(["", "", ":443", ":0", ":99999", ":x"]),
        st.text(max_size=10),
    ),
    st.text(),
)
ANSWERS = mostly(
    st.just(PUBLIC), st.none() | st.ip_addresses().map(str) | st.just("not-an-address")
)


def fake_resolver(answer: str | None) -> Any:
    """`getaddrinfo` for one address (or a gaierror), encoding the host as it would."""

    def resolve(host: str, port: int | None) -> list[tuple[int, int, int, str, tuple[Any, ...]]]:
        host.encode("idna")  # what getaddrinfo does first; raises UnicodeError on bad labels
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        family = socket.AF_INET6 if ":" in answer else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (answer, 0))]

    return resolve


@PURE
@given(URLS, st.booleans(), ANSWERS)
def test_webhook_target_is_accepted_or_unsafe(
    url: str, allow_loopback: bool, answer: str | None
) -> None:
    """Any URL, any DNS answer: None (an http(s) host resolved) or `UnsafeTarget`."""
    policy = TargetPolicy(allow_loopback=allow_loopback)
    try:
        check_target(url, policy, resolve=fake_resolver(answer))
    except UnsafeTarget:
        return
    assert answer is not None
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https")
    assert parts.hostname


def test_unsafe_target_message_never_quotes_credentials() -> None:
    """The message names the host at most, never the URL's password."""
    url = "https://hook:s3cr3t-token@example\uff0fcom/hooks"
    with pytest.raises(UnsafeTarget) as caught:
        check_target(url, TargetPolicy(), resolve=fake_resolver(PUBLIC))
    assert "s3cr3t-token" not in str(caught.value)


# -- bulk files -------------------------------------------------------------------------------


def bulk_row(call: dict[str, Any], others: dict[str, Any]) -> dict[str, Any]:
    """A parameter call as a bulk file's row, with other row fields (some unknown)."""
    row = {**call, "images": call["reference_images"], "params": call["extra"], **others}
    del row["reference_images"], row["extra"]
    return {name: value for name, value in row.items() if value is not None}


JSONL_ROW = st.builds(
    bulk_row,
    param_calls(),
    st.fixed_dictionaries(
        {},
        optional={
            "webhook": st.sampled_from(["https://example.com/h", ""]) | JSON,
            "job_id": st.sampled_from(["job-1", "job-2", "bad id"]) | JSON,
            "metadata": st.dictionaries(st.text(), JSON, max_size=2) | JSON,
            "surprise": JSON,
        },
    ),
)
JSONL_TEXT = st.lists(
    JSONL_ROW.map(json.dumps) | JSON.map(json.dumps) | st.text(max_size=30),
    max_size=4,
).flatmap(lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda end: end.join(lines)))
ANY_CELL = st.text(max_size=12) | st.sampled_from(["", " ", '{"a": 1}', "[1]", "job 1"])
# Likely cells per column, so that rows are often valid.
CELLS = {
    "prompt": st.sampled_from(["a castle", "two cats, one hat", '"quoted"', "line\nbreak"]),
    "aspect_ratio": st.sampled_from(["1:1", "16:9", " 4:5 "]),
    "resolution": st.sampled_from(["1K", "2k", "1K", "4K"]),
    "quality": st.sampled_from(QUALITIES),
    "images": st.lists(GOOD_IMAGES, max_size=3).map(" | ".join),
    "job_id": st.sampled_from(["job-1", "job-2"]),
    "metadata": st.sampled_from(['{"order": 1}', "{}"]),
    "metadata.order": st.sampled_from(["7", "x"]),
}


def csv_cell(text: str) -> str:
    needs_quotes = any(char in text for char in ',"\n\r')
    return '"' + text.replace('"', '""') + '"' if needs_quotes else text


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    """A header (the required columns usually there, in any order) and rows of likely or
    arbitrary cells, sometimes too many or too few."""
    required = draw(
        mostly(st.just(["prompt", "aspect_ratio", "resolution"]), st.sampled_from([["prompt"], []]))
    )
    optional = draw(
        mostly(
            st.lists(st.sampled_from(["quality", "images", "job_id", "metadata"]), unique=True),
            st.lists(st.sampled_from([*CELLS, "webhook", "params", ""]), max_size=3),
        )
    )
    header = draw(st.permutations(required + optional))
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        cells = [draw(mostly(CELLS.get(name, ANY_CELL), ANY_CELL)) for name in header]
        cells += draw(mostly(st.just([]), st.lists(ANY_CELL, max_size=1)))
        rows.append(",".join(csv_cell(cell) for cell in cells))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end.join([",".join(header), *rows])


CSV_TEXT = csv_texts()


def line_count(text: str) -> int:
    """Physical lines as the bulk reader counts them (\\n, \\r\\n and \\r end a line)."""
    return len(io.StringIO(text.removeprefix("\ufeff"), newline="").readlines())


@PURE
@given(st.text() | JSONL_TEXT | CSV_TEXT, st.sampled_from(["jsonl", "csv"]))
def test_parse_bulk_reports_rows_within_the_file(text: str, fmt: Any) -> None:
    """Any text: rows and row errors in file order on real lines, or a `BulkFileError`."""
    try:
        rows, errors = parse_bulk(text, fmt=fmt)
    except BulkFileError:
        assert fmt == "csv"  # only a CSV header can fault the whole file
        return
    lines = line_count(text)
    row_lines = [row.line for row in rows]
    error_lines = [error.line for error in errors]
    assert all(1 <= line <= lines for line in row_lines + error_lines)
    assert row_lines == sorted(set(row_lines))
    assert error_lines == sorted(set(error_lines))
    assert not set(row_lines) & set(error_lines)
    for row in rows:
        assert row.options["aspect_ratio"] in ASPECT_RATIOS


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("[" * DEEP, "jsonl"),
        ('{"prompt": "x", "metadata": ' + "[" * DEEP + "}", "jsonl"),
        ("prompt,aspect_ratio,resolution,metadata\nx,1:1,1K," + "[" * DEEP, "csv"),
    ],
    ids=["jsonl-line", "jsonl-field", "csv-metadata"],
)
def test_deeply_nested_json_is_a_row_error(text: str, fmt: Any) -> None:
    """A row whose JSON nests too deep is refused as that row, the rest still read."""
    rows, errors = parse_bulk(text, fmt=fmt)
    assert not rows
    assert [error.line for error in errors] == [text.count("\n") + 1]


@pytest.fixture(scope="module")
def bulk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bulk")


@PURE
@given(
    st.binary(max_size=200)
    | st.builds(lambda t, junk: t.encode() + junk, JSONL_TEXT | CSV_TEXT, st.binary(max_size=4))
    | (JSONL_TEXT | CSV_TEXT).map(lambda t: b"\xef\xbb\xbf" + t.encode()),
    st.sampled_from([".jsonl", ".csv", ".txt"]),
)
def test_read_bulk_file_refuses_only_non_utf8_or_a_bad_header(
    bulk_dir: Path, data: bytes, suffix: str
) -> None:
    """Random bytes: not UTF-8 is a `BulkFileError` at the first bad byte; else it parses."""
    path = bulk_dir / f"rows{suffix}"
    path.write_bytes(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        with pytest.raises(BulkFileError) as caught:
            read_bulk_file(path)
        offset = caught.value.offset
        assert offset is not None
        data[:offset].decode("utf-8-sig")  # everything before the reported byte is fine
        with pytest.raises(UnicodeDecodeError):
            data[offset : offset + 4].decode("utf-8")
        return
    parsed = outcome(lambda: read_bulk_file(path), BulkFileError)
    if isinstance(parsed, BulkFileError):
        assert parsed.offset is None  # a header fault, not an encoding one
        return
    rows, errors = parsed
    lines = [row.line for row in rows] + [error.line for error in errors]
    assert all(1 <= line <= line_count(text) for line in lines)
