"""Hosts for real, on one machine: each host is a Linux network namespace with one address on a
private network whose bridge lives in a namespace of its own. The root namespace gets no address
and no interface on it, and no namespace has a route beyond it, so whatever runs on a host can
reach the other hosts and nothing else (not even the machine's loopback).

Every name starts with `imageq-netns-<pid>-`: parallel runs do not clash, and `remove_stale`
removes what a crashed run of this module left behind (and nothing else).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Self

PREFIX: Final = "imageq-netns-"
BRIDGE: Final = "br0"  # inside the bridge namespace
HOST_LINK: Final = "eth0"  # inside each host namespace
# Where the test network is taken from: the first /28 that overlaps nothing the machine has
# (an address or a route of the root namespace) at the time.
CANDIDATES: Final = ipaddress.IPv4Network("10.213.0.0/16")


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here; the message says why (tests skip with it)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raise with its stderr if it fails and `check` is set."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def why_unavailable() -> str | None:
    """Why this machine cannot run the namespace cluster, or None if it can (tries one)."""
    if os.uname().sysname != "Linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) on PATH"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def free_test_network(prefixlen: int = 28) -> ipaddress.IPv4Network:
    """A private /28 that overlaps no address or route of the root namespace."""
    taken = [
        ipaddress.ip_interface(word).network
        for line in ip("-4", "-o", "addr", "show").stdout.splitlines()
        for word in line.split()[3:4]
    ]
    for line in ip("-4", "route", "show").stdout.splitlines():
        first = line.split()[0]
        if first != "default":
            taken.append(ipaddress.ip_network(first, strict=False))
    for candidate in CANDIDATES.subnets(new_prefix=prefixlen):
        if not any(candidate.overlaps(network) for network in taken):
            return candidate
    raise NetnsUnavailable(f"every /{prefixlen} of {CANDIDATES} overlaps the machine's networks")


def root_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address of the root namespace (this process's)."""
    lines = ip("-o", "addr", "show").stdout.splitlines()
    return [ipaddress.ip_interface(line.split()[3]).ip for line in lines]


def root_links() -> list[str]:
    """The names of the root namespace's interfaces."""
    lines = ip("-o", "link", "show").stdout.splitlines()
    return [line.split(":")[1].strip().split("@")[0] for line in lines]


def remove_stale() -> list[str]:
    """Delete namespaces of earlier runs of this module whose process is gone; return them."""
    removed = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        owner = name.removeprefix(PREFIX).split("-", 1)[0]
        if owner.isdigit() and _alive(int(owner)):
            continue
        kill_namespace(name)
        ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive all the same
    return True


def kill_namespace(name: str) -> list[int]:
    """SIGKILL every process in the namespace: what a host's power cut looks like to the rest."""
    pids = [int(pid) for pid in ip("netns", "pids", name, check=False).stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@dataclass
class Network:
    """A bridge namespace and one namespace per host; `with Network(hosts) as net:` builds it
    and removes everything (processes included) on the way out, whatever happened."""

    hosts: Sequence[str]
    subnet: ipaddress.IPv4Network = field(default_factory=free_test_network)
    run_id: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    _processes: dict[str, list[subprocess.Popen[bytes]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _made: list[str] = field(default_factory=list, init=False, repr=False)

    def namespace(self, host: str) -> str:
        return f"{self.run_id}-{host}"

    @property
    def bridge_namespace(self) -> str:
        return f"{self.run_id}-bridge"

    def address(self, host: str) -> str:
        """The host's address: the subnet's second, third, ... address, in `hosts` order."""
        return str(self.subnet.network_address + 1 + list(self.hosts).index(host))

    def create(self) -> Self:
        if len(self.hosts) > self.subnet.num_addresses - 2:
            raise ValueError(f"{len(self.hosts)} hosts do not fit in {self.subnet}")
        bridge = self.bridge_namespace
        self._add_namespace(bridge)
        ip("-n", bridge, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", bridge, "link", "set", BRIDGE, "up")
        for host in self.hosts:
            name = self.namespace(host)
            self._add_namespace(name)
            # Both ends are born inside namespaces of this run: never in the root namespace.
            port = f"v-{host}"[:15]
            ip("-n", bridge, "link", "add", port, "type", "veth",
               "peer", "name", HOST_LINK, "netns", name)  # fmt: skip
            ip("-n", bridge, "link", "set", port, "master", BRIDGE, "up")
            ip("-n", name, "addr", "add", f"{self.address(host)}/{self.subnet.prefixlen}",
               "dev", HOST_LINK)  # fmt: skip
            ip("-n", name, "link", "set", HOST_LINK, "up")
            ip("-n", name, "link", "set", "lo", "up")
        return self

    def _add_namespace(self, name: str) -> None:
        made = ip("netns", "add", name, check=False)
        if made.returncode != 0:
            raise NetnsUnavailable(f"`ip netns add` failed: {made.stderr.strip()}")
        self._made.append(name)

    def routes(self, host: str) -> list[str]:
        """The host's IPv4 and IPv6 routes, one line each."""
        name = self.namespace(host)
        lines = ip("-n", name, "-4", "route", "show").stdout.splitlines()
        return lines + ip("-n", name, "-6", "route", "show").stdout.splitlines()

    def start(
        self, host: str, command: Sequence[str], *, env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        """Run `command` on the host, output to `log`; stopped by `destroy` at the latest."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace(host), *command],
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._processes.setdefault(host, []).append(process)
        return process

    def run(
        self, host: str, command: Sequence[str], *, env: Mapping[str, str], timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` on the host to its end; its output is returned, not checked."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace(host), *command],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def kill_host(self, host: str) -> list[int]:
        """SIGKILL every process on the host at once; return their pids once they are gone."""
        pids = kill_namespace(self.namespace(host))
        for process in self._processes.get(host, []):
            process.wait(timeout=10)
        return pids

    def destroy(self) -> None:
        for name in self._made:
            kill_namespace(name)
        for process in [each for processes in self._processes.values() for each in processes]:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for name in reversed(self._made):
            ip("netns", "del", name, check=False)
        self._made.clear()

    def __enter__(self) -> Self:
        try:
            return self.create()
        except BaseException:
            self.destroy()
            raise

    def __exit__(self, *_: object) -> None:
        self.destroy()


def wait_for(
    check: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.2
) -> float:
    """Wait until `check()` holds; return the seconds it took, or fail naming `what`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not {what} within {timeout_s} s")
        time.sleep(every_s)
    return time.monotonic() - started
