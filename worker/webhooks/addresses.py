"""Which addresses imageq may connect to for a URL someone else chose: pure, no I/O.

Webhook, output and reference-image URLs come from job submitters or the API, so a refused
address here is what keeps them off the worker's own machine and network. The rule, by intent:

- a globally routable unicast address: allowed;
- loopback (127.0.0.0/8, ::1): only with `allow_loopback` (development and tests);
- any other non-global address (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, ...): only
  inside one of `allowed_networks` (a private deployment names its own);
- link-local, cloud metadata and unspecified addresses: never, whatever the settings say.

An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4, Teredo, IPv4-compatible) is
judged by the IPv4 address inside too, and the first refusal wins.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# The settings that lift a refusal, named in messages so an operator knows what to change.
LOOPBACK_SETTING: Final = "IMAGEQ_WEBHOOK__ALLOW_LOOPBACK"
NETWORKS_SETTING: Final = "IMAGEQ_WEBHOOK__ALLOWED_NETWORKS"

# Never called, whatever an allow-list says: the credentials a cloud VM can fetch live here.
NEVER: Final[tuple[tuple[IPNetwork, str], ...]] = tuple(
    (ipaddress.ip_network(network), label)
    for network, label in (
        # 169.254.169.254 (AWS, GCP, Azure, OCI, ...), 169.254.170.2 (ECS), 169.254.0.23 (Tencent)
        ("169.254.0.0/16", "a link-local address"),
        ("fe80::/10", "a link-local address"),
        ("100.100.100.200/32", "a cloud metadata address"),  # Alibaba Cloud
        ("168.63.129.16/32", "a cloud metadata address"),  # Azure's host endpoint
        ("192.0.0.192/32", "a cloud metadata address"),  # Oracle Cloud, legacy
        ("fd00:ec2::/48", "a cloud metadata address"),  # AWS IMDS fd00:ec2::254 and its kin
        ("fd20:ce::/48", "a cloud metadata address"),  # GCP's fd20:ce::254
        # Connecting to "this host" reaches the worker's own services by the back door.
        ("0.0.0.0/8", "the unspecified address"),
        ("::/128", "the unspecified address"),
    )
)
LOOPBACK: Final[tuple[IPNetwork, ...]] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)

# RFC 6052's well-known NAT64 prefix and RFC 8215's local-use one: the gateway connects to the
# IPv4 address in the last 32 bits, so that address is the real target.
_NAT64: Final = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL: Final = ipaddress.IPv6Network("fc00::/7")


def _site_local(ip: IPAddress) -> bool:
    """fec0::/10, deprecated by RFC 3879 but still not a public address."""
    return isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local


# Names a non-global address in a message; the first that matches wins, narrowest first.
_CLASSES: Final[tuple[tuple[str, Callable[[IPAddress], bool]], ...]] = (
    ("a multicast address", lambda ip: ip.is_multicast),
    ("a shared (CGNAT) address", lambda ip: ip in _CGNAT),
    ("a unique-local address", lambda ip: ip in _UNIQUE_LOCAL),
    ("a reserved address", lambda ip: ip.is_reserved),
    ("a private address", lambda ip: ip.is_private),
    ("a site-local address", _site_local),
)


@dataclass(frozen=True)
class TargetPolicy:
    """What a deployment allows beyond global addresses; the default allows nothing more."""

    allow_loopback: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, text: str) -> str | None:
        """Why imageq may not connect to the address `text` ("<class>; <remedy>"), or None
        if it may."""
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return "an address imageq cannot read"
        for candidate in carried(address):
            reason = self._judge(candidate)
            if reason is not None:
                label, remedy = reason
                # No address in the text: callers decide whether to show one (see `guard`).
                shown = label if candidate == address else f"an address carrying {label}"
                return f"{shown}; {remedy}"
        return None

    def first_refusal(self, addresses: Iterable[str]) -> tuple[str, str] | None:
        """The first of `addresses` imageq may not connect to, and why (`refusal`); None if it
        may connect to every one (a name is allowed only if all its answers are)."""
        for text in addresses:
            reason = self.refusal(text)
            if reason is not None:
                return text, reason
        return None

    def _judge(self, ip: IPAddress) -> tuple[str, str] | None:
        never = never_class(ip)
        if never is not None:
            return never, "imageq never calls link-local, metadata or unspecified addresses"
        if any(ip in network for network in LOOPBACK):
            if self.allow_loopback:
                return None
            return "a loopback address", f"imageq calls loopback only with {LOOPBACK_SETTING}"
        label = non_global_class(ip)
        if label is None or any(ip in network for network in self.allowed_networks):
            return None
        return label, f"imageq calls it only if {NETWORKS_SETTING} lists its network"


def never_class(ip: IPAddress) -> str | None:
    """The label of the never-allowed block holding `ip` (alone, not what it carries), or None."""
    return next((label for network, label in NEVER if ip in network), None)


def non_global_class(ip: IPAddress) -> str | None:
    """None for a globally routable unicast address, else the class that rules it out."""
    # `is_global` alone lets through multicast (224/4, ff00::/8), deprecated site-local
    # fec0::/10 and some reserved IPv6 blocks on Python 3.11, hence the extra tests.
    if ip.is_global and not (ip.is_multicast or ip.is_reserved or _site_local(ip)):
        return None
    return next((label for label, test in _CLASSES if test(ip)), "a non-global address")


def carried(address: IPAddress) -> Iterator[IPAddress]:
    """The addresses a connection to `address` may really reach: embedded IPv4 ones first."""
    if isinstance(address, ipaddress.IPv6Address):
        # Mapped and well-known NAT64 addresses are only a wrapper: the IPv4 inside is judged
        # alone, so ::ffff:8.8.8.8 passes although ipaddress calls ::ffff:0:0/96 reserved.
        if address.ipv4_mapped is not None:
            yield address.ipv4_mapped
            return
        if address in _NAT64[0]:
            yield _last_32_bits(address)
            return
        if address in _NAT64[1] or (address in _IPV4_COMPATIBLE and int(address) > 1):
            yield _last_32_bits(address)
        if address.sixtofour is not None:
            yield address.sixtofour
        if address.teredo is not None:
            yield from address.teredo
    yield address


def _last_32_bits(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def allowed_network_problem(network: IPNetwork) -> str | None:
    """Why `network` cannot be an allow-list entry, or None: loopback has its own switch, and
    an entry wholly inside a never-allowed block would open nothing."""
    if any(_within(loopback, network) or _within(network, loopback) for loopback in LOOPBACK):
        return f"{network} covers loopback, which only {LOOPBACK_SETTING} allows"
    for block, label in NEVER:
        if _within(network, block):
            return f"{network} is {label}, which imageq never calls"
    return None


def _within(inner: IPNetwork, outer: IPNetwork) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False
