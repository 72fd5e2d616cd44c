"""The guard on URLs imageq calls or hands on: http(s), a host, and every address allowed.

Checked at enqueue (webhook and reference-image URLs) and again before each webhook attempt;
the one I/O step is the injected resolver. The rule itself is `addresses.TargetPolicy`, and
`connecting` applies it once more to the address each connection really goes to, so DNS
rebinding between this check and the connect cannot slip through.

What a refusal tells the submitter: the field, the host as given, the class of address and
the setting that lifts it (or that none does). Never the address a name resolved to, nor the
allow-list: the message goes back to whoever enqueued, and echoing either would turn the guard
into a way to map the private network. Never the URL's path, query or userinfo either: they may
carry tokens.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

from imageq.config import WebhookSettings
from imageq.worker.errors import UnsafeTarget
from imageq.worker.webhooks.addresses import TargetPolicy

# The part of `socket.getaddrinfo` used here: `(host, port)` in, `(family, type, proto,
# canonname, sockaddr)` rows out, with the address text first in `sockaddr`.
Resolver: TypeAlias = Callable[
    [str, int | None], Sequence[tuple[int, int, int, str, tuple[Any, ...]]]
]

_SCHEMES: Final = frozenset({"http", "https"})

# Names that reach a cloud metadata service; refused before any lookup, since inside the cloud
# it is the platform's resolver that answers for them.
METADATA_HOSTS: Final = frozenset({"metadata.google.internal", "metadata", "instance-data"})


def target_policy(settings: WebhookSettings) -> TargetPolicy:
    """The policy the webhook settings describe (it governs downloads and references too)."""
    return TargetPolicy(
        allow_loopback=settings.allow_loopback,
        allowed_networks=tuple(settings.allowed_networks),
    )


def check_target(
    url: str,
    policy: TargetPolicy,
    *,
    field: str = "webhook_url",
    resolve: Resolver | None = None,
) -> None:
    """Raise `UnsafeTarget` unless `url` is http(s) with a host whose every address `policy`
    allows. `field` names the URL in messages; `resolve` is `socket.getaddrinfo` unless given
    (looked up at each call, as the connect-time check does)."""
    host = target_host(url, field=field)
    resolve = resolve or socket.getaddrinfo
    # Literal IPs go through the resolver too: it is what reads "2130706433" or "0x7f.1" the way
    # the connect will, which a parser of our own could get wrong.
    try:
        answers = resolve(host, None)
    except (OSError, UnicodeError, ValueError) as error:
        raise UnsafeTarget(f"{field} host {host!r} does not resolve ({error})") from None
    if not answers:
        raise UnsafeTarget(f"{field} host {host!r} does not resolve (no addresses)")
    refused = policy.first_refusal(str(sockaddr[0]) for *_, sockaddr in answers)
    if refused is not None:
        verb = "is" if _is_literal(host) else "resolves to"
        raise UnsafeTarget(f"{field} host {host!r} {verb} {refused[1]}")


def target_host(url: str, *, field: str) -> str:
    """The host of an http(s) URL that is not a metadata name; else `UnsafeTarget`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed "[" around an IPv6 host
        # Not the parser's message: it quotes the netloc, credentials and all.
        raise UnsafeTarget(f"{field} is not a valid URL") from None
    if parts.scheme not in _SCHEMES:
        raise UnsafeTarget(f"{field} scheme {parts.scheme!r} is not http or https")
    if not host:
        raise UnsafeTarget(f"{field} has no host")
    if host.rstrip(".").lower() in METADATA_HOSTS:
        raise UnsafeTarget(
            f"{field} host {host!r} is a cloud metadata endpoint, which imageq never calls"
        )
    return host


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True
