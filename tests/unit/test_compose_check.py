"""The compose check's pure parts and its skip path (the run itself is `make compose-check`)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imageq.devenv.compose_check import __main__ as compose_check
from imageq.devenv.compose_check import host
from imageq.devenv.compose_check.host import HostState, Unavailable
from imageq.devenv.compose_check.images import _stream_contains


def test_skips_with_exit_0_when_not_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not root: it says why and exits 0, before touching its cache or starting anything."""
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    cache = tmp_path / "cache"
    assert compose_check.main(["--cache", str(cache)]) == 0
    assert "SKIPPED, Docker cannot be had here: not root" in capsys.readouterr().out
    assert not cache.exists()


def test_no_apt_and_a_missing_tool_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root, a tool missing and no apt-get to install it: Unavailable, naming the package."""
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(host, "_which", lambda tool: None if tool == "debootstrap" else tool)
    monkeypatch.setattr("shutil.which", lambda tool, **_: None)
    with pytest.raises(Unavailable, match="no apt-get to install debootstrap"):
        host.require_docker()


def state(**changes: object) -> HostState:
    values: dict[str, object] = {
        "iptables": "*filter\nCOMMIT",
        "ip_forward": "0",
        "interfaces": frozenset(),
        "mounts": frozenset(),
    }
    return HostState(**{**values, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("later", "expected"),
    [
        (state(), []),
        (state(iptables="*nat\nCOMMIT"), ["the firewall rules (iptables-save) changed"]),
        (state(ip_forward="1"), ["net.ipv4.ip_forward went 0 -> 1"]),
        (
            state(interfaces=frozenset({"br-0123456789ab"})),
            ["interfaces left behind: br-0123456789ab"],
        ),
        (state(mounts=frozenset({"/run/x/netns"})), ["mounts left behind: /run/x/netns"]),
    ],
)
def test_host_state_differences(later: HostState, expected: list[str]) -> None:
    """Each kind of change is named; an unchanged host has none."""
    assert state().differences(later) == expected


@pytest.mark.parametrize(
    ("name", "docker_made"),
    [("br-0123456789ab", True), ("veth1a2b3c4", True), ("docker0", True), ("eth0", False),
     ("veth-imageq-a", False), ("br-test", False)],
)  # fmt: skip
def test_only_dockers_interfaces_are_compared(name: str, docker_made: bool) -> None:
    """Interfaces other work on the machine makes (its own veths and bridges) are not counted."""
    assert bool(host.DOCKER_INTERFACE.fullmatch(name)) is docker_made


def test_a_secret_split_across_chunks_is_found() -> None:
    """The layer scan finds a secret that straddles two 1 MiB reads."""
    secret = b"sk-compose-check-0123456789abcdef"
    data = b"x" * ((1 << 20) - 10) + secret + b"y" * 100
    assert _stream_contains(io.BytesIO(data), [secret])
    assert not _stream_contains(io.BytesIO(data.replace(secret, b"z" * len(secret))), [secret])
