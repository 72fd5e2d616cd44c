"""The URL guard (webhooks, reference images), with a fake resolver and real resolution of
literal IPs: the class of each address is tests/unit/test_addresses.py's."""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from imageq.config import Settings, WebhookSettings
from imageq.producers.jobs import build_job
from imageq.worker.errors import InvalidParams, UnsafeTarget
from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.guard import Resolver, check_target, target_policy

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:4700::1111"
STRICT = TargetPolicy()
LOOPBACK_ONLY = TargetPolicy(allow_loopback=True)
# Entries that cover link-local and metadata blocks (160/4, fc00::/6), which stay refused.
PRIVATE_LISTED = target_policy(
    WebhookSettings(allow_loopback=True, allowed_networks="10.0.0.0/8,fc00::/6,160.0.0.0/4")
)

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
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("169.254.169.254", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("100.64.0.1", "CGNAT"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not to bind
        ("::ffff:169.254.169.254", "carrying a link-local"),
    ],
)
def test_non_global_answer_is_refused_by_default(address: str, kind: str) -> None:
    """A name resolving to a non-global address is refused, naming the host and the class."""
    with pytest.raises(UnsafeTarget, match=kind) as caught:
        check_target("https://hooks.example.com/x", STRICT, resolve=resolving_to(address))
    assert "webhook_url host 'hooks.example.com' resolves to" in str(caught.value)


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
        "http://[fd00:ec2::254]/latest/meta-data",
        "http://100.100.100.200/latest/meta-data",
    ],
)
def test_literal_ip_hosts_are_resolved_and_refused(url: str) -> None:
    """Literal and oddly written IPs go through the real getaddrinfo (no network) and fail."""
    with pytest.raises(UnsafeTarget, match="webhook_url host"):
        check_target(url, STRICT)


def test_message_names_host_class_and_setting_not_the_resolved_address() -> None:
    """The submitter learns which host, what class and which setting lifts it; not the address
    the name resolved to (that would map the private network for them)."""
    with pytest.raises(UnsafeTarget) as caught:
        check_target("http://hooks.internal/x", STRICT, resolve=resolving_to("10.9.8.7"))
    assert str(caught.value) == (
        "webhook_url host 'hooks.internal' resolves to a private address; imageq calls it only"
        " if IMAGEQ_WEBHOOK__ALLOWED_NETWORKS lists its network"
    )
    assert "10.9.8.7" not in str(caught.value)


def test_metadata_message_says_no_setting_lifts_it() -> None:
    """A metadata address is refused with no setting to point at."""
    with pytest.raises(UnsafeTarget) as caught:
        check_target("http://169.254.169.254/", PRIVATE_LISTED, field="reference_images[0]")
    assert str(caught.value) == (
        "reference_images[0] host '169.254.169.254' is a link-local address; imageq never calls"
        " link-local, metadata or unspecified addresses"
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
    check_target("https://hooks.example.com/imageq", STRICT, resolve=resolving_to(*answer))


@pytest.mark.parametrize(
    "answer",
    [[PUBLIC_V4, "10.0.0.5"], ["127.0.0.1", PUBLIC_V4], [PUBLIC_V6, "::1"], [PUBLIC_V4, "fd00::1"]],
)
def test_mixed_public_and_private_answer_is_refused(answer: Sequence[str]) -> None:
    """One refused address in the answer is enough to refuse (DNS rebinding style)."""
    with pytest.raises(UnsafeTarget, match=re.escape("'rebind.example.com'")):
        check_target("https://rebind.example.com/", STRICT, resolve=resolving_to(*answer))


@pytest.mark.parametrize(
    ("url", "address", "policy"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1", LOOPBACK_ONLY),
        ("http://[::1]:9000/hook", "::1", LOOPBACK_ONLY),
        ("http://localhost:9000/hook", "127.0.0.1", LOOPBACK_ONLY),
        ("http://10.0.0.5/hook", "10.0.0.5", PRIVATE_LISTED),
        ("http://receiver.internal/hook", "10.0.0.5", PRIVATE_LISTED),
        ("http://receiver.internal/hook", "fd12::5", PRIVATE_LISTED),
    ],
)
def test_allowances_by_intent(url: str, address: str, policy: TargetPolicy) -> None:
    """Loopback passes with its switch, a private address once its network is listed."""
    check_target(url, policy, resolve=resolving_to(address))


@pytest.mark.parametrize(
    ("address", "policy"),
    [
        ("127.0.0.1", STRICT),
        ("10.0.0.5", LOOPBACK_ONLY),
        ("192.168.1.1", PRIVATE_LISTED),
        ("169.254.169.254", PRIVATE_LISTED),
        ("fe80::1", PRIVATE_LISTED),
        ("fd00:ec2::254", PRIVATE_LISTED),
    ],
)
def test_allowances_go_no_further(address: str, policy: TargetPolicy) -> None:
    """Each allowance opens what it names: not loopback's neighbours, not unlisted networks,
    never link-local or metadata even when a listed network covers them."""
    with pytest.raises(UnsafeTarget):
        check_target("http://receiver.internal/hook", policy, resolve=resolving_to(address))


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.Google.Internal.", "metadata", "instance-data"]
)
@pytest.mark.parametrize("policy", [STRICT, PRIVATE_LISTED])
def test_metadata_hostnames_are_refused_by_name(host: str, policy: TargetPolicy) -> None:
    """Metadata names are refused before any lookup, however they resolve, whatever the policy."""
    calls: list[str] = []
    with pytest.raises(UnsafeTarget, match="metadata endpoint"):
        check_target(
            f"http://{host}/computeMetadata/v1/",
            policy,
            resolve=resolving_to(PUBLIC_V4, calls=calls),
        )
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
@pytest.mark.parametrize("policy", [STRICT, PRIVATE_LISTED])
def test_non_http_scheme_is_refused(url: str, policy: TargetPolicy) -> None:
    """Only http and https are called, whatever the policy; nothing is resolved first."""
    calls: list[str] = []
    with pytest.raises(UnsafeTarget, match="scheme"):
        check_target(url, policy, resolve=resolving_to(PUBLIC_V4, calls=calls))
    assert calls == []


@pytest.mark.parametrize("url", ["http:///x", "https://:443/", "http://user@/"])
def test_url_without_host_is_refused(url: str) -> None:
    """A URL with no host is refused before resolving."""
    with pytest.raises(UnsafeTarget, match="no host"):
        check_target(url, PRIVATE_LISTED, resolve=resolving_to(PUBLIC_V4))


def test_malformed_url_is_refused() -> None:
    """A URL urllib cannot split (an unclosed IPv6 bracket) is refused, not crashed on."""
    with pytest.raises(UnsafeTarget, match="not a valid URL"):
        check_target("http://[::1/", PRIVATE_LISTED, resolve=resolving_to(PUBLIC_V4))


@pytest.mark.parametrize("resolve", [failing, resolving_to()])
@pytest.mark.parametrize("policy", [STRICT, PRIVATE_LISTED])
def test_unresolvable_host_is_refused(resolve: Resolver, policy: TargetPolicy) -> None:
    """A host with no addresses is refused whatever the policy."""
    with pytest.raises(UnsafeTarget, match=re.escape("host 'nowhere.example' does not resolve")):
        check_target("https://nowhere.example/", policy, resolve=resolve)


def test_loopback_allowance_with_real_resolver() -> None:
    """The real getaddrinfo reads a loopback literal, and the switch lets it through."""
    check_target("http://127.0.0.1:8080/x", LOOPBACK_ONLY)


def test_credentials_in_url_never_reach_the_message() -> None:
    """Messages name the host only: userinfo, paths and queries may hold tokens."""
    with pytest.raises(UnsafeTarget) as caught:
        check_target(
            "http://alice:s3cret-pw@10.0.0.5/hook?token=tok-123",
            STRICT,
            resolve=resolving_to("10.0.0.5"),
        )
    for leaked in ("s3cret-pw", "tok-123", "alice"):
        assert leaked not in str(caught.value)


def test_unreadable_address_in_answer_is_refused() -> None:
    """A resolver row whose address is not an IP is refused rather than skipped."""
    with pytest.raises(UnsafeTarget, match="cannot read"):
        check_target("https://hooks.example.com/", STRICT, resolve=resolving_to("not-an-ip"))


# -- at enqueue: build_job applies the rule to webhook and reference-image URLs ------------------

SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA=="
DATA_URI = "data:image/png;base64,iVBORw0KGgo="


def _settings(**webhook: Any) -> Settings:
    return Settings(_env_file=None, webhook={"secrets": SECRET, **webhook})


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("webhook_url", "http://169.254.169.254/latest", "webhook_url"),
        ("webhook_url", "http://10.0.0.5/hook", "webhook_url"),
        ("reference_images", [DATA_URI, "http://[fd00:ec2::254]/x.png"], "reference_images[1]"),
        ("reference_images", ["http://100.100.100.200/x.png"], "reference_images[0]"),
        ("reference_images", ["HTTP://0x7f.1/ref.png"], "reference_images[0]"),
        ("reference_images", ["http://metadata.google.internal/x"], "reference_images[0]"),
    ],
)
def test_enqueue_refuses_internal_targets(option: str, value: Any, field: str) -> None:
    """Webhook and reference-image URLs are checked by the same rule before anything is queued,
    although the API, not imageq, fetches references: an internal address there aims a job at
    a private network all the same."""
    settings = _settings(allow_loopback=False, allowed_networks="192.168.0.0/16")
    with pytest.raises(InvalidParams) as caught:
        build_job(settings, "x", aspect_ratio="1:1", resolution="1K", now=1.0, **{option: value})
    assert caught.value.field == field


def test_enqueue_allows_by_intent() -> None:
    """Loopback with its switch, a listed network, and data URIs (nothing to reach) pass."""
    settings = _settings(allow_loopback=True, allowed_networks="192.168.0.0/16")
    job = build_job(
        settings,
        "x",
        aspect_ratio="1:1",
        resolution="1K",
        now=1.0,
        webhook_url="http://127.0.0.1:9/hook",
        reference_images=[DATA_URI, "http://192.168.4.5/ref.png", "http://[::1]:8/ref.png"],
    )
    assert job.webhook_url == "http://127.0.0.1:9/hook"
    assert len(job.params["reference_images"]) == 3
