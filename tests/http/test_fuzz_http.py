"""Property tests of the HTTP client against a loopback server that answers anything: each
answer is a task or an ApiError. The strategies are those of tests/unit/test_fuzz.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imageq.config import ApiSettings
from imageq.worker.domain.params import GenerationParams
from imageq.worker.errors import ApiError
from imageq.worker.upstream.client import ApiClient
from imageq.worker.upstream.responses import RemoteTask
from tests.unit.test_fuzz import BODIES, DEEP, IO, mostly

# -- the HTTP client against a server that answers anything -----------------------------------


@dataclass
class Reply:
    """One canned HTTP answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class AnythingServer(ThreadingHTTPServer):
    """Answers every request with `reply`, whatever it asked."""

    reply: Reply

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up on a malformed answer is expected here


class AnythingHandler(BaseHTTPRequestHandler):
    """Reads the request, then sends the server's `reply` and closes the connection."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = cast(AnythingServer, self.server).reply
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)
        self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def anything() -> Iterator[tuple[AnythingServer, ApiClient]]:
    server = AnythingServer(("127.0.0.1", 0), AnythingHandler)
    server.reply = Reply()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api = ApiSettings(
        base_url=f"http://127.0.0.1:{server.server_address[1]}",
        key="sk-fuzz",
        connect_timeout_s=2,
        read_timeout_s=2,
    )
    yield server, ApiClient(api)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


REPLIES = st.builds(
    Reply,
    status=mostly(
        st.sampled_from([200, 201, 400, 401, 404, 405, 429, 500, 503]), st.integers(100, 599)
    ),
    body=mostly(BODIES.map(lambda body: json.dumps(body).encode()), st.binary(max_size=300)),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "Content-Type"]),
        st.sampled_from(["1", "Wed, 21 Oct 2015 07:28:00 GMT", "application/json", "soon"]),
    ),
)
PARAMS_OK = GenerationParams(prompt="a castle", aspect_ratio="1:1", resolution="1K")


@IO
@given(REPLIES, st.booleans())
def test_client_returns_a_task_or_raises_an_api_error(
    anything: tuple[AnythingServer, ApiClient], reply: Reply, submitting: bool
) -> None:
    """Whatever status and bytes come back, the client answers a RemoteTask or an ApiError."""
    server, client = anything
    server.reply = reply
    try:
        task = client.submit("job-1", PARAMS_OK) if submitting else client.get_task("task_1")
    except ApiError:
        return
    assert isinstance(task, RemoteTask)
    assert 200 <= reply.status < 300


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b'{"code": 1e400, "data": []}'),
        Reply(200, b"[" * DEEP),
        Reply(503, b"[" * DEEP),
    ],
    ids=["huge-code", "nested-200", "nested-503"],
)
def test_client_turns_hostile_json_into_api_errors(
    anything: tuple[AnythingServer, ApiClient], reply: Reply
) -> None:
    """Valid-but-hostile JSON is an ApiError like any other bad body."""
    server, client = anything
    server.reply = reply
    with pytest.raises(ApiError):
        client.get_task("task_1")
