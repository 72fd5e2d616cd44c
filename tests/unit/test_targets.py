"""The SSRF guard for webhook URLs, with a fake resolver and real resolution of literal IPs."""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from imageq.worker.errors import UnsafeTarget
from imageq.worker.webhooks.guard import Resolver, check_webhook_target

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:4700::1111"

Answer = list[tuple[int, int, int, str, tuple[Any, ...]]]


def resolving_to(*addresses: str, calls: list[str] | None = None) -> Resolver:
    """A fake DNS answering every host with `addresses`, recording the hosts asked about."""

    def resolve(host: str, port: int | None) -> Answer:
        if calls is not None:
            calls.append(host)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
            for a in addresses
        ]

    return resolve


def failing(host: str, port: int | None) -> Answer:
    """A fake DNS that knows no host."""
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not to bind
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # teredo, client 127.0.0.1
        ("64:ff9b::a00:5", "private"),  # NAT64 wrapping 10.0.0.5
        ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
    ],
)
def test_non_global_address_is_refused(address: str, kind: str) -> None:
    """Every address class that is not globally routable is refused, and named."""
    with pytest.raises(UnsafeTarget, match=kind) as caught:
        check_webhook_target(
            "https://hooks.example.com/x", allow_private=False, resolve=resolving_to(address)
        )
    assert "'hooks.example.com'" in str(caught.value)
    assert "webhook.allow_private_targets" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0:80/",
    ],
)
def test_literal_ip_hosts_are_resolved_and_refused(url: str) -> None:
    """Literal and oddly written IPs go through the real getaddrinfo (no network) and fail."""
    with pytest.raises(UnsafeTarget, match="webhook_url host"):
        check_webhook_target(url, allow_private=False)


def test_message_names_host_address_and_class() -> None:
    """The message says which host, which address, what class, and which setting lifts it."""
    with pytest.raises(UnsafeTarget) as caught:
        check_webhook_target(
            "http://metadata.internal/computeMetadata/v1",
            allow_private=False,
            resolve=resolving_to("169.254.169.254"),
        )
    assert str(caught.value) == (
        "webhook_url host 'metadata.internal' resolves to 169.254.169.254, a link-local "
        "address; imageq refuses loopback, private, link-local and metadata targets unless "
        "webhook.allow_private_targets is set"
    )


@pytest.mark.parametrize(
    "answer",
    [
        [PUBLIC_V4],
        [PUBLIC_V6],
        [PUBLIC_V4, PUBLIC_V6],
        ["::ffff:93.184.216.34"],
        ["64:ff9b::5db8:d822"],
    ],
)
def test_public_addresses_are_accepted(answer: Sequence[str]) -> None:
    """A host whose every address is global passes, mapped and NAT64 forms included."""
    check_webhook_target(
        "https://hooks.example.com/imageq", allow_private=False, resolve=resolving_to(*answer)
    )


@pytest.mark.parametrize(
    "answer",
    [[PUBLIC_V4, "10.0.0.5"], ["127.0.0.1", PUBLIC_V4], [PUBLIC_V6, "::1"], [PUBLIC_V4, "fd00::1"]],
)
def test_mixed_public_and_private_answer_is_refused(answer: Sequence[str]) -> None:
    """One non-global address in the answer is enough to refuse (DNS rebinding style)."""
    with pytest.raises(UnsafeTarget, match=re.escape("'rebind.example.com'")):
        check_webhook_target(
            "https://rebind.example.com/", allow_private=False, resolve=resolving_to(*answer)
        )


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.Google.Internal.", "metadata", "instance-data"]
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_metadata_hostnames_are_refused_by_name(host: str, allow_private: bool) -> None:
    """Metadata names are refused before any lookup, however they resolve; the flag lifts it."""
    calls: list[str] = []
    resolve = resolving_to(PUBLIC_V4, calls=calls)
    url = f"http://{host}/computeMetadata/v1/"
    if allow_private:
        check_webhook_target(url, allow_private=True, resolve=resolve)
        return
    with pytest.raises(UnsafeTarget, match="metadata endpoint"):
        check_webhook_target(url, allow_private=False, resolve=resolve)
    assert calls == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "javascript:alert(1)",
        "hooks.example.com/x",
        "",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_non_http_scheme_is_refused(url: str, allow_private: bool) -> None:
    """Only http and https are called, whatever the flag; nothing is resolved first."""
    calls: list[str] = []
    with pytest.raises(UnsafeTarget, match="scheme"):
        check_webhook_target(
            url, allow_private=allow_private, resolve=resolving_to(PUBLIC_V4, calls=calls)
        )
    assert calls == []


@pytest.mark.parametrize("url", ["http:///x", "https://:443/", "http://user@/"])
def test_url_without_host_is_refused(url: str) -> None:
    """A URL with no host is refused before resolving."""
    with pytest.raises(UnsafeTarget, match="no host"):
        check_webhook_target(url, allow_private=True, resolve=resolving_to(PUBLIC_V4))


def test_malformed_url_is_refused() -> None:
    """A URL urllib cannot split (an unclosed IPv6 bracket) is refused, not crashed on."""
    with pytest.raises(UnsafeTarget, match="not a valid URL"):
        check_webhook_target("http://[::1/", allow_private=True, resolve=resolving_to(PUBLIC_V4))


@pytest.mark.parametrize("resolve", [failing, resolving_to()])
@pytest.mark.parametrize("allow_private", [False, True])
def test_unresolvable_host_is_refused(resolve: Resolver, allow_private: bool) -> None:
    """A host with no addresses is refused with the flag set or not."""
    with pytest.raises(UnsafeTarget, match=re.escape("host 'nowhere.example' does not resolve")):
        check_webhook_target(
            "https://nowhere.example/", allow_private=allow_private, resolve=resolve
        )


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1"),
        ("http://10.0.0.5/hook", "10.0.0.5"),
        ("http://receiver.internal/hook", "10.0.0.5"),
        ("http://[::1]:9000/hook", "::1"),
    ],
)
def test_allow_private_accepts_private_addresses(url: str, address: str) -> None:
    """With the flag set a private or loopback receiver is fine."""
    check_webhook_target(url, allow_private=True, resolve=resolving_to(address))


def test_allow_private_with_real_resolver() -> None:
    """The real getaddrinfo reads a loopback literal, and the flag lets it through."""
    check_webhook_target("http://127.0.0.1:8080/x", allow_private=True)


def test_credentials_in_url_never_reach_the_message() -> None:
    """Messages name the host only: userinfo, paths and queries may hold tokens."""
    with pytest.raises(UnsafeTarget) as caught:
        check_webhook_target(
            "http://alice:s3cret-pw@10.0.0.5/hook?token=tok-123",
            allow_private=False,
            resolve=resolving_to("10.0.0.5"),
        )
    for leaked in ("s3cret-pw", "tok-123", "alice"):
        assert leaked not in str(caught.value)


def test_unreadable_address_in_answer_is_refused() -> None:
    """A resolver row whose address is not an IP is refused rather than skipped."""
    with pytest.raises(UnsafeTarget, match="cannot read"):
        check_webhook_target(
            "https://hooks.example.com/", allow_private=False, resolve=resolving_to("not-an-ip")
        )
