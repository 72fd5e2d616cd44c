"""The API's reads through libcurl (pycurl): a poll's GET at a fraction of urllib3's CPU.

Through `ApiClient`, from 16 threads at once, a GET to the simulator costs about 140 µs of CPU
through libcurl against about 425 µs through urllib3's pool (`bench/http_clients.py`): libcurl
parses the answer in C and lets go of the GIL for the whole request. It is used for GETs
only. libcurl sends a request a second time, on a fresh connection, when a reused connection
dies before any answer arrives; that is harmless for a read, but a submit must never be sent
twice, so every POST stays on urllib3 (`PoolTransport`), which never resends.

Like `PoolTransport`: one base URL; (connect, read) timeouts; TLS verified against certifi's
CA bundle; the environment's proxy for that host read once, at creation; no redirect followed;
every failure an `ApiUnreachable` (nothing can have left) or an `ApiUnavailable`, whose message
holds the method, the path and a short reason and nothing of the URL's or the headers' secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from io import BytesIO
from typing import Final
from urllib.parse import urlsplit

import certifi
import pycurl
from requests.utils import get_auth_from_url
from urllib3 import HTTPHeaderDict

from imageq.worker.errors import ApiUnavailable, ApiUnreachable
from imageq.worker.upstream.transport import Answer, environment_proxy

# libcurl's codes for "no connection was made": nothing was sent.
_NOT_CONNECTED: Final = {
    pycurl.E_COULDNT_RESOLVE_PROXY: "could not connect (proxy name not resolved)",
    pycurl.E_COULDNT_RESOLVE_HOST: "could not connect",
    pycurl.E_COULDNT_CONNECT: "could not connect",
}
# Short names for the failures after connecting, as the messages of `PoolTransport` name them.
_AFTER_CONNECT: Final = {
    pycurl.E_SEND_ERROR: "SendError",
    pycurl.E_RECV_ERROR: "RecvError",
    pycurl.E_GOT_NOTHING: "RemoteDisconnected",
    pycurl.E_PARTIAL_FILE: "IncompleteRead",
    pycurl.E_FTP_WEIRD_SERVER_REPLY: "ProtocolError",  # code 8, named for FTP, HTTP's too
    pycurl.E_SSL_CONNECT_ERROR: "SSLError",
    pycurl.E_PEER_FAILED_VERIFICATION: "SSLError",
}


@dataclass(eq=False, slots=True)
class CurlGet:
    """One GET set up on a libcurl handle: where its answer's body and header lines go."""

    handle: pycurl.Curl
    path: str
    body: BytesIO = field(default_factory=BytesIO)
    header_lines: list[bytes] = field(default_factory=list)


class CurlTransport:
    """GETs to one base URL through a stack of reusable libcurl handles, shared by all threads.

    Each handle keeps its connection open between requests; `max_connections` idle handles are
    kept, and a thread that finds none idle makes one more (closed afterwards if the stack is
    full), as `PoolTransport` opens a connection beyond its pool rather than wait.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_connections: int,
        ca_bundle: str | None = None,
    ) -> None:
        base_url = base_url.rstrip("/")
        self._base_url = base_url
        self._max_idle = max_connections
        # libcurl bounds the whole request, not each read: a small JSON answer is read at once,
        # so connect + read is the bound a read timeout gives it.
        self._connect_ms = max(1, round(connect_timeout_s * 1000))
        self._total_ms = max(1, round((connect_timeout_s + read_timeout_s) * 1000))
        self._ca_bundle = ca_bundle or certifi.where()
        self._proxy = environment_proxy(base_url)
        self._proxy_credentials = get_auth_from_url(self._proxy) if self._proxy else ("", "")
        self._https = urlsplit(base_url).scheme == "https"
        # The first handle now: libcurl's one-time set-up (about 3 MB of RSS, TLS included)
        # belongs to the worker's start, not to its first poll.
        self._idle: list[pycurl.Curl] = [self._new_handle()]

    def __repr__(self) -> str:
        return f"CurlTransport(proxied={bool(self._proxy)})"

    def send(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        if method != "GET" or body is not None:
            raise ValueError("CurlTransport sends GETs only; a POST goes through PoolTransport")
        get = self.prepare(path, headers)
        try:
            get.handle.perform()
        except pycurl.error as error:
            raise self.failed(get, int(error.args[0])) from None
        return self.answered(get)

    def prepare(self, path: str, headers: Mapping[str, str]) -> CurlGet:
        """A GET of `path` set up on a handle, for `perform()` here or a multi handle
        (`curl_loop.CurlLoop`); end it with `answered` or `failed`, which take the handle back."""
        try:
            handle = self._idle.pop()  # list.pop and append are atomic: no lock needed
        except IndexError:
            handle = self._new_handle()
        get = CurlGet(handle, path)
        handle.setopt(pycurl.URL, self._base_url + path)
        handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()])
        handle.setopt(pycurl.WRITEDATA, get.body)
        handle.setopt(pycurl.HEADERFUNCTION, get.header_lines.append)
        return get

    def answered(self, get: CurlGet) -> Answer:
        """The answer of a GET that completed; its handle is kept for reuse."""
        handle = get.handle
        status = handle.getinfo(pycurl.RESPONSE_CODE)
        answer = Answer(status, _headers_of(get.header_lines), get.body.getvalue())
        if len(self._idle) < self._max_idle:
            self._idle.append(handle)
        else:
            handle.close()
        return answer

    def failed(self, get: CurlGet, code: int) -> ApiUnavailable:
        """The error for a GET that failed with libcurl's `code`; its handle is closed."""
        # The bytes of this request sent (on a new or a reused connection): none, and nothing
        # can have reached the API.
        sent = get.handle.getinfo(pycurl.REQUEST_SIZE) > 0
        get.handle.close()  # its connection is in an unknown state: never reuse it
        return _classified("GET", get.path, code, sent)

    def close(self) -> None:
        """Close the idle handles and their connections; the transport is not used after this."""
        while self._idle:
            self._idle.pop().close()

    def _new_handle(self) -> pycurl.Curl:
        handle = pycurl.Curl()
        handle.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: safe in threads
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, self._connect_ms)
        handle.setopt(pycurl.TIMEOUT_MS, self._total_ms)
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        # HTTP/1.1 as urllib3 speaks it, not HTTP/2 where TLS would offer it.
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        # The proxy decided once above; "" keeps libcurl from reading the environment itself.
        handle.setopt(pycurl.PROXY, self._proxy)
        handle.setopt(pycurl.NOPROXY, "")
        username, password = self._proxy_credentials
        if username:
            handle.setopt(pycurl.PROXYAUTH, pycurl.HTTPAUTH_BASIC)
            handle.setopt(pycurl.PROXYUSERNAME, username)
            handle.setopt(pycurl.PROXYPASSWORD, password)
        if self._https:
            handle.setopt(pycurl.CAINFO, self._ca_bundle)
            handle.setopt(pycurl.SSL_VERIFYPEER, 1)
            handle.setopt(pycurl.SSL_VERIFYHOST, 2)
        return handle


def _classified(method: str, path: str, code: int, sent: bool) -> ApiUnavailable:
    """The error for libcurl's failure `code`: unreachable when nothing was sent."""
    if code in _NOT_CONNECTED:
        return ApiUnreachable(f"{method} {path}: {_NOT_CONNECTED[code]}")
    if code == pycurl.E_OPERATION_TIMEDOUT:
        if not sent:
            return ApiUnreachable(f"{method} {path}: could not connect (timed out)")
        return ApiUnavailable(f"{method} {path}: timed out (ReadTimeout)")
    return ApiUnavailable(f"{method} {path}: {_AFTER_CONNECT.get(code, f'curl error {code}')}")


def _headers_of(lines: list[bytes]) -> HTTPHeaderDict:
    """The last answer's headers (a proxy's CONNECT answer comes before it), by name in any case."""
    headers = HTTPHeaderDict()
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if line.startswith("HTTP/"):
            headers = HTTPHeaderDict()
        elif ":" in line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return headers
