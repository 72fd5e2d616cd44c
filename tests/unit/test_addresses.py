"""The address rule by intent, on addresses alone: no resolver, no socket."""

from __future__ import annotations

import ipaddress

import pytest

from imageq.worker.webhooks.addresses import TargetPolicy, allowed_network_problem

STRICT = TargetPolicy()
LOOPBACK_ONLY = TargetPolicy(allow_loopback=True)
NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "fec0::/10",
)
# What a careless operator could write: every private block, including those that hold
# metadata addresses (100.64/10 holds Alibaba's, fc00::/7 AWS's and GCP's).
EVERYTHING_LISTED = TargetPolicy(
    allow_loopback=True,
    allowed_networks=tuple(ipaddress.ip_network(net) for net in (*NETWORKS, "169.254.0.0/16")),
)
ALL_POLICIES = [STRICT, LOOPBACK_ONLY, EVERYTHING_LISTED]

PUBLIC = ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"]
LOOPBACK = [
    "127.0.0.1",
    "127.255.255.254",  # the top of 127.0.0.0/8
    "::1",
    "::ffff:127.0.0.1",  # mapped
    "64:ff9b::7f00:1",  # NAT64
    "2002:7f00:1::",  # 6to4
]
PRIVATE = [
    ("10.0.0.5", "a private address"),
    ("10.255.255.255", "a private address"),
    ("172.16.0.0", "a private address"),
    ("172.31.255.255", "a private address"),
    ("192.168.1.1", "a private address"),
    ("100.64.0.1", "a shared (CGNAT) address"),
    ("100.127.255.255", "a shared (CGNAT) address"),
    ("fd12:3456::1", "a unique-local address"),
    ("fc00::1", "a unique-local address"),
    ("fec0::1", "a site-local address"),
    ("::ffff:10.0.0.5", "an address carrying a private address"),
    ("64:ff9b::a00:5", "an address carrying a private address"),  # NAT64
]
NEVER = [
    ("169.254.169.254", "a link-local address"),  # AWS, GCP, Azure, OCI ... metadata
    ("169.254.0.0", "a link-local address"),
    ("169.254.255.255", "a link-local address"),
    ("169.254.170.2", "a link-local address"),  # ECS task metadata
    ("fe80::1", "a link-local address"),
    ("fe80::1%eth0", "a link-local address"),
    ("febf:ffff::1", "a link-local address"),  # the top of fe80::/10
    ("fd00:ec2::254", "a cloud metadata address"),  # AWS IMDS over IPv6
    ("fd20:ce::254", "a cloud metadata address"),  # GCP over IPv6
    ("100.100.100.200", "a cloud metadata address"),  # Alibaba, inside 100.64/10
    ("168.63.129.16", "a cloud metadata address"),  # Azure, a public-looking address
    ("192.0.0.192", "a cloud metadata address"),  # Oracle Cloud
    ("0.0.0.0", "the unspecified address"),  # noqa: S104 - an address to refuse, not to bind
    ("0.1.2.3", "the unspecified address"),
    ("::", "the unspecified address"),
    ("::ffff:169.254.169.254", "an address carrying a link-local address"),
    ("::ffff:100.100.100.200", "an address carrying a cloud metadata address"),
    ("::ffff:0.0.0.0", "an address carrying the unspecified address"),
    ("64:ff9b::a9fe:a9fe", "an address carrying a link-local address"),  # NAT64
    ("64:ff9b:1::a9fe:a9fe", "an address carrying a link-local address"),  # local-use NAT64
    ("2002:a9fe:a9fe::", "an address carrying a link-local address"),  # 6to4
    ("::169.254.169.254", "an address carrying a link-local address"),  # IPv4-compatible
]


@pytest.mark.parametrize("address", PUBLIC)
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_global_addresses_are_allowed(address: str, policy: TargetPolicy) -> None:
    """A globally routable address needs no setting, wrapped or not."""
    assert policy.refusal(address) is None


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_only_when_allowed(address: str) -> None:
    """Loopback, however written, is refused by default and allowed by its own switch alone."""
    reason = STRICT.refusal(address)
    assert reason is not None
    assert "loopback" in reason
    assert "IMAGEQ_WEBHOOK__ALLOW_LOOPBACK" in reason
    assert LOOPBACK_ONLY.refusal(address) is None


@pytest.mark.parametrize(("address", "label"), PRIVATE)
def test_private_network_only_when_listed(address: str, label: str) -> None:
    """A private address is refused by default and with loopback allowed; allowed once listed."""
    for policy in (STRICT, LOOPBACK_ONLY):
        assert policy.refusal(address) == (
            f"{label}; imageq calls it only if IMAGEQ_WEBHOOK__ALLOWED_NETWORKS lists its network"
        )
    assert EVERYTHING_LISTED.refusal(address) is None


def test_a_listed_network_opens_nothing_beside_it() -> None:
    """Listing 10.1.0.0/16 opens that network, not the rest of 10/8 nor other private blocks."""
    policy = TargetPolicy(allowed_networks=(ipaddress.ip_network("10.1.0.0/16"),))
    assert policy.refusal("10.1.255.255") is None
    for outside in ("10.2.0.1", "10.0.255.255", "192.168.1.1", "127.0.0.1"):
        assert policy.refusal(outside) is not None, outside


@pytest.mark.parametrize(("address", "label"), NEVER)
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_link_local_and_metadata_are_never_allowed(
    address: str, label: str, policy: TargetPolicy
) -> None:
    """Link-local, metadata and unspecified addresses are refused whatever the settings say,
    even with an allow-list entry covering them."""
    assert policy.refusal(address) == (
        f"{label}; imageq never calls link-local, metadata or unspecified addresses"
    )


@pytest.mark.parametrize(
    "address",
    [
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "2001:db8::1",
        "2001:0:4136:e378:8000:63bf:f5ff:fffa",  # Teredo, for client 10.0.0.5
    ],
)
def test_other_non_global_addresses_are_refused(address: str) -> None:
    """Multicast, reserved, documentation and Teredo blocks are no receiver's address."""
    assert LOOPBACK_ONLY.refusal(address) is not None


def test_unreadable_address_is_refused() -> None:
    """Something that is not an IP (a resolver gone wrong) is refused rather than skipped."""
    assert STRICT.refusal("not-an-ip") == "an address imageq cannot read"


@pytest.mark.parametrize(
    ("network", "problem"),
    [
        ("127.0.0.0/8", "covers loopback"),
        ("127.0.0.1/32", "covers loopback"),
        ("0.0.0.0/0", "covers loopback"),
        ("::1/128", "covers loopback"),
        ("::/0", "covers loopback"),
        ("169.254.0.0/16", "a link-local address, which imageq never calls"),
        ("169.254.169.254/32", "a link-local address, which imageq never calls"),
        ("fe80::/64", "a link-local address, which imageq never calls"),
        ("fd00:ec2::254/128", "a cloud metadata address, which imageq never calls"),
    ],
)
def test_allow_list_entries_by_intent(network: str, problem: str) -> None:
    """An entry covering loopback (its own switch) or only never-allowed addresses is refused."""
    reason = allowed_network_problem(ipaddress.ip_network(network))
    assert reason is not None
    assert problem in reason


@pytest.mark.parametrize("network", [*NETWORKS, "10.1.2.3/32", "fd00::/8", "100.64.0.0/10"])
def test_private_entries_are_accepted(network: str) -> None:
    """Private blocks are fine entries, even those holding a metadata address (it stays shut)."""
    assert allowed_network_problem(ipaddress.ip_network(network)) is None
