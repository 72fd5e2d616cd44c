"""Connections that check the address they are about to open: the guard at connect time.

A URL checked at enqueue may resolve elsewhere by the time it is called (DNS rebinding, or a
redirect to another host). So every connection of the guarded pools resolves its host once,
refuses if `TargetPolicy` refuses any of the answers, and then connects to exactly those
checked addresses; the Host header and TLS SNI still carry the name, as urllib3 sets them from
it. A refusal raises `UnsafeTarget` before any socket exists, and urllib3 lets it through
unwrapped (it is not an OSError), so callers tell it apart from a network failure.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from imageq.worker.errors import UnsafeTarget
from imageq.worker.webhooks.addresses import TargetPolicy

log = logging.getLogger(__name__)


def open_checked_socket(
    host: str,
    port: int,
    policy: TargetPolicy,
    *,
    timeout: float | None,
    socket_options: Any = None,
) -> socket.socket:
    """A socket connected to `host`, resolved once, every answer allowed by `policy` first."""
    try:
        answers = socket.getaddrinfo(
            host.strip("[]"), port, allowed_gai_family(), socket.SOCK_STREAM
        )
    except UnicodeError:  # a label IDNA cannot encode: no such host, as urllib3 would say
        raise socket.gaierror(socket.EAI_NONAME, f"{host!r} is not a valid host name") from None
    refused = policy.first_refusal(str(sockaddr[0]) for *_, sockaddr in answers)
    if refused is not None:
        address, reason = refused
        # The address goes to the operator's log only: the error lands in the job record and
        # the payload, which the submitter reads (see `guard` on what messages name).
        log.warning("refused to connect to %r at %s: %s", host, address, reason)
        raise UnsafeTarget(f"refused to connect to {host!r}: it resolves to {reason}")
    last_error: OSError | None = None
    for family, kind, proto, _, sockaddr in answers:
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as error:
            sock.close()
            last_error = error
        else:
            return sock
    raise last_error or OSError(f"{host!r} resolved to no address")


class _Checked:
    """Mixed into urllib3's connections: `_new_conn` goes through `open_checked_socket`."""

    target_policy: TargetPolicy

    def _new_conn(self) -> socket.socket:
        connection: Any = self  # urllib3's HTTPConnection, with the fields used below
        timeout = connection.timeout
        if timeout is not None and not isinstance(timeout, int | float):
            timeout = socket.getdefaulttimeout()  # urllib3's "not given" sentinel
        # The same translations urllib3's own _new_conn makes, so its retries and exceptions
        # behave as for any other connection.
        try:
            return open_checked_socket(
                connection.host,
                connection.port,
                self.target_policy,
                timeout=timeout,
                socket_options=connection.socket_options,
            )
        except socket.gaierror as error:
            raise NameResolutionError(connection.host, connection, error) from error
        except TimeoutError as error:
            message = f"Connection to {connection.host} timed out. (connect timeout={timeout})"
            raise ConnectTimeoutError(connection, message) from error
        except OSError as error:
            message = f"Failed to establish a new connection: {error}"
            raise NewConnectionError(connection, message) from error


class CheckedHTTPConnection(_Checked, HTTPConnection):
    def __init__(self, *args: Any, target_policy: TargetPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target_policy = target_policy


class CheckedHTTPSConnection(_Checked, HTTPSConnection):
    def __init__(self, *args: Any, target_policy: TargetPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target_policy = target_policy


class CheckedPoolManager(urllib3.PoolManager):
    """A pool manager every pool of which opens checked connections (`_new_pool` is urllib3's
    documented place to customise pools). It sends to the target directly: it has no proxy,
    and urllib3 reads no proxy or .netrc from the environment."""

    def __init__(self, policy: TargetPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = CheckedHTTPSConnection if scheme == "https" else CheckedHTTPConnection
        pool.conn_kw["target_policy"] = self._policy
        return pool
