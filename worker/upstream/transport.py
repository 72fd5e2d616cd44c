"""The connections to the API: one urllib3 pool per client, bytes in and out.

`PoolTransport` sends a request to the client's one base URL and returns the answer, or raises
an `ApiError` saying whether the request can have left. Everything about the connection is
decided once, when it is built: the host, the (connect, read) timeouts, the CA bundle, and the
proxy the environment names for that host. Nothing is retried and no redirect is followed:
retries are the worker's business, and an answer that redirects is an answer like any other.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import certifi
import urllib3
from requests.utils import (
    get_auth_from_url,
    get_environ_proxies,
    select_proxy,
)
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util import make_headers
from urllib3.util.ssl_ import create_urllib3_context

from imageq.worker.errors import ApiUnavailable, ApiUnreachable

# No retry of any kind, no redirect followed, and the library's own error raised as it is
# (not wrapped in MaxRetryError), so it can be classified below.
NO_RETRIES = urllib3.Retry(total=False, redirect=False)


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, headers (case-insensitive) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request to the API; raises `ApiUnreachable` or `ApiUnavailable` when no
    answer came. Safe to call from many threads at once."""

    def send(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer: ...

    def close(self) -> None: ...


class PoolTransport:
    """One connection pool to the base URL's host (or one proxy manager, when the environment
    names a proxy for it), shared by all threads.

    `max_connections` connections are kept open for reuse; a thread that finds them all busy
    opens one more rather than wait for one, and that one is closed after its request (urllib3
    logs a warning then: size the pool for the threads that call the API).
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
        timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        options: dict[str, object] = {
            "timeout": timeout,
            "retries": NO_RETRIES,
            "maxsize": max_connections,
            "block": False,
        }
        if urlsplit(base_url).scheme == "https":
            options["ssl_context"] = verifying_context(ca_bundle or certifi.where())
        proxy = environment_proxy(base_url)
        self._pool: urllib3.HTTPConnectionPool | urllib3.ProxyManager
        if proxy:
            self._pool = proxy_manager(proxy, options)
            self._prefix = base_url
        else:
            self._pool = urllib3.connection_from_url(base_url, **options)
            self._prefix = urlsplit(base_url).path
        self._proxied = bool(proxy)

    def __repr__(self) -> str:
        return f"PoolTransport(proxied={self._proxied})"

    def send(
        self, method: str, path: str, *, body: bytes | None, headers: Mapping[str, str]
    ) -> Answer:
        try:
            response = self._pool.urlopen(
                method, self._prefix + path, body=body, headers=headers, redirect=False
            )
        # `from None`: the library's exceptions hold the pool, the URL and the underlying
        # error; only their type is worth keeping in a message that may be logged or stored.
        except NewConnectionError:  # refused, or the name did not resolve: nothing was sent
            raise ApiUnreachable(f"{method} {path}: could not connect") from None
        except ConnectTimeoutError:  # (NewConnectionError is one, hence the order)
            raise ApiUnreachable(f"{method} {path}: could not connect (timed out)") from None
        except ReadTimeoutError:
            raise ApiUnavailable(f"{method} {path}: timed out (ReadTimeout)") from None
        except HTTPError as error:  # dropped after connecting, TLS, proxy, a broken answer
            raise ApiUnavailable(f"{method} {path}: {type(error).__name__}") from None
        return Answer(response.status, response.headers, response.data)

    def close(self) -> None:
        """Close the pooled connections; the transport is not used after this."""
        if isinstance(self._pool, urllib3.ProxyManager):
            self._pool.clear()
        else:
            self._pool.close()


def verifying_context(ca_bundle: str) -> ssl.SSLContext:
    """A TLS context that verifies the server's certificate and name against `ca_bundle`
    (certifi's by default, the bundle requests uses), loaded once, not per connection."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(cafile=ca_bundle)
    return context


def environment_proxy(base_url: str) -> str:
    """The proxy the environment's settings (HTTPS_PROXY, NO_PROXY ...) name for `base_url`'s
    host, as a URL with its scheme, or "" for none: read once, when a transport is built."""
    proxy = select_proxy(base_url, get_environ_proxies(base_url)) or ""
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"
    if proxy.lower().startswith("socks"):
        raise ValueError("a SOCKS proxy for the API is not supported; use an HTTP proxy")
    return proxy


def proxy_manager(proxy: str, options: Mapping[str, object]) -> urllib3.ProxyManager:
    """A manager sending through `proxy` (from `environment_proxy`) as requests would:
    credentials in the proxy's URL become a `Proxy-Authorization` header; `https://` targets
    go through a CONNECT tunnel."""
    username, password = get_auth_from_url(proxy)
    headers = make_headers(proxy_basic_auth=f"{username}:{password}") if username else None
    return urllib3.ProxyManager(proxy, num_pools=1, proxy_headers=headers, **options)  # type: ignore[arg-type]
