"""The API client's connections over real sockets on loopback: TLS verified against the CA
bundle, the environment's proxy read once, no redirect followed, timeouts classified by
whether the request can have left, one pool shared by many threads, GETs through libcurl
(which may resend a read) and POSTs through urllib3 (which never resends)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import certifi
import pytest

from imageq.config import ApiSettings
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.params import validate_params
from imageq.worker.errors import ApiError, ApiUnavailable, ApiUnreachable, RateLimited
from imageq.worker.upstream.client import ApiClient
from imageq.worker.upstream.curl_transport import CurlTransport
from imageq.worker.upstream.transport import PoolTransport, Transport, verifying_context
from tests.conftest import API_KEY

TASK = json.dumps({"code": 200, "data": {"task_id": "task_1", "status": "processing"}}).encode()
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass
class Seen:
    """What a recording server was asked, and what it answers."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    seen: Seen


class RecordingHandler(BaseHTTPRequestHandler):
    """Records each request line and its headers (names in lower case), then answers
    `seen.status` with a task."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = cast(RecordingServer, self.server).seen
        seen.requests.append((self.requestline, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(seen.status)
        for name, value in seen.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(TASK)))
        self.end_headers()
        self.wfile.write(TASK)

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def recording() -> Iterator[RecordingServer]:
    yield from serve(RecordingServer(("127.0.0.1", 0), RecordingHandler))


def serve(server: RecordingServer) -> Iterator[RecordingServer]:
    server.seen = Seen()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def url_of(server: RecordingServer, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}"


def settings_for(base_url: str, *, timeout_s: float = 2.0) -> ApiSettings:
    return ApiSettings(
        base_url=base_url, key=API_KEY, connect_timeout_s=timeout_s, read_timeout_s=timeout_s
    )


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_requests_carry_the_key_only_in_the_authorization_header(
    recording: RecordingServer,
) -> None:
    """A GET carries the bearer key, the User-Agent and no body; the path is the base URL's."""
    client = ApiClient(settings_for(url_of(recording) + "/prefix/"))
    assert client.get_task("task 1/x").task_id == "task_1"
    line, headers = recording.seen.requests[0]
    assert line == "GET /prefix/v1/tasks/task%201%2Fx HTTP/1.1"
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["user-agent"] == "imageq/0.1"
    assert API_KEY not in json.dumps({k: v for k, v in headers.items() if k != "authorization"})


def test_a_redirect_is_an_answer_not_followed(recording: RecordingServer) -> None:
    """A 302 elsewhere raises an ApiError with that status; the other address is never asked."""
    elsewhere = RecordingServer(("127.0.0.1", 0), RecordingHandler)
    for other in serve(elsewhere):
        recording.seen.status = 302
        recording.seen.headers = {"Location": url_of(other) + "/v1/tasks/task_1"}
        with pytest.raises(ApiError) as caught:
            ApiClient(settings_for(url_of(recording))).get_task("task_1")
        assert caught.value.http_status == 302
        assert other.seen.requests == []
    assert len(recording.seen.requests) == 1


def test_the_environment_proxy_is_read_once_at_creation(
    recording: RecordingServer, no_proxy_variables: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY at creation routes every call through it, with its credentials, even after
    the variable is gone; NO_PROXY naming the host keeps a client direct."""
    target = "http://127.0.0.1:9"  # never contacted: the proxy answers for it
    no_proxy_variables.setenv("HTTP_PROXY", f"http://user:p%40ss@{url_of(recording)[7:]}")
    proxied = ApiClient(settings_for(target))
    no_proxy_variables.setenv("NO_PROXY", "127.0.0.1")
    direct = ApiClient(settings_for(url_of(recording)))
    no_proxy_variables.delenv("HTTP_PROXY")
    proxied.get_task("task_1")
    direct.get_task("task_1")
    (via_proxy, proxy_headers), (straight, straight_headers) = recording.seen.requests
    assert via_proxy == f"GET {target}/v1/tasks/task_1 HTTP/1.1"
    assert proxy_headers["proxy-authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert straight == "GET /v1/tasks/task_1 HTTP/1.1"
    assert "proxy-authorization" not in straight_headers


def test_read_timeout_may_have_reached_the_api() -> None:
    """Connected, then no answer within the read timeout: ApiUnavailable, not ApiUnreachable."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        client = ApiClient(
            settings_for(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.3)
        )
        with pytest.raises(ApiUnavailable) as caught:
            client.get_task("task_1")
    assert not isinstance(caught.value, ApiUnreachable)
    assert caught.value.message == "GET /v1/tasks/task_1: timed out (ReadTimeout)"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("submit", "POST /api/openapi/submit: could not connect (timed out)"),
        ("get_task", "GET /v1/tasks/task_1: could not connect (timed out)"),  # libcurl
    ],
)
def test_connect_timeout_never_left(call: str, message: str) -> None:
    """A listener whose backlog is full drops the SYN: the connect times out, ApiUnreachable."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        address = full.getsockname()
        waiting = [socket.socket() for _ in range(3)]
        try:
            for sock in waiting:
                sock.setblocking(False)
                sock.connect_ex(address)
            client = ApiClient(settings_for(f"http://127.0.0.1:{address[1]}", timeout_s=0.3))
            params = validate_params("x", aspect_ratio="1:1", resolution="1K")
            calls: dict[str, Callable[[], object]] = {
                "submit": lambda: client.submit("job-1", params),
                "get_task": lambda: client.get_task("task_1"),
            }
            with pytest.raises(ApiUnreachable) as caught:
                calls[call]()
        finally:
            for sock in waiting:
                sock.close()
    assert caught.value.message == message


def test_one_pool_serves_many_threads() -> None:
    """32 threads share a client whose pool keeps 4 connections: every answer is its own."""
    with SimulatorServer(SimConfig(api_key=API_KEY, latency="fixed:0")) as sim:
        client = ApiClient(settings_for(sim.base_url), max_connections=4)
        params = validate_params("a castle", aspect_ratio="1:1", resolution="1K")
        ids = [client.submit(f"threads-{n}", params).task_id for n in range(8)]
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda n: client.get_task(ids[n % 8]).task_id, range(400)))
        client.close()
    assert answers == [ids[n % 8] for n in range(400)]


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path, Path]) -> Iterator[RecordingServer]:
    _, key, cert = tls_files
    server = RecordingServer(("127.0.0.1", 0), RecordingHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from serve(server)


@pytest.mark.parametrize("kind", [PoolTransport, CurlTransport])
def test_https_verifies_the_server_against_the_ca_bundle(
    tls_server: RecordingServer, tls_files: tuple[Path, Path, Path], kind: Callable[..., Transport]
) -> None:
    """Certifi's bundle (the default) refuses a certificate from an unknown CA before any
    request is sent; the CA's own bundle accepts it."""
    settings = settings_for(url_of(tls_server, "https"))
    default = kind(settings.base_url, connect_timeout_s=2, read_timeout_s=2, max_connections=1)
    with pytest.raises(ApiUnavailable) as caught:
        ApiClient(settings, transport=default).get_task("task_1")
    assert caught.value.message == "GET /v1/tasks/task_1: SSLError"
    assert tls_server.seen.requests == []
    transport = kind(
        settings.base_url,
        connect_timeout_s=2,
        read_timeout_s=2,
        max_connections=1,
        ca_bundle=str(tls_files[0]),
    )
    assert ApiClient(settings, transport=transport).get_task("task_1").task_id == "task_1"
    assert len(tls_server.seen.requests) == 1


def test_the_tls_context_checks_certificate_and_name() -> None:
    """The context built for https requires a certificate and checks the host name."""
    context = verifying_context(certifi.where())
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 50


class ScriptedServer:
    """Answers each request on loopback by a script, in order: "answer" (a task, keeping the
    connection), "close" (read the request, close without a word) or "hang" (read it, say
    nothing). Records the request lines it read, and how many connections it accepted."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.requests: list[str] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.script:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(connection)
            with connection.makefile("rb") as incoming:
                while self.script:
                    line = incoming.readline().decode().strip()
                    if not line:
                        break
                    length = 0
                    while header := incoming.readline().strip():
                        name, _, value = header.decode().partition(":")
                        if name.lower() == "content-length":
                            length = int(value)
                    incoming.read(length)
                    self.requests.append(line)
                    action = self.script.pop(0)
                    if action == "close":
                        connection.close()
                        break
                    if action == "answer":
                        connection.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            + f"Content-Length: {len(TASK)}\r\n\r\n".encode()
                            + TASK
                        )

    def close(self) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()


def test_a_submit_is_never_sent_twice_but_a_poll_may_be() -> None:
    """The server reads a second request on a kept connection and closes it unanswered. A
    submit (urllib3) fails with ApiUnavailable after one send: the worker then looks the task
    up before submitting again. A poll's GET (libcurl) is sent again on a fresh connection and
    answered: harmless for a read, which is why only reads go through libcurl."""
    params = validate_params("x", aspect_ratio="1:1", resolution="1K")
    posts = ScriptedServer(["answer", "close", "answer"])
    try:
        client = ApiClient(settings_for(posts.url))
        assert client.submit("job-1", params).task_id == "task_1"
        with pytest.raises(ApiUnavailable) as caught:
            client.submit("job-2", params)
        assert not isinstance(caught.value, ApiUnreachable)
        assert posts.requests == ["POST /api/openapi/submit HTTP/1.1"] * 2
    finally:
        posts.close()
    gets = ScriptedServer(["answer", "close", "answer"])
    try:
        client = ApiClient(settings_for(gets.url))
        assert client.get_task("task_1").task_id == "task_1"
        assert client.get_task("task_1").task_id == "task_1"
        assert gets.requests == ["GET /v1/tasks/task_1 HTTP/1.1"] * 3
        assert gets.connections == 2
    finally:
        gets.close()


def test_a_read_timeout_on_a_kept_connection_may_have_reached_the_api() -> None:
    """A GET on a reused libcurl connection that gets no answer is ApiUnavailable: the request
    left, although this transfer made no new connection."""
    server = ScriptedServer(["answer", "hang"])
    try:
        client = ApiClient(settings_for(server.url, timeout_s=0.3))
        client.get_task("task_1")
        with pytest.raises(ApiUnavailable) as caught:
            client.get_task("task_1")
        assert not isinstance(caught.value, ApiUnreachable)
        assert caught.value.message == "GET /v1/tasks/task_1: timed out (ReadTimeout)"
        assert server.connections == 1
    finally:
        server.close()


def test_a_refused_get_never_left(no_proxy_variables: pytest.MonkeyPatch) -> None:
    """A GET to a port nobody listens on is ApiUnreachable: nothing was sent."""
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(ApiUnreachable) as caught:
        ApiClient(settings_for(f"http://127.0.0.1:{port}")).get_task("task_1")
    assert caught.value.message == "GET /v1/tasks/task_1: could not connect"


def test_answer_headers_reach_the_error_through_libcurl(recording: RecordingServer) -> None:
    """A 429 answered to a GET keeps its Retry-After, read whatever the header's case."""
    recording.seen.status = 429
    recording.seen.headers = {"retry-AFTER": "7"}
    with pytest.raises(RateLimited) as caught:
        ApiClient(settings_for(url_of(recording))).get_task("task_1")
    assert caught.value.retry_after_s == 7


def test_the_curl_transport_sends_reads_only_and_hides_its_proxy(
    no_proxy_variables: pytest.MonkeyPatch,
) -> None:
    """A POST through libcurl is refused before any socket opens; the repr says only whether a
    proxy is used, never its address or credentials."""
    no_proxy_variables.setenv("HTTP_PROXY", "http://user:secret-pass@127.0.0.1:9")
    transport = CurlTransport(
        "http://127.0.0.1:9", connect_timeout_s=1, read_timeout_s=1, max_connections=1
    )
    with pytest.raises(ValueError, match="GETs only"):
        transport.send("POST", "/api/openapi/submit", body=b"{}", headers={})
    assert repr(transport) == "CurlTransport(proxied=True)"
    transport.close()
