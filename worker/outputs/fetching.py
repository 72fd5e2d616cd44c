"""Saving one output before its URL expires: fetch it, check it is the image asked for, store it.

Every failure is a `DownloadFailed` saying whether another attempt can help. URLs appear in
messages without their query string, since signed CDN URLs carry their token there.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from io import BytesIO
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

import urllib3
from PIL import Image
from urllib3.exceptions import HTTPError, LocationValueError

from imageq.worker.domain.sizes import Size
from imageq.worker.errors import DownloadFailed, UnsafeTarget
from imageq.worker.outputs.storage import Storage
from imageq.worker.webhooks.outbound import OutboundClient, error_name

EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_PILLOW_FORMATS: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# 4K output is 8.3 MP; anything past this is not one of ours, and refusing it keeps a forged
# header from making anyone allocate gigabytes later.
MAX_PIXELS: Final = 50_000_000
MAX_REDIRECTS: Final = 3
# 404 is retryable because CDNs often lag a moment behind the API's "completed"; the caller
# caps the attempts, so a file that is really gone costs only a few tries.
_RETRYABLE_STATUSES: Final = frozenset({404, 408, 425, 429})
_READ_BYTES: Final = 64 * 1024
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class DownloadLimits:
    """Bounds on one download; `total_timeout_s` covers redirects, headers and body together."""

    max_bytes: int
    connect_timeout_s: float
    read_timeout_s: float
    total_timeout_s: float


@dataclass(frozen=True)
class SavedImage:
    """One output as stored: where, how big, its digest, what it turned out to be, and the
    http(s) URL that serves it when the storage has a public base URL."""

    location: str
    bytes: int
    sha256: str
    content_type: str
    width: int
    height: int
    url: str | None = None

    def to_record(self) -> dict[str, object]:
        """Plain JSON for the job record and the completion payload: the fields, by name; `url`
        only when there is one (it is an optional field of the payload)."""
        record = asdict(self)
        if record["url"] is None:
            del record["url"]
        return record


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe to log and to put in messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def output_key(*, finished_at: float, job_id: str, index: int, extension: str) -> str:
    """`{UTC date of finished_at}/{job_id}/{index}.{extension}`; ValueError for an unsafe job id."""
    if job_id in ("", ".", "..") or "/" in job_id or "\\" in job_id or index < 0:
        raise ValueError(f"cannot build a storage key from job {job_id!r}, output {index}")
    day = datetime.fromtimestamp(finished_at, UTC).strftime("%Y-%m-%d")
    return f"{day}/{job_id}/{index}.{extension}"


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP error status may go away on a later attempt."""
    return status in _RETRYABLE_STATUSES or status >= 500


def inspect_image(data: bytes) -> tuple[str, int, int]:
    """(content type, width, height) read from the header alone; the pixels are not decoded.

    Raises a final DownloadFailed for anything but a PNG, JPEG or WebP of at most MAX_PIXELS.
    """
    try:
        # Pillow warns (or raises, far past its limit) about huge headers. The filter change is
        # process-wide and racy across threads, but harmless: this code refuses those anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data), formats=tuple(_PILLOW_FORMATS)) as image:
                pillow_format, (width, height) = image.format, image.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DownloadFailed("image header claims too many pixels", retryable=False) from None
    # UnidentifiedImageError is an OSError; plugins raise the others on malformed headers.
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = f"body is not a PNG, JPEG or WebP image ({type(error).__name__})"
        raise DownloadFailed(message, retryable=False) from None
    if width * height > MAX_PIXELS:
        message = f"image is {width}x{height}, over the {MAX_PIXELS} pixel limit"
        raise DownloadFailed(message, retryable=False)
    return _PILLOW_FORMATS[pillow_format or ""], width, height


def fetch_image(
    client: OutboundClient,
    url: str,
    *,
    max_bytes: int,
    connect_timeout_s: float,
    read_timeout_s: float,
    total_timeout_s: float,
) -> tuple[bytes, str]:
    """GET an image, following at most MAX_REDIRECTS redirects: (body, Content-Type media type).

    Retryable: connection errors, timeouts, 404/408/425/429 and 5xx. Final: other statuses, a
    Content-Type that is not image/*, a body over `max_bytes`, too many redirects, a URL or a
    hop to an address the client's guard refuses (`webhooks.outbound`). A stalled read is cut
    by `read_timeout_s`, the whole download by `total_timeout_s`.
    """
    deadline = time.monotonic() + total_timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        remaining_s = _remaining_s(deadline, url)
        timeout = urllib3.Timeout(
            connect=min(connect_timeout_s, remaining_s), read=min(read_timeout_s, remaining_s)
        )
        response = _get(client, url, timeout=timeout)
        try:
            target = redirect_target(response.status, response.headers.get("Location"))
            if target is None:
                media_type = _check_response(response, url, max_bytes=max_bytes)
                return _read_body(response, url, max_bytes=max_bytes, deadline=deadline), media_type
        finally:
            # Unread or read: the connection is closed, never handed back half-read.
            response.close()
            response.release_conn()
        url = urljoin(url, target)
    message = f"GET {redact_url(url)}: more than {MAX_REDIRECTS} redirects"
    raise DownloadFailed(message, retryable=False, http_status=response.status)


def redirect_target(status: int, location: str | None) -> str | None:
    """Where a redirect answer points (relative or not), else None: a 301, 302, 303, 307 or
    308 with a Location. The header comes decoded as Latin-1; it is read back as the UTF-8 a
    server sends."""
    if status not in _REDIRECT_STATUSES or location is None:
        return None
    try:
        return location.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return location


def save_output(
    storage: Storage,
    client: OutboundClient,
    *,
    url: str,
    job_id: str,
    index: int,
    finished_at: float,
    expected_size: Size | None,
    limits: DownloadLimits,
) -> SavedImage:
    """Fetch output `index` of a job, check it, and store it; nothing is stored on failure.

    The format Pillow reads wins over the Content-Type header, for the extension and the record.
    """
    body, _ = fetch_image(
        client,
        url,
        max_bytes=limits.max_bytes,
        connect_timeout_s=limits.connect_timeout_s,
        read_timeout_s=limits.read_timeout_s,
        total_timeout_s=limits.total_timeout_s,
    )
    content_type, width, height = inspect_image(body)
    if expected_size is not None and (width, height) != tuple(expected_size):
        wanted_w, wanted_h = expected_size
        message = f"{redact_url(url)}: image is {width}x{height}, expected {wanted_w}x{wanted_h}"
        raise DownloadFailed(message, retryable=False)
    extension = EXTENSIONS[content_type]
    key = output_key(finished_at=finished_at, job_id=job_id, index=index, extension=extension)
    try:
        location = storage.save(key, body, content_type=content_type)
    except OSError as error:
        message = f"storing {key} failed: {type(error).__name__} {error.strerror or ''}".strip()
        raise DownloadFailed(message, retryable=True) from None
    sha256 = hashlib.sha256(body).hexdigest()
    public_url = storage.public_url(key)
    return SavedImage(location, len(body), sha256, content_type, width, height, public_url)


def _get(client: OutboundClient, url: str, *, timeout: urllib3.Timeout) -> urllib3.BaseHTTPResponse:
    # The client never holds the API key: output URLs are public or signed.
    headers = {"Accept": "image/png, image/jpeg, image/webp, image/*"}
    try:
        return client.request("GET", url, headers=headers, timeout=timeout)
    # The guard checks the URL, and each hop's address before connecting; a refusal is final.
    except UnsafeTarget as error:
        raise DownloadFailed(f"GET {redact_url(url)}: {error}", retryable=False) from None
    # A URL urllib3 cannot parse is final; every other failure to get an answer may pass.
    # `from None`: urllib3's exceptions spell out the full URL, query and token included.
    except HTTPError as error:
        retryable = not isinstance(error, LocationValueError)
        message = f"GET {redact_url(url)}: {error_name(error)}"
        raise DownloadFailed(message, retryable=retryable) from None


def _remaining_s(deadline: float, url: str) -> float:
    remaining_s = deadline - time.monotonic()
    if remaining_s <= 0:
        raise DownloadFailed(f"GET {redact_url(url)}: total timeout", retryable=True)
    return remaining_s


def _check_response(response: urllib3.BaseHTTPResponse, url: str, *, max_bytes: int) -> str:
    """The response's media type, once its status, type and length are acceptable."""
    status, where = response.status, f"GET {redact_url(url)}"
    if status != 200:
        retryable = is_retryable_status(status)
        raise DownloadFailed(f"{where}: HTTP {status}", retryable=retryable, http_status=status)
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not media_type.startswith("image/"):
        message = f"{where}: Content-Type {media_type or 'missing'!r} is not an image"
        raise DownloadFailed(message, retryable=False, http_status=status)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        message = f"{where}: Content-Length {declared} exceeds max_bytes={max_bytes}"
        raise DownloadFailed(message, retryable=False, http_status=status)
    return media_type


def _read_body(
    response: urllib3.BaseHTTPResponse, url: str, *, max_bytes: int, deadline: float
) -> bytes:
    body = bytearray()
    try:
        # read1 returns whatever has arrived, so a trickling server cannot hold one call for
        # longer than the read timeout and the deadline is checked between reads.
        while chunk := response.read1(_READ_BYTES, decode_content=True):
            body += chunk
            if len(body) > max_bytes:
                message = f"GET {redact_url(url)}: body exceeds max_bytes={max_bytes}"
                raise DownloadFailed(message, retryable=False, http_status=response.status)
            _remaining_s(deadline, url)
    except (HTTPError, OSError) as error:
        message = f"GET {redact_url(url)}: reading the body failed ({type(error).__name__})"
        raise DownloadFailed(message, retryable=True, http_status=response.status) from None
    return bytes(body)
