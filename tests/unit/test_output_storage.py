"""Saved outputs without a server: which statuses are retryable, reading an image's type and
size, storage keys and redacted URLs, and the local and fsspec (memory://, file://) storages.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import fsspec
import pytest
from PIL import Image

from imageq.worker.errors import DownloadFailed
from imageq.worker.outputs.fetching import (
    inspect_image,
    is_retryable_status,
    output_key,
    redact_url,
    redirect_target,
)
from imageq.worker.outputs.storage import FsspecStorage, LocalStorage, mask_userinfo, open_storage

FINISHED_AT = 1795737599.0  # 2026-11-26 23:59:59 UTC


def encode(image_format: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, (200, 80, 20)).save(buffer, format=image_format)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` but carries no pixels: only its header is read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


PNG = encode("PNG")


def fail(call: Callable[[], object]) -> DownloadFailed:
    with pytest.raises(DownloadFailed) as caught:
        call()
    return caught.value


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *[(status, True) for status in (404, 408, 425, 429, 500, 504)],
        *[(status, False) for status in (400, 401, 403, 410, 451)],
    ],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    """Transient statuses are retryable, other client errors final."""
    assert is_retryable_status(status) is retryable


# --- inspecting images --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (encode("PNG", (3, 2)), ("image/png", 3, 2)),
        (encode("JPEG", (5, 4)), ("image/jpeg", 5, 4)),
        (encode("WEBP", (7, 6)), ("image/webp", 7, 6)),
        (png_header(3840, 2160), ("image/png", 3840, 2160)),
    ],
)
def test_inspect_reads_type_and_size(data: bytes, expected: tuple[str, int, int]) -> None:
    """Type and size come from the header; a 4K header needs no pixels behind it."""
    assert inspect_image(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a" + bytes(20),
        encode("GIF"),
        PNG[:20],
        png_header(8000, 7000),  # 56 MP: under Pillow's own limit, over ours
        png_header(10000, 10000),  # 100 MP: Pillow's decompression-bomb warning
        png_header(40000, 40000),  # 1.6 GP: Pillow's decompression-bomb error
    ],
    ids=["empty", "gif-magic", "gif", "truncated", "56MP", "100MP", "1.6GP"],
)
def test_inspect_refuses_non_images_and_huge_headers(data: bytes) -> None:
    """Anything but a PNG, JPEG or WebP within MAX_PIXELS is final, and no warning escapes."""
    error = fail(lambda: inspect_image(data))
    assert not error.retryable


# --- keys and URLs ------------------------------------------------------------------------------


def test_output_key_uses_the_utc_date() -> None:
    """The date is finished_at's in UTC, whatever the local timezone."""
    key = output_key(finished_at=FINISHED_AT, job_id="job1", index=0, extension="png")
    assert key == "2026-11-26/job1/0.png"
    assert output_key(finished_at=FINISHED_AT + 1, job_id="j", index=2, extension="jpg") == (
        "2026-11-27/j/2.jpg"
    )


@pytest.mark.parametrize("job_id", ["", ".", "..", "a/b", "a\\b"])
def test_output_key_refuses_unsafe_job_ids(job_id: str) -> None:
    """A job id is one path segment."""
    with pytest.raises(ValueError, match="storage key"):
        output_key(finished_at=FINISHED_AT, job_id=job_id, index=0, extension="png")


def test_redact_url_drops_credentials_and_query() -> None:
    """What may be logged: scheme, host and path."""
    url = "https://u:p@cdn.example/a/0.png?X-Amz-Signature=abc#f"
    assert redact_url(url) == "https://cdn.example/a/0.png"


# --- storages -----------------------------------------------------------------------------------


def test_local_storage_writes_atomically_and_overwrites(tmp_path: Path) -> None:
    """The file appears whole, replaces an older one, and no temporary file is left."""
    storage = LocalStorage(tmp_path / "root")
    first = storage.save("d/job/0.png", b"old", content_type="image/png")
    second = storage.save("d/job/0.png", b"new", content_type="image/png")
    assert first == second == str((tmp_path / "root/d/job/0.png").resolve())
    assert Path(second).read_bytes() == b"new"
    assert stored_files(tmp_path) == [Path(second)]


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../../x", "a/./b", "a//b", "", "a/"])
def test_local_storage_refuses_keys_leaving_the_root(tmp_path: Path, key: str) -> None:
    """Absolute keys, `..` and empty segments are refused before anything is written."""
    with pytest.raises(ValueError, match="storage key"):
        LocalStorage(tmp_path / "root").save(key, b"x", content_type="image/png")
    assert stored_files(tmp_path) == []


def test_local_storage_refuses_a_symlink_out(tmp_path: Path) -> None:
    """A directory link inside the root does not lead writes outside it."""
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "root" / "link")
    with pytest.raises(ValueError, match="outside"):
        LocalStorage(tmp_path / "root").save("link/x.png", b"x", content_type="image/png")
    assert list((tmp_path / "outside").iterdir()) == []


def test_fsspec_storage_round_trips_on_memory(bucket: str) -> None:
    """Bytes stored under memory:// read back the same, at the returned URL."""
    storage = FsspecStorage(f"memory://{bucket}/prefix/")
    location = storage.save("2026-11-26/job1/0.png", PNG, content_type="image/png")
    assert location == f"memory://{bucket}/prefix/2026-11-26/job1/0.png"
    with fsspec.open(location, "rb") as file:
        assert file.read() == PNG
    storage.save("2026-11-26/job1/0.png", b"again", content_type="image/png")
    assert fsspec.filesystem("memory").cat_file(location) == b"again"
    with pytest.raises(ValueError, match="storage key"):
        storage.save("../escape.png", PNG, content_type="image/png")


def test_fsspec_storage_makes_directories_where_needed(tmp_path: Path) -> None:
    """On a directory-backed fsspec filesystem (file://) missing parents are created."""
    storage = FsspecStorage(f"file://{tmp_path}/fs")
    location = storage.save("2026-11-26/job1/0.png", PNG, content_type="image/png")
    assert location == f"file://{tmp_path}/fs/2026-11-26/job1/0.png"
    assert (tmp_path / "fs/2026-11-26/job1/0.png").read_bytes() == PNG


def test_storage_reprs_hide_credentials(bucket: str) -> None:
    """user:password@ in a storage URL shows as ***@."""
    storage = FsspecStorage(f"memory://user:hunter2@{bucket}")
    assert "hunter2" not in repr(storage)
    assert "user" not in repr(storage)
    assert repr(storage) == f"FsspecStorage('memory://***@{bucket}')"
    assert mask_userinfo("s3://KEY:SECRET@bucket/p") == "s3://***@bucket/p"
    assert mask_userinfo("s3://bucket/p") == "s3://bucket/p"


def test_open_storage_picks_the_class(tmp_path: Path, bucket: str) -> None:
    """Plain paths and file:// are local; any other scheme goes through fsspec."""
    plain = open_storage(str(tmp_path / "a"))
    from_file_url = open_storage(f"file://{tmp_path}/b%20c")
    assert isinstance(plain, LocalStorage)
    assert plain.root == tmp_path.resolve() / "a"
    assert isinstance(from_file_url, LocalStorage)
    assert from_file_url.root == tmp_path.resolve() / "b c"
    assert isinstance(open_storage(f"memory://{bucket}"), FsspecStorage)
    with pytest.raises(ValueError, match="another host"):
        open_storage("file://elsewhere/x")


def test_fsspec_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without fsspec, the error says what to install."""
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    with pytest.raises(ImportError, match=r"pip install 'imageq\[fsspec\]'") as caught:
        FsspecStorage("s3://KEY:SECRET@bucket")
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "location", "target"),
    [
        (302, "/cdn/a.png?t=1", "/cdn/a.png?t=1"),
        (301, "https://cdn.example/a.png", "https://cdn.example/a.png"),
        (303, "/a", "/a"),
        (307, "/a", "/a"),
        (308, "/a", "/a"),
        (302, None, None),  # a redirect status without a Location is an answer
        (200, "/a", None),
        (300, "/a", None),
        (304, "/a", None),
        (302, "/caf\u00c3\u00a9.png", "/caf\u00e9.png"),  # UTF-8 read back from Latin-1
        (302, "/\u00ff.png", "/\u00ff.png"),  # not UTF-8: kept as it came
    ],
)
def test_redirect_target(status: int, location: str | None, target: str | None) -> None:
    """Only 301, 302, 303, 307 and 308 with a Location redirect a download."""
    assert redirect_target(status, location) == target
