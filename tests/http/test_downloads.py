"""Saving outputs: real HTTP on loopback (the simulator, and a tiny server for the error cases)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import fsspec
import pytest
import requests

from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.sizes import pixel_size
from imageq.worker.outputs.fetching import (
    DownloadLimits,
    SavedImage,
    fetch_image,
    save_output,
)
from imageq.worker.outputs.storage import FsspecStorage, LocalStorage
from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.outbound import OutboundClient
from tests.unit.test_output_storage import FINISHED_AT, PNG, encode, fail, stored_files

KEY = "k"
LIMITS = DownloadLimits(
    max_bytes=1_000_000, connect_timeout_s=2.0, read_timeout_s=2.0, total_timeout_s=5.0
)
Route = Callable[[BaseHTTPRequestHandler], None]


# --- a tiny HTTP server whose answers each test chooses -----------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    seen: list[tuple[str, dict[str, str]]]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        server.seen.append((self.path, dict(self.headers)))
        route = server.routes.get(self.path.partition("?")[0])
        try:
            if route is None:
                respond(404, b"not found", content_type="text/plain")(self)
            else:
                route(self)
        except OSError:
            pass  # the client hung up first, as it should when it refuses a body

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Origin:
    """The running server: `routes` maps a path (query ignored) to what answers it."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.routes = server.routes
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def paths_seen(self) -> list[str]:
        return [path for path, _ in self.server.seen]


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes, server.seen = {}, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Origin(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def respond(
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "image/png",
    headers: dict[str, str] | None = None,
    declared_length: int | None = None,
) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        length = len(body) if declared_length is None else declared_length
        handler.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return route


def stream(chunk: bytes, *, count: int, pause_s: float = 0.0, length: int | None = None) -> Route:
    """Send `chunk` `count` times, flushing each; no Content-Length unless given (close ends it)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        if length is not None:
            handler.send_header("Content-Length", str(length))
        handler.end_headers()
        for _ in range(count):
            handler.wfile.write(chunk)
            handler.wfile.flush()
            time.sleep(pause_s)

    return route


def redirect(location: str, status: int = 302) -> Route:
    return respond(status, content_type="text/plain", headers={"Location": location})


@pytest.fixture
def client() -> Iterator[OutboundClient]:
    # The worker's outbound client: guarded, loopback allowed (the test server's address).
    client = OutboundClient(TargetPolicy(allow_loopback=True), user_agent="imageq-test")
    yield client
    client.close()


# --- images -------------------------------------------------------------------------------------


def save(
    storage: LocalStorage,
    client: OutboundClient,
    url: str,
    *,
    expected_size: tuple[int, int] | None = None,
    limits: DownloadLimits = LIMITS,
) -> SavedImage:
    return save_output(
        storage,
        client,
        url=url,
        job_id="job1",
        index=0,
        finished_at=FINISHED_AT,
        expected_size=expected_size,
        limits=limits,
    )


# --- the simulator's real outputs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimConfig(api_key=KEY, latency="fixed:0.1")) as server:
        yield server


def completed_output_url(sim: SimulatorServer, aspect_ratio: str) -> str:
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {
        "model": "gpt_image_2_official",
        "params": {"prompt": "x", "aspect_ratio": aspect_ratio, "resolution": "1K"},
        "out_task_id": f"out-{uuid.uuid4().hex}",
    }
    submitted = requests.post(
        f"{sim.base_url}/api/openapi/submit", json=body, headers=auth, timeout=5
    )
    task_id = submitted.json()["data"][0]["task_id"]
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        query = {"task_id": task_id}
        answer = requests.post(
            f"{sim.base_url}/api/openapi/query", json=query, headers=auth, timeout=5
        )
        data = answer.json()["data"]
        if data["status"] == "completed":
            return str(data["output"][0]["url"])
        time.sleep(0.02)
    raise AssertionError("the simulator task did not complete within 5 s")


def test_simulator_png_is_saved_with_its_digest_and_size(
    sim: SimulatorServer, client: OutboundClient, tmp_path: Path
) -> None:
    """A simulator output lands under date/job/index with the right sha256, size and type."""
    url = completed_output_url(sim, "16:9")
    expected = pixel_size("16:9", "1K")
    saved = save(LocalStorage(tmp_path), client, url, expected_size=expected)
    stored = (tmp_path / "2026-11-26" / "job1" / "0.png").read_bytes()
    assert saved.location == str(tmp_path.resolve() / "2026-11-26" / "job1" / "0.png")
    assert saved.sha256 == hashlib.sha256(stored).hexdigest()
    assert (saved.bytes, saved.content_type) == (len(stored), "image/png")
    assert (saved.width, saved.height) == expected == (1536, 864)
    assert json.loads(json.dumps(saved.to_record())) == saved.to_record()
    assert list(saved.to_record()) == [
        "location",
        "bytes",
        "sha256",
        "content_type",
        "width",
        "height",
    ]


def test_simulator_output_of_the_wrong_size_is_refused(
    sim: SimulatorServer, client: OutboundClient, tmp_path: Path
) -> None:
    """An image whose pixels differ from the size table is final, with both sizes named."""
    url = completed_output_url(sim, "1:1")
    error = fail(lambda: save(LocalStorage(tmp_path), client, url, expected_size=(1536, 864)))
    assert not error.retryable
    assert "1024x1024" in error.message
    assert "1536x864" in error.message
    assert stored_files(tmp_path) == []


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "served_as", "content_type", "extension"),
    [
        ("JPEG", "image/jpeg", "image/jpeg", "jpg"),
        ("WEBP", "image/webp", "image/webp", "webp"),
        ("WEBP", "image/png", "image/webp", "webp"),
    ],
)
def test_decoded_format_picks_extension_and_type(
    origin: Origin,
    client: OutboundClient,
    tmp_path: Path,
    image_format: str,
    served_as: str,
    content_type: str,
    extension: str,
) -> None:
    """The format Pillow reads wins over the Content-Type header."""
    body = encode(image_format, (40, 30))
    origin.routes["/img"] = respond(200, body, content_type=served_as)
    saved = save(LocalStorage(tmp_path), client, origin.url("/img"), expected_size=(40, 30))
    assert saved.content_type == content_type
    assert Path(saved.location).name == f"0.{extension}"
    assert Path(saved.location).read_bytes() == body


def test_the_api_key_is_not_sent_to_output_urls(
    origin: Origin, client: OutboundClient, tmp_path: Path
) -> None:
    """The API key stays with the API client: a download sends no Authorization header."""
    origin.routes["/img"] = respond(200, PNG)
    save(LocalStorage(tmp_path), client, origin.url("/img"))
    ((_, headers),) = origin.server.seen
    assert "Authorization" not in headers


# --- HTTP errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, True), (410, False), (403, False), (429, True), (503, True)]
)
def test_http_errors_keep_their_status(
    origin: Origin, client: OutboundClient, status: int, retryable: bool
) -> None:
    """404 may be a CDN lagging behind, so it is retried; 410 and 403 are final."""
    origin.routes["/img"] = respond(status, b"{}", content_type="application/json")
    error = fail(lambda: fetch_image(client, origin.url("/img?sig=SECRET"), **vars(LIMITS)))
    assert (error.retryable, error.http_status) == (retryable, status)
    assert "SECRET" not in error.message
    assert "/img" in error.message


def test_connection_refused_is_retryable(client: OutboundClient) -> None:
    """Nobody listening is a transient failure without an HTTP status."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = fail(lambda: fetch_image(client, f"http://127.0.0.1:{port}/x?t=1", **vars(LIMITS)))
    assert (error.retryable, error.http_status) == (True, None)


# --- bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "refusal"),
    [
        (respond(200, b"x" * 5000), "Content-Length 5000 exceeds max_bytes=4096"),
        (stream(b"x" * 1024, count=50), "body exceeds max_bytes=4096"),
    ],
    ids=["content-length", "streamed"],
)
def test_oversized_body_is_final_and_nothing_is_stored(
    origin: Origin, client: OutboundClient, tmp_path: Path, route: Route, refusal: str
) -> None:
    """A body over max_bytes is refused, early when Content-Length says so, else mid-stream."""
    origin.routes["/img"] = route
    limits = DownloadLimits(
        max_bytes=4096, connect_timeout_s=2.0, read_timeout_s=2.0, total_timeout_s=5.0
    )
    error = fail(lambda: save(LocalStorage(tmp_path), client, origin.url("/img"), limits=limits))
    assert not error.retryable
    assert refusal in error.message
    assert stored_files(tmp_path) == []


def test_html_body_is_final(origin: Origin, client: OutboundClient, tmp_path: Path) -> None:
    """A Content-Type that is not image/* is final (an error page, a login wall)."""
    origin.routes["/img"] = respond(200, b"<html>expired</html>", content_type="text/html")
    error = fail(lambda: save(LocalStorage(tmp_path), client, origin.url("/img")))
    assert (error.retryable, error.http_status) == (False, 200)
    assert stored_files(tmp_path) == []


def test_non_image_claiming_png_is_final(
    origin: Origin, client: OutboundClient, tmp_path: Path
) -> None:
    """Bytes that Pillow cannot read are final whatever the header says."""
    origin.routes["/img"] = respond(200, b"definitely not a png", content_type="image/png")
    error = fail(lambda: save(LocalStorage(tmp_path), client, origin.url("/img")))
    assert not error.retryable
    assert stored_files(tmp_path) == []


def test_truncated_body_is_retryable(origin: Origin, client: OutboundClient) -> None:
    """A connection closed before Content-Length bytes arrived may work next time."""
    origin.routes["/img"] = respond(200, PNG[:20], declared_length=len(PNG))
    error = fail(lambda: fetch_image(client, origin.url("/img"), **vars(LIMITS)))
    assert (error.retryable, error.http_status) == (True, 200)


def test_slow_body_hits_the_total_timeout(origin: Origin, client: OutboundClient) -> None:
    """Bytes trickling in faster than the read timeout still cannot outlast total_timeout_s."""
    origin.routes["/img"] = stream(b"x", count=100, pause_s=0.02, length=100)
    started = time.monotonic()
    error = fail(
        lambda: fetch_image(
            client,
            origin.url("/img"),
            max_bytes=1000,
            connect_timeout_s=1.0,
            read_timeout_s=1.0,
            total_timeout_s=0.3,
        )
    )
    assert error.retryable
    assert "total timeout" in error.message
    assert time.monotonic() - started < 1.0


# --- redirects ----------------------------------------------------------------------------------


def test_one_redirect_is_followed(origin: Origin, client: OutboundClient, tmp_path: Path) -> None:
    """A CDN redirect, relative Location included, leads to the image."""
    origin.routes["/out"] = redirect("/cdn/img.png?token=x")
    origin.routes["/cdn/img.png"] = respond(200, PNG)
    saved = save(LocalStorage(tmp_path), client, origin.url("/out"), expected_size=(64, 48))
    assert Path(saved.location).read_bytes() == PNG
    assert origin.paths_seen() == ["/out", "/cdn/img.png?token=x"]


def test_redirect_loop_fails(origin: Origin, client: OutboundClient) -> None:
    """At most three redirects are followed; a loop is final."""
    origin.routes["/loop"] = redirect("/loop", status=307)
    error = fail(lambda: fetch_image(client, origin.url("/loop"), **vars(LIMITS)))
    assert (error.retryable, error.http_status) == (False, 307)
    assert len(origin.paths_seen()) == 4


def test_redirect_to_another_scheme_is_final(origin: Origin, client: OutboundClient) -> None:
    """Only http(s) is fetched, wherever a redirect points."""
    origin.routes["/out"] = redirect("file:///etc/passwd")
    error = fail(lambda: fetch_image(client, origin.url("/out"), **vars(LIMITS)))
    assert not error.retryable


def test_save_output_to_fsspec(origin: Origin, client: OutboundClient, bucket: str) -> None:
    """save_output works the same on any Storage."""
    origin.routes["/img"] = respond(200, PNG)
    saved = save_output(
        FsspecStorage(f"memory://{bucket}"),
        client,
        url=origin.url("/img"),
        job_id="job1",
        index=3,
        finished_at=FINISHED_AT,
        expected_size=(64, 48),
        limits=LIMITS,
    )
    assert saved.location == f"memory://{bucket}/2026-11-26/job1/3.png"
    assert fsspec.filesystem("memory").cat_file(saved.location) == PNG
