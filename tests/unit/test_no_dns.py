"""The suite's own fence: names other than `localhost` never reach a DNS server from a test."""

from __future__ import annotations

import socket

import pytest


@pytest.mark.parametrize("name", ["example.com", "hooks.example.com.", b"metadata.google.internal"])
def test_a_name_is_not_looked_up(name: str | bytes) -> None:
    """Any other name is unknown at once, with no query sent."""
    with pytest.raises(socket.gaierror, match="no DNS in tests"):
        socket.getaddrinfo(name, 443)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.0.0.1", "localhost"])
def test_literals_and_localhost_still_resolve(host: str) -> None:
    """Literal addresses and localhost answer as before (no DNS is needed for them)."""
    assert socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
