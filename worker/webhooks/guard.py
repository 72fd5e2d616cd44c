"""The SSRF guard for webhook URLs: imageq calls only globally routable http(s) hosts.

A webhook URL comes from whoever submits a job, so without this check a job could make the
worker POST to its own loopback services, the private network, or the cloud metadata endpoint.
The check resolves the host and judges every address it gets; the one I/O step is the injected
resolver.

It cannot stop DNS rebinding between this check and the sender's own resolution (a host that
answers public now and private a second later); pinning the connect address would. It does
refuse a host whose one answer mixes public and private addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from imageq.worker.errors import UnsafeTarget

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

# The part of `socket.getaddrinfo` used here: `(host, port)` in, `(family, type, proto,
# canonname, sockaddr)` rows out, with the address text first in `sockaddr`.
Resolver: TypeAlias = Callable[
    [str, int | None], Sequence[tuple[int, int, int, str, tuple[Any, ...]]]
]

_SCHEMES = frozenset({"http", "https"})

# Names that reach a cloud metadata service; refused even if their DNS answer looks harmless,
# since inside the cloud it is the platform's resolver that answers for them.
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})

# RFC 6052's well-known NAT64 prefix: the IPv6-only network's gateway connects to the IPv4
# address in the last 32 bits, so that address is the real target.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def _site_local(ip: IPAddress) -> bool:
    """fec0::/10, deprecated by RFC 3879 but still not a public address."""
    return isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local


# The first class that matches names the address in the message. Order matters: 169.254/16,
# 0.0.0.0 and 240/4 are also `is_private`, and the narrower name says more.
_CLASSES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("the unspecified address", lambda ip: ip.is_unspecified),
    ("a loopback address", lambda ip: ip.is_loopback),
    ("a link-local address", lambda ip: ip.is_link_local),
    ("a multicast address", lambda ip: ip.is_multicast),
    ("a shared (CGNAT) address", lambda ip: ip in _CGNAT),
    ("a unique-local address", lambda ip: ip in _UNIQUE_LOCAL),
    ("a reserved address", lambda ip: ip.is_reserved),
    ("a private address", lambda ip: ip.is_private),
    ("a site-local address", _site_local),
)

_POLICY = (
    "imageq refuses loopback, private, link-local and metadata targets "
    "unless webhook.allow_private_targets is set"
)


def check_webhook_target(
    url: str, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo
) -> None:
    """Raise `UnsafeTarget` unless `url` is http(s) with a host whose every address is global.

    With `allow_private` the host must still be http(s) and resolve, but any address will do.
    Messages name the host, never the whole URL (it may carry credentials or tokens).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed "[" around an IPv6 host
        # Not the parser's message: it quotes the netloc, credentials and all.
        raise UnsafeTarget("webhook_url is not a valid URL") from None
    if parts.scheme not in _SCHEMES:
        raise UnsafeTarget(f"webhook_url scheme {parts.scheme!r} is not http or https")
    if not host:
        raise UnsafeTarget("webhook_url has no host")
    if not allow_private and host.rstrip(".") in _METADATA_HOSTS:
        raise UnsafeTarget(f"webhook_url host {host!r} is a cloud metadata endpoint; {_POLICY}")

    # Literal IPs go through the resolver too: it is what reads "2130706433" or "0x7f.1" the way
    # the sender's connect will, which a parser of our own could get wrong.
    try:
        answers = resolve(host, None)
    except (OSError, UnicodeError, ValueError) as error:
        raise UnsafeTarget(f"webhook_url host {host!r} does not resolve ({error})") from None
    if not answers:
        raise UnsafeTarget(f"webhook_url host {host!r} does not resolve (no addresses)")
    if allow_private:
        return
    for *_, sockaddr in answers:
        reason = _refusal(str(sockaddr[0]))
        if reason is not None:
            raise UnsafeTarget(f"webhook_url host {host!r} resolves to {reason}; {_POLICY}")


def _refusal(text: str) -> str | None:
    """Why the address `text` is not a safe target ("<address>, <class>"), or None if it is."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return f"{text!r}, an address imageq cannot read"
    for candidate in _targets(address):
        label = _non_global_class(candidate)
        if label is not None:
            shown = str(address) if candidate == address else f"{address} (embedding {candidate})"
            return f"{shown}, {label}"
    return None


def _targets(address: IPAddress) -> Iterator[IPAddress]:
    """The addresses a connection to `address` may really reach: embedded IPv4 ones first."""
    if isinstance(address, ipaddress.IPv6Address):
        # Mapped and NAT64 addresses are only a wrapper: judge the IPv4 inside alone, so that
        # ::ffff:8.8.8.8 passes although ipaddress calls the ::ffff:0:0/96 block reserved.
        if address.ipv4_mapped is not None:
            yield address.ipv4_mapped
            return
        if address in _NAT64:
            yield ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            return
        if address.sixtofour is not None:
            yield address.sixtofour
        if address.teredo is not None:
            yield from address.teredo
    yield address


def _non_global_class(ip: IPAddress) -> str | None:
    """None for a globally routable unicast address, else the class that rules it out."""
    # `is_global` alone lets through multicast (224/4, ff00::/8), deprecated site-local
    # fec0::/10 and some reserved IPv6 blocks on Python 3.11, hence the extra tests.
    if ip.is_global and not (ip.is_multicast or ip.is_reserved or _site_local(ip)):
        return None
    return next((label for label, test in _CLASSES if test(ip)), "a non-global address")
