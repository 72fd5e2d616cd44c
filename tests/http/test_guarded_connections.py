"""The guard at connect time, over real HTTP on loopback: the outbound client checks the address
each connection really goes to, redirect hops and re-resolved names included.

Nothing here leaves loopback. A fence records every socket connect and refuses any that is not
to 127.0.0.0/8 or ::1; refusals by the guard must happen before the fence sees anything, so
each test of a refusal asserts the fence saw no attempt at all.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import urllib3
from urllib3.exceptions import NewConnectionError

from imageq.producers.verify import verify_webhook
from imageq.worker.errors import UnsafeTarget
from imageq.worker.outputs.fetching import fetch_image
from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.guard import check_target
from imageq.worker.webhooks.outbound import OutboundClient
from imageq.worker.webhooks.sending import WebhookSender
from imageq.worker.webhooks.signing import build_webhook
from tests.unit.test_output_storage import PNG, fail

SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA=="
NOW = datetime(2026, 1, 2, tzinfo=UTC)
STRICT = TargetPolicy()
LOOPBACK_ONLY = TargetPolicy(allow_loopback=True)
LISTED = TargetPolicy(
    allow_loopback=True,
    # Covers the metadata and link-local blocks too: they must stay refused.
    allowed_networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("160.0.0.0/4")),
)
LIMITS: dict[str, Any] = {
    "max_bytes": 1_000_000,
    "connect_timeout_s": 2.0,
    "read_timeout_s": 2.0,
    "total_timeout_s": 5.0,
}


# --- the fence: loopback only, every attempt recorded --------------------------------------------


class Fence:
    """Socket connects seen: `outside` holds every attempt beyond loopback (each refused)."""

    def __init__(self) -> None:
        self.outside: list[tuple[Any, ...]] = []
        self.inside: list[tuple[Any, ...]] = []


def _is_loopback(address: Any) -> bool:
    try:
        return ipaddress.ip_address(str(address[0]).partition("%")[0]).is_loopback
    except (ValueError, IndexError, TypeError):
        return False  # an AF_UNIX path or anything odd: no test here connects to one


@pytest.fixture(autouse=True)
def fence(monkeypatch: pytest.MonkeyPatch) -> Fence:
    """Record every socket connect; refuse those beyond loopback before any packet leaves."""
    seen = Fence()
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            seen.outside.append(tuple(address))
            raise ConnectionRefusedError(f"test fence: {address!r} is not loopback")
        seen.inside.append(tuple(address))
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        seen.outside.append(tuple(address))
        raise ConnectionRefusedError("test fence: connect_ex is not used here")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen


Answers = dict[str, list[str]]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Answers:
    """A resolver for *.test names: each lookup takes the next answer listed for the name (the
    last one repeats), so a name can rebind between two lookups. Other names resolve as usual."""
    answers: Answers = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".test"):
            queue = answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port or 0, 0, 0) if ":" in address else (address, port or 0)
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


# --- a loopback server whose answers each test chooses ------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when 16 threads connect at once.
    request_queue_size = 128
    routes: dict[str, Route]
    seen: list[tuple[str, str]]  # (path, Host header)
    authorizations: list[str | None]  # the Authorization header of each request
    received: list[tuple[bytes, dict[str, str]]]  # (body, headers by lowercase name)


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        server = cast(_Server, self.server)
        server.seen.append((self.path, self.headers.get("Host", "")))
        server.authorizations.append(self.headers.get("Authorization"))
        length = int(self.headers.get("Content-Length") or 0)
        headers = {name.lower(): value for name, value in self.headers.items()}
        server.received.append((self.rfile.read(length), headers))
        route = server.routes.get(self.path.partition("?")[0], respond(404, b"", "text/plain"))
        route(self)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def respond(status: int, body: bytes, content_type: str, **headers: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return route


def redirect(location: str) -> Route:
    return respond(302, b"", "text/plain", Location=location)


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    yield from serve(httpd)


def serve(httpd: _Server) -> Iterator[_Server]:
    httpd.routes, httpd.seen, httpd.authorizations, httpd.received = {}, [], [], []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path, Path]) -> Iterator[_Server]:
    """The same server behind TLS, with a certificate for 127.0.0.1 from a test CA."""
    _, key, cert = tls_files
    httpd = _Server(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    yield from serve(httpd)


def port_of(server: _Server) -> int:
    return int(server.server_address[1])


TIMEOUT = urllib3.Timeout(2)


@pytest.fixture
def make_client() -> Iterator[Callable[[TargetPolicy], OutboundClient]]:
    clients: list[OutboundClient] = []

    def make(policy: TargetPolicy) -> OutboundClient:
        clients.append(OutboundClient(policy, user_agent="imageq-test"))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def get(client: OutboundClient, url: str) -> urllib3.BaseHTTPResponse:
    response = client.request("GET", url, timeout=TIMEOUT)
    response.read()
    return response


# --- loopback: only when allowed ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost.test"])
def test_loopback_only_when_allowed(
    server: _Server,
    fence: Fence,
    dns: Answers,
    make_client: Callable[[TargetPolicy], OutboundClient],
    host: str,
) -> None:
    """Refused before connecting by default; reached with the loopback switch."""
    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    dns["localhost.test"] = ["127.0.0.1"]
    server.routes["/img"] = respond(200, b"ok", "text/plain")
    url = f"http://{host}:{port_of(server)}/img"
    with pytest.raises(UnsafeTarget, match="loopback"):
        get(make_client(STRICT), url)
    assert (fence.inside, fence.outside, server.seen) == ([], [], [])
    if host == "[::1]":
        return  # the server listens on 127.0.0.1: reaching ::1 is not this test's point
    response = get(make_client(LOOPBACK_ONLY), url)
    assert response.status == 200
    assert fence.outside == []


# --- metadata and link-local: never ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fe80::1]:8080/",
        "https://169.254.169.254/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_metadata_and_link_local_refused_even_when_listed(
    fence: Fence, make_client: Callable[[TargetPolicy], OutboundClient], url: str
) -> None:
    """Refused with loopback allowed and a list covering them, before any socket connects."""
    with pytest.raises(UnsafeTarget, match="never calls"):
        get(make_client(LISTED), url)
    assert fence.outside == []


# --- private networks: only when listed --------------------------------------------------------


def test_private_network_only_when_listed(
    fence: Fence, dns: Answers, make_client: Callable[[TargetPolicy], OutboundClient]
) -> None:
    """Unlisted: refused before connecting. Listed: the guard lets the connect through (the
    test's fence then refuses it, so nothing leaves loopback)."""
    dns["receiver.test"] = ["10.0.0.7"]
    with pytest.raises(UnsafeTarget, match="IMAGEQ_WEBHOOK__ALLOWED_NETWORKS"):
        get(make_client(LOOPBACK_ONLY), "http://receiver.test:8080/hook")
    assert fence.outside == []
    with pytest.raises(NewConnectionError):
        get(make_client(LISTED), "http://receiver.test:8080/hook")
    assert fence.outside == [("10.0.0.7", 8080)]


# --- DNS: the address connected to is the address checked -------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_name_resolving_to_refused_address_is_refused_at_connect(
    fence: Fence,
    dns: Answers,
    make_client: Callable[[TargetPolicy], OutboundClient],
    scheme: str,
) -> None:
    """A name whose answer is refused fails with no socket connected, http and https alike."""
    dns["cdn.test"] = ["169.254.169.254"]
    with pytest.raises(UnsafeTarget) as caught:
        get(make_client(LISTED), f"{scheme}://cdn.test/img.png")
    assert "'cdn.test'" in str(caught.value)
    assert "169.254" not in str(caught.value)  # the address is for the operator's log only
    assert fence.outside == []


def test_rebinding_after_the_check_is_refused_at_connect(
    server: _Server, fence: Fence, dns: Answers
) -> None:
    """The enqueue-time check sees loopback; by the send the name answers a metadata address.
    The webhook is refused at connect, nothing is sent, and the attempt records why."""
    dns["hooks.test"] = ["127.0.0.1", "169.254.169.254"]
    url = f"http://hooks.test:{port_of(server)}/hook"
    check_target(url, LOOPBACK_ONLY)  # what enqueue and the attempt's pre-check do
    sender = WebhookSender(OutboundClient(LOOPBACK_ONLY, user_agent="imageq-test"), timeout_s=2)
    attempt = sender.send(
        build_webhook(url, {"job_id": "j1"}, job_id="j1", secrets=[SECRET], now=NOW)
    )
    assert attempt.http_status is None
    assert attempt.error is not None
    assert "refused to connect to 'hooks.test'" in attempt.error
    assert (fence.inside, fence.outside, server.seen) == ([], [], [])


def test_connection_goes_to_the_checked_address_with_the_name_as_host(
    server: _Server,
    fence: Fence,
    dns: Answers,
    monkeypatch: pytest.MonkeyPatch,
    make_client: Callable[[TargetPolicy], OutboundClient],
) -> None:
    """One lookup per connection, a connect to exactly that answer, and the name in Host."""
    dns["pinned.test"] = ["127.0.0.1"]
    lookups: list[str] = []
    resolve = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    server.routes["/img"] = respond(200, b"ok", "text/plain")
    client = make_client(LOOPBACK_ONLY)
    assert get(client, f"http://pinned.test:{port_of(server)}/img").status == 200
    assert lookups == ["pinned.test"]
    assert fence.inside == [("127.0.0.1", port_of(server))]
    assert server.seen == [("/img", f"pinned.test:{port_of(server)}")]


def test_proxy_variables_and_netrc_are_ignored(
    server: _Server,
    fence: Fence,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_client: Callable[[TargetPolicy], OutboundClient],
) -> None:
    """Through a proxy the target's address would go unchecked: the outbound client connects
    directly whatever HTTP_PROXY says, and takes no proxy at all. Nor does a job's URL collect
    the machine's .netrc credentials."""
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login me password not-for-a-job\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server.routes["/img"] = respond(200, b"ok", "text/plain")
    url = f"http://127.0.0.1:{port_of(server)}/img"
    assert get(make_client(LOOPBACK_ONLY), url).status == 200
    assert fence.inside == [("127.0.0.1", port_of(server))]
    assert server.seen == [("/img", f"127.0.0.1:{port_of(server)}")]  # not a proxy's absolute URI
    assert server.authorizations == [None]
    assert not {"proxy", "proxies"} & set(inspect.signature(OutboundClient.request).parameters)
    assert fence.outside == []


# --- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "refusal"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "never calls"),
        ("http://10.0.0.1/img.png", "IMAGEQ_WEBHOOK__ALLOWED_NETWORKS"),
        ("http://[::ffff:10.0.0.1]/img.png", "IMAGEQ_WEBHOOK__ALLOWED_NETWORKS"),
        ("http://evil.test/img.png", "never calls"),  # a name answering a metadata address
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata endpoint"),
    ],
)
def test_download_redirect_to_refused_address_is_final(
    server: _Server,
    fence: Fence,
    dns: Answers,
    make_client: Callable[[TargetPolicy], OutboundClient],
    location: str,
    refusal: str,
) -> None:
    """A redirect from the allowed loopback origin to a refused address fails for good, and
    the refused hop is never connected to."""
    dns["evil.test"] = ["169.254.169.254"]
    server.routes["/out"] = redirect(location)
    url = f"http://127.0.0.1:{port_of(server)}/out?sig=SECRET"
    error = fail(lambda: fetch_image(make_client(LOOPBACK_ONLY), url, **LIMITS))
    assert not error.retryable
    assert refusal in error.message
    assert "SECRET" not in error.message
    assert [path for path, _ in server.seen] == ["/out?sig=SECRET"]
    assert fence.outside == []


def test_download_redirect_to_allowed_host_is_followed(
    server: _Server,
    fence: Fence,
    dns: Answers,
    make_client: Callable[[TargetPolicy], OutboundClient],
) -> None:
    """A hop to an allowed host is followed as before: each hop is checked, not forbidden."""
    dns["cdn.test"] = ["127.0.0.1"]
    server.routes["/out"] = redirect(f"http://cdn.test:{port_of(server)}/img.png")
    server.routes["/img.png"] = respond(200, PNG, "image/png")
    body, media_type = fetch_image(
        make_client(LOOPBACK_ONLY), f"http://127.0.0.1:{port_of(server)}/out", **LIMITS
    )
    assert (body, media_type) == (PNG, "image/png")
    assert fence.outside == []


def test_webhook_redirect_is_not_followed(server: _Server, fence: Fence) -> None:
    """A receiver's 3xx is its answer: the webhook never goes where Location points."""
    server.routes["/hook"] = redirect("http://169.254.169.254/latest/meta-data/")
    url = f"http://127.0.0.1:{port_of(server)}/hook"
    sender = WebhookSender(OutboundClient(LOOPBACK_ONLY, user_agent="imageq-test"), timeout_s=2)
    attempt = sender.send(
        build_webhook(url, {"job_id": "j1"}, job_id="j1", secrets=[SECRET], now=NOW)
    )
    assert attempt.http_status == 302
    assert [path for path, _ in server.seen] == ["/hook"]
    assert fence.outside == []


# --- the shared client: signing, TLS, threads, a check per connection ---------------------------


def webhook_to(url: str, job_id: str = "j1") -> Any:
    return build_webhook(url, {"job_id": job_id}, job_id=job_id, secrets=[SECRET], now=NOW)


def test_the_signed_bytes_are_the_bytes_received(server: _Server) -> None:
    """The receiver verifies the signature on the body exactly as it arrived."""
    server.routes["/hook"] = respond(204, b"", "text/plain")
    client = OutboundClient(LOOPBACK_ONLY, user_agent="imageq-test")
    attempt = WebhookSender(client, timeout_s=2).send(
        webhook_to(f"http://127.0.0.1:{port_of(server)}/hook")
    )
    assert attempt.http_status == 204
    ((body, headers),) = server.received
    assert verify_webhook(body, headers, SECRET, now=NOW.timestamp()) == {"job_id": "j1"}
    assert (headers["user-agent"], headers["content-type"]) == ("imageq-test", "application/json")


def test_each_webhook_connects_and_is_checked_anew(
    server: _Server, fence: Fence, dns: Answers
) -> None:
    """The client is shared and long-lived, but each webhook opens its own connection: a name
    that rebinds between two webhooks is refused on the second, which sends nothing."""
    dns["hooks.test"] = ["127.0.0.1", "169.254.169.254"]
    server.routes["/hook"] = respond(200, b"ok", "text/plain")
    sender = WebhookSender(OutboundClient(LOOPBACK_ONLY, user_agent="imageq-test"), timeout_s=2)
    url = f"http://hooks.test:{port_of(server)}/hook"
    assert sender.send(webhook_to(url)).http_status == 200
    refused = sender.send(webhook_to(url))
    assert refused.http_status is None
    assert refused.error is not None
    assert "refused to connect to 'hooks.test'" in refused.error
    assert [path for path, _ in server.seen] == ["/hook"]
    assert fence.inside == [("127.0.0.1", port_of(server))]
    assert fence.outside == []


def test_threads_share_one_client_without_discarding(
    server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    """16 threads send 160 webhooks through one client sized for them: each is delivered, and
    urllib3 never warns of a full pool."""
    server.routes["/hook"] = respond(200, b"", "text/plain")
    client = OutboundClient(LOOPBACK_ONLY, user_agent="imageq-test", max_connections=16)
    sender = WebhookSender(client, timeout_s=5)
    url = f"http://127.0.0.1:{port_of(server)}/hook"
    with caplog.at_level(logging.WARNING, logger="urllib3"), ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(lambda n: sender.send(webhook_to(url, f"j{n}")).http_status, range(160))
        )
    client.close()
    assert statuses == [200] * 160
    assert sorted(headers["webhook-id"] for _, headers in server.received) == sorted(
        f"msg_j{n}" for n in range(160)
    )
    assert [record.getMessage() for record in caplog.records] == []


def test_https_is_verified_against_certifi_and_the_name(
    tls_server: _Server, tls_files: tuple[Path, Path, Path], fence: Fence, dns: Answers
) -> None:
    """Certifi's bundle refuses the test CA; with the test CA, 127.0.0.1 is delivered, and a
    name resolving to 127.0.0.1 is still refused, since the certificate is not for that name
    (the name, not the address, is what TLS checks). Nothing reaches the server unverified."""
    tls_server.routes["/hook"] = respond(200, b"", "text/plain")
    port = port_of(tls_server)
    untrusting = WebhookSender(OutboundClient(LOOPBACK_ONLY, user_agent="t"), timeout_s=2)
    assert untrusting.send(webhook_to(f"https://127.0.0.1:{port}/hook")).error == "SSLError"
    assert tls_server.received == []
    client = OutboundClient(LOOPBACK_ONLY, user_agent="t", ca_bundle=str(tls_files[0]))
    trusting = WebhookSender(client, timeout_s=2)
    assert trusting.send(webhook_to(f"https://127.0.0.1:{port}/hook")).http_status == 200
    dns["other-name.test"] = ["127.0.0.1"]
    assert trusting.send(webhook_to(f"https://other-name.test:{port}/hook")).error == "SSLError"
    assert [path for path, _ in tls_server.seen] == ["/hook"]
    assert fence.outside == []
