"""The HTTP client for URLs imageq did not choose (webhooks, downloads): one guarded urllib3
`PoolManager` per worker process, shared by its threads.

It never carries the API key (the API client has its own connections), and every connection
it opens is checked against the `TargetPolicy` (`connecting.CheckedPoolManager`). It reads
nothing from the environment: no proxy (the target would go unchecked) and no .netrc (a job's
URL must not collect the machine's credentials). Nothing is retried and no redirect is
followed here: callers decide both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import certifi
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import make_headers

from imageq.worker.upstream.transport import NO_RETRIES, verifying_context
from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.connecting import CheckedPoolManager
from imageq.worker.webhooks.guard import target_host

# Targets vary per job; past this many hosts, the least recently used host's pool is closed.
MAX_HOSTS: Final = 64


class OutboundClient:
    """Sends one request to a URL through the guard and returns the answer unread
    (`preload_content=False`): the caller reads what it needs and closes it. Thread-safe.

    A pool per host (scheme, host, port), at most `max_hosts` of them, each keeping up to
    `max_connections` connections: the number of threads that may send at once, so that none
    is discarded with a warning. `ca_bundle` replaces certifi's bundle (tests).
    """

    def __init__(
        self,
        policy: TargetPolicy,
        *,
        user_agent: str,
        max_connections: int = 10,
        max_hosts: int = MAX_HOSTS,
        ca_bundle: str | None = None,
    ) -> None:
        self._manager = CheckedPoolManager(
            policy,
            num_pools=max_hosts,
            maxsize=max_connections,
            block=False,
            retries=NO_RETRIES,
            ssl_context=verifying_context(ca_bundle or certifi.where()),
        )
        # What a requests session sent by default, so receivers and CDNs see the same request.
        self._headers = {
            "User-Agent": user_agent,
            "Accept-Encoding": make_headers(accept_encoding=True)["accept-encoding"],
            "Accept": "*/*",
        }

    def __repr__(self) -> str:
        return f"OutboundClient(pools={len(self._manager.pools)})"

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: urllib3.Timeout,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Raises `UnsafeTarget` for a URL or address the guard refuses (before any socket
        exists), urllib3's `HTTPError` subclasses for everything else that stops the request."""
        # Not http(s), no host, or a metadata service's name: refused before any lookup.
        target_host(url, field="URL")
        return self._manager.urlopen(
            method,
            url,
            body=body,
            headers={**self._headers, **(headers or {})},
            timeout=timeout,
            retries=NO_RETRIES,
            redirect=False,
            preload_content=False,
        )

    def close(self) -> None:
        """Close every pooled connection; the client is not used after this."""
        self._manager.clear()


def error_name(error: HTTPError) -> str:
    """A short name for a request that got no answer, safe to record (urllib3's messages hold
    the URL): the names records used under requests, `InvalidURL`, `ConnectTimeout`,
    `ReadTimeout`, `SSLError`, else `ConnectionError`."""
    if isinstance(error, LocationValueError):
        return "InvalidURL"
    if isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):
        return "ConnectTimeout"
    if isinstance(error, ReadTimeoutError):
        return "ReadTimeout"
    if isinstance(error, SSLError):
        return "SSLError"
    return "ConnectionError"
