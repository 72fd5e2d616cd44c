"""Where saved outputs go: a local directory, or any fsspec URL (s3://, gcs://, memory://, ...).

A storage takes a relative key such as "2026-11-26/job1/0.png" and bytes, and answers where it
put them, and at which public URL (if one was configured) any host can fetch them. Keys never
leave the storage's root, and a storage's repr never shows credentials.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import secrets
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

if TYPE_CHECKING:
    from imageq.config.settings import StorageSettings

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
        OSError when the write fails or the stored copy differs from `data`.
        """
        ...

    def public_url(self, key: str) -> str | None:
        """The http(s) URL that serves `key`, or None when no public base URL is configured."""
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


def join_public_url(base: str, key: str) -> str | None:
    """`base` + "/" + the key's segments; None for an empty base."""
    if not base:
        return None
    return f"{base.rstrip('/')}/{'/'.join(key_parts(key))}"


def check_stored_copy(where: str, stored: bytes, data: bytes) -> None:
    """OSError(EIO) unless `stored` has the size and sha256 of `data`: a truncated or corrupted
    write is caught before the copy is recorded as saved."""
    if len(stored) != len(data):
        message = f"stored copy of {where} has {len(stored)} bytes, expected {len(data)}"
        raise OSError(errno.EIO, message)
    if hashlib.sha256(stored).digest() != hashlib.sha256(data).digest():
        raise OSError(errno.EIO, f"stored copy of {where} differs from the image (sha256)")


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class LocalStorage:
    """Files under a root directory, each written whole or not at all."""

    def __init__(self, root: str | os.PathLike[str], *, public_url: str = "") -> None:
        self.root = Path(root).expanduser().resolve()
        self._public_url = public_url

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

    def public_url(self, key: str) -> str | None:
        """The configured base URL plus the key (a web server in front of the root serves it)."""
        return join_public_url(self._public_url, key)


class FsspecStorage:
    """Objects under an fsspec URL prefix; needs `pip install 'imageq[fsspec]'`.

    `storage_options` go to the fsspec backend (credentials, endpoint...) and are never shown.
    Each write is read back and checked (size and sha256) before its location is returned.
    """

    def __init__(self, url: str, *, public_url: str = "", **storage_options: Any) -> None:
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
        self._public_url = public_url
        protocols = self._fs.protocol
        protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        self._content_type_kwarg = next(
            (_CONTENT_TYPE_KWARG[p] for p in protocols if p in _CONTENT_TYPE_KWARG), None
        )

    def __repr__(self) -> str:
        return f"FsspecStorage({mask_userinfo(self._url)!r})"

    def save(self, key: str, data: bytes, *, content_type: str) -> str:
        """Write the object, read it back to check it, and return its URL (prefix + key, without
        any credentials)."""
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
        # Read back rather than trust the write: an object store answers 200 for whatever bytes
        # reached it, and a proxy or a broken stream can cut or alter them on the way.
        try:
            check_stored_copy(relative, self._fs.cat_file(path), data)
        except OSError:
            self._remove_quietly(path)
            raise
        prefix = self._location_prefix
        return f"{prefix}{relative}" if prefix.endswith("://") else f"{prefix}/{relative}"

    def public_url(self, key: str) -> str | None:
        """The configured base URL plus the key: the http(s) address of the object."""
        return join_public_url(self._public_url, key)

    def _remove_quietly(self, path: str) -> None:
        # A bad copy must not stay under the key; if removing it fails too, the next attempt
        # overwrites it, and the job's record never points at it.
        with contextlib.suppress(OSError):
            self._fs.rm_file(path)


def open_storage(
    url: str, *, public_url: str = "", options: Mapping[str, Any] | None = None
) -> Storage:
    """A plain path or `file://` URL opens a LocalStorage; any other scheme an FsspecStorage,
    with `options` passed to its fsspec backend."""
    if "://" not in url:
        return LocalStorage(url, public_url=public_url)
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URL names another host: {mask_userinfo(url)}")
        return LocalStorage(url2pathname(parts.path), public_url=public_url)
    return FsspecStorage(url, public_url=public_url, **(options or {}))


def s3_options(
    *, endpoint_url: str, region: str, access_key_id: str, secret_access_key: str
) -> dict[str, Any]:
    """s3fs's options for the given settings; empty ones are left to botocore's defaults."""
    options: dict[str, Any] = {}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    if region:
        options["client_kwargs"] = {"region_name": region}
    if access_key_id:
        options["key"] = access_key_id
    if secret_access_key:
        options["secret"] = secret_access_key
    return options


def open_configured_storage(settings: StorageSettings) -> Storage:
    """The storage the settings name, with the S3 options when its URL is `s3://` or `s3a://`."""
    scheme = urlsplit(settings.url).scheme.lower() if "://" in settings.url else ""
    options = (
        s3_options(
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            access_key_id=settings.access_key_id.get_secret_value(),
            secret_access_key=settings.secret_access_key.get_secret_value(),
        )
        if scheme in ("s3", "s3a")
        else {}
    )
    return open_storage(settings.url, public_url=settings.public_url, options=options)
