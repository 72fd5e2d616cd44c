"""Where saved outputs go: a local directory, or any fsspec URL (s3://, gcs://, memory://, ...).

A storage takes a relative key such as "2026-11-26/job1/0.png" and bytes, and answers where it
put them. Keys never leave the storage's root, and a storage's repr never shows credentials.
"""

from __future__ import annotations

import os
import posixpath
import secrets
from pathlib import Path, PurePosixPath
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

# The keyword each object store takes for the stored object's Content-Type (s3fs hands it to
# put_object, gcsfs has its own); other backends have no such notion and get nothing.
_CONTENT_TYPE_KWARG: Final = {
    "s3": "ContentType",
    "s3a": "ContentType",
    "gs": "content_type",
    "gcs": "content_type",
}


class Storage(Protocol):
    """Somewhere to keep output images."""

    def save(self, key: str, data: bytes, *, content_type: str) -> str:
        """Store `data` under the relative `key`, replacing what was there; return its location.

        Raises ValueError for a key that is empty, absolute or climbs out with `..`, and
        OSError when the write fails.
        """
        ...


def key_parts(key: str) -> tuple[str, ...]:
    """The segments of a relative key; ValueError if it could point outside the storage root."""
    if PurePosixPath(key).is_absolute() or "\\" in key or "\0" in key:
        raise ValueError(f"storage key must be a relative path, got {key!r}")
    parts = tuple(key.split("/"))
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"storage key must not have empty, '.' or '..' segments, got {key!r}")
    return parts


def mask_userinfo(url: str) -> str:
    """The URL with any `user:password@` replaced by `***@`, for reprs and messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class LocalStorage:
    """Files under a root directory, each written whole or not at all."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def save(self, key: str, data: bytes, *, content_type: str) -> str:
        """Write atomically under the root and return the file's absolute path.

        `content_type` is not kept: a file's extension already says it.
        """
        target = self.root.joinpath(*key_parts(key))
        # A symlinked directory inside the root could still lead out of it: check before
        # creating anything.
        if not target.parent.resolve().is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} leads outside {self.root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        # A reader sees the old file or the new one, never half of one: write a temporary file
        # beside the target and rename it over. O_EXCL with a random name rather than mkstemp,
        # so the file gets the usual umask-derived mode instead of 0600.
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return str(target)


class FsspecStorage:
    """Objects under an fsspec URL prefix; needs `pip install 'imageq[fsspec]'`.

    `storage_options` go to the fsspec backend (credentials, endpoint...) and are never shown.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        try:
            # Imported here: fsspec is an optional extra, and local storage never needs it.
            from fsspec.core import url_to_fs
        except ImportError as error:
            raise ImportError(
                f"storing outputs at {mask_userinfo(url)} needs fsspec: "
                "pip install 'imageq[fsspec]' (plus the backend's package, e.g. s3fs)"
            ) from error
        scheme, separator, rest = url.partition("://")
        self._url = f"{scheme}{separator}{rest.rstrip('/')}"
        self._fs, self._root = url_to_fs(self._url, **storage_options)
        self._location_prefix = _strip_userinfo(self._url)
        protocols = self._fs.protocol
        protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        self._content_type_kwarg = next(
            (_CONTENT_TYPE_KWARG[p] for p in protocols if p in _CONTENT_TYPE_KWARG), None
        )

    def __repr__(self) -> str:
        return f"FsspecStorage({mask_userinfo(self._url)!r})"

    def save(self, key: str, data: bytes, *, content_type: str) -> str:
        """Write the object and return its URL (prefix + key, without any credentials)."""
        relative = "/".join(key_parts(key))
        path = f"{self._root.rstrip('/')}/{relative}" if self._root else relative
        extra = {self._content_type_kwarg: content_type} if self._content_type_kwarg else {}
        try:
            self._fs.pipe_file(path, data, **extra)
        except FileNotFoundError:
            # Directory-backed filesystems (file://, sftp://) need the parent made first; object
            # stores never get here, so they pay no extra request for it.
            self._fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self._fs.pipe_file(path, data, **extra)
        prefix = self._location_prefix
        return f"{prefix}{relative}" if prefix.endswith("://") else f"{prefix}/{relative}"


def open_storage(url: str) -> Storage:
    """A plain path or `file://` URL opens a LocalStorage; any other scheme an FsspecStorage."""
    if "://" not in url:
        return LocalStorage(url)
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URL names another host: {mask_userinfo(url)}")
        return LocalStorage(url2pathname(parts.path))
    return FsspecStorage(url)
