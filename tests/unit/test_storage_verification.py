"""Object storage without a server: a write is read back and checked, public URLs are built
from the key, and the S3 options come from settings without their secrets showing."""

from __future__ import annotations

from typing import Any

import fsspec
import pytest
from pydantic import SecretStr

from imageq.config.settings import StorageSettings
from imageq.worker.outputs.fetching import SavedImage
from imageq.worker.outputs.storage import (
    FsspecStorage,
    LocalStorage,
    check_stored_copy,
    join_public_url,
    open_configured_storage,
    s3_options,
)

DATA = b"\x89PNG" + bytes(range(256)) * 8


@pytest.mark.parametrize(
    ("stored", "reason"),
    [(DATA[:-1], "bytes, expected"), (DATA[:-1] + b"\x00", "sha256"), (b"", "0 bytes")],
)
def test_check_stored_copy_refuses_a_bad_copy(stored: bytes, reason: str) -> None:
    """A truncated, altered or empty copy is an OSError naming what differs."""
    with pytest.raises(OSError, match=reason):
        check_stored_copy("k/0.png", stored, DATA)


def test_check_stored_copy_accepts_the_same_bytes() -> None:
    """An identical copy passes."""
    check_stored_copy("k/0.png", bytes(DATA), DATA)


@pytest.mark.parametrize("damage", [lambda d: d[: len(d) // 2], lambda d: d[:-1] + b"!"])
def test_fsspec_storage_detects_a_damaged_write_and_removes_it(
    bucket: str, monkeypatch: pytest.MonkeyPatch, damage: Any
) -> None:
    """A write that lands truncated or corrupted raises OSError and leaves no object behind."""
    storage = FsspecStorage(f"memory://{bucket}/out")
    memory = fsspec.filesystem("memory")
    real_pipe = memory.pipe_file

    def damaged_pipe(path: str, value: bytes, **kwargs: Any) -> None:
        real_pipe(path, damage(value), **kwargs)

    monkeypatch.setattr(memory, "pipe_file", damaged_pipe)
    with pytest.raises(OSError, match="stored copy"):
        storage.save("day/job/0.png", DATA, content_type="image/png")
    assert not memory.exists(f"/{bucket}/out/day/job/0.png")


def test_fsspec_storage_saves_and_names_the_public_url(bucket: str) -> None:
    """A good write returns its URL; the public URL is the base plus the key."""
    storage = FsspecStorage(f"memory://{bucket}/out", public_url="https://cdn.example/out/")
    location = storage.save("day/job/0.png", DATA, content_type="image/png")
    assert location == f"memory://{bucket}/out/day/job/0.png"
    assert storage.public_url("day/job/0.png") == "https://cdn.example/out/day/job/0.png"
    assert FsspecStorage(f"memory://{bucket}").public_url("day/job/0.png") is None


def test_join_public_url_checks_the_key() -> None:
    """The key is checked like a storage key; an empty base means no URL."""
    assert join_public_url("", "a/b.png") is None
    assert join_public_url("http://h/x", "a/b.png") == "http://h/x/a/b.png"
    with pytest.raises(ValueError, match="segments"):
        join_public_url("http://h/x", "../b.png")


def test_local_storage_public_url(tmp_path: Any) -> None:
    """A local root behind a web server can name URLs too."""
    assert LocalStorage(tmp_path, public_url="http://img/").public_url("d/0.png") == (
        "http://img/d/0.png"
    )
    assert LocalStorage(tmp_path).public_url("d/0.png") is None


def test_s3_options_leave_empty_settings_to_botocore() -> None:
    """Only the settings given become s3fs options."""
    assert s3_options(endpoint_url="", region="", access_key_id="", secret_access_key="") == {}
    assert s3_options(
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",
        access_key_id="k",
        secret_access_key="s",
    ) == {
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "key": "k",
        "secret": "s",
    }


def test_storage_settings_hide_the_s3_secret() -> None:
    """The secret key is a SecretStr: not in the settings' repr nor in the storage's."""
    settings = StorageSettings(
        url="memory://secret-check",
        access_key_id=SecretStr("AKIDEXAMPLE"),
        secret_access_key=SecretStr("very-secret-value"),
    )
    assert "very-secret-value" not in repr(settings)
    assert "very-secret-value" not in repr(open_configured_storage(settings))


def test_saved_record_has_url_only_when_there_is_one() -> None:
    """`url` is an optional payload field: absent rather than null."""
    base = SavedImage("s3://b/k.png", 3, "0" * 64, "image/png", 1, 1)
    assert "url" not in base.to_record()
    with_url = SavedImage("s3://b/k.png", 3, "0" * 64, "image/png", 1, 1, "http://h/k.png")
    assert with_url.to_record()["url"] == "http://h/k.png"
