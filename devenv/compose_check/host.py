"""The machine around the check: whether Docker can be had here, installing it from Debian's
packages, and a snapshot of what the check must leave as it found (firewall, forwarding,
interfaces, mounts)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from imageq.worker.errors import ImageqError

# Debian's packages: the engine (20.10), the standalone compose (1.29), the base image's
# root, and iptables-save to compare the firewall before and after.
PACKAGES: Final = {
    "dockerd": "docker.io",
    "docker-compose": "docker-compose",
    "debootstrap": "debootstrap",
    "iptables-save": "iptables",
}
# While apt installs docker.io, its maintainer script must not start the system's daemon
# (that one would write firewall rules): this policy file refuses every service start.
POLICY_RC: Final = Path("/usr/sbin/policy-rc.d")
APT_TIMEOUT_S: Final = 900.0
# The names dockerd gives the interfaces it makes: a bridge per network, a veth per container.
DOCKER_INTERFACE: Final = re.compile(r"docker\d+|br-[0-9a-f]{12}|veth[0-9a-f]{7}")


class Unavailable(ImageqError):
    """Docker cannot be had on this machine; the check skips, saying why."""


def require_docker() -> None:
    """Install what is missing from Debian's packages; `Unavailable` where that cannot be."""
    if os.geteuid() != 0:
        raise Unavailable("not root: the check starts a Docker daemon of its own")
    missing = sorted({package for tool, package in PACKAGES.items() if not _which(tool)})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise Unavailable(f"no apt-get to install {', '.join(missing)}")
    added_policy = not POLICY_RC.exists()
    if added_policy:
        POLICY_RC.write_text(
            "#!/bin/sh\n# written by imageq's compose check while apt runs\nexit 101\n"
        )
        POLICY_RC.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        ):
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S
            )
            if result.returncode != 0:
                tail = result.stderr.strip().splitlines()[-3:]
                raise Unavailable(f"{' '.join(command[:2])} failed: {' / '.join(tail)}")
    finally:
        if added_policy:
            POLICY_RC.unlink(missing_ok=True)
    if still := sorted(tool for tool in PACKAGES if not _which(tool)):
        raise Unavailable(f"installed, yet not found: {', '.join(still)}")


def _which(tool: str) -> str | None:
    return shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")


@dataclass(frozen=True)
class HostState:
    """What the check must not change: the firewall, forwarding, interfaces and mounts."""

    iptables: str
    ip_forward: str
    interfaces: frozenset[str]
    mounts: frozenset[str]

    def differences(self, later: HostState) -> list[str]:
        """One line per thing that is not as it was."""
        found = []
        if later.iptables != self.iptables:
            found.append("the firewall rules (iptables-save) changed")
        if later.ip_forward != self.ip_forward:
            found.append(f"net.ipv4.ip_forward went {self.ip_forward} -> {later.ip_forward}")
        if added := sorted(later.interfaces - self.interfaces):
            found.append(f"interfaces left behind: {', '.join(added)}")
        if added := sorted(later.mounts - self.mounts):
            found.append(f"mounts left behind: {', '.join(added)}")
        return found


def read_host_state(roots: tuple[Path, ...]) -> HostState:
    """The firewall, forwarding, Docker's interfaces and the mount points under `roots` as
    they are now. Only Docker's kind of interface and only mounts under the check's own folders
    count: other work on the machine may add its own meanwhile."""
    iptables = subprocess.run(
        ["iptables-save"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    # iptables-save stamps its output with the time; the rules are the rest.
    rules = "\n".join(line for line in iptables.splitlines() if not line.startswith("#"))
    return HostState(
        iptables=rules,
        ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        interfaces=frozenset(
            name for name in os.listdir("/sys/class/net") if DOCKER_INTERFACE.fullmatch(name)
        ),
        mounts=frozenset(
            point
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if any(Path(point := line.split()[1]).is_relative_to(root) for root in roots)
        ),
    )
