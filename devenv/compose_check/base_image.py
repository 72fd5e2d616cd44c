"""The local base image, made from Debian's packages where no image registry is reachable: a
minimal bookworm root by debootstrap, trimmed, then `docker import`. The root's tarball is
kept in the cache folder under a hash of what made it, so a later run imports it again
instead of bootstrapping (and finds the image itself in the daemon's kept data root).

The root trusts the certificate authorities the host added (/usr/local/share/ca-certificates):
where the machine reaches the package index through a TLS-inspecting proxy, pip inside the
build must trust what the host trusts. Only this check's base carries them; the Dockerfile's
default base, the users' one, is untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from imageq.devenv.compose_check.daemon import DOCKER, Daemon

SUITE: Final = "bookworm"
MIRROR: Final = "http://deb.debian.org/debian"
# What the Dockerfile needs of its base (python3 with venv, certificates for the package
# index); the Redis and Prometheus images add their own packages on top.
PACKAGES: Final = ("python3", "python3-venv", "ca-certificates")
# Files a container never reads; the official slim images drop them too.
TRIMMED: Final = (
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "var/log/*",
)
# Service starts refused inside the image, as in Debian's official images: apt in a
# container must not try to start the daemons it installs.
POLICY_RC: Final = "#!/bin/sh\nexit 101\n"
HOST_AUTHORITIES: Final = Path("/usr/local/share/ca-certificates")
# Bump when the recipe below changes in a way the constants above do not show.
RECIPE_VERSION: Final = 1
DEBOOTSTRAP_TIMEOUT_S: Final = 1200.0


def recipe_key() -> str:
    """A short hash of everything that shapes the root: a changed input, a new image."""
    recipe = {
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": PACKAGES,
        "trimmed": TRIMMED,
        "policy": POLICY_RC,
        "version": RECIPE_VERSION,
        "authorities": {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in _authorities()
        },
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def ensure_base_image(daemon: Daemon, cache: Path) -> tuple[str, str]:
    """The base image's tag, and where it came from: the daemon, the tarball, or debootstrap."""
    key = recipe_key()
    tag = f"imageq-check/base:{key}"
    if daemon.run([DOCKER, "image", "inspect", tag], check=False).returncode == 0:
        return tag, "cached image"
    tarball = cache / f"base-{SUITE}-{key}.tar"
    source = "cached root tarball"
    if not tarball.exists():
        _bootstrap(tarball)
        source = "debootstrap"
    daemon.run([DOCKER, "import", str(tarball), tag], timeout_s=600)
    return tag, source


def _bootstrap(tarball: Path) -> None:
    """debootstrap a minimal root, trim it, and write it as a tarball (atomically)."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imageq-debootstrap-", dir=tarball.parent) as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=DEBOOTSTRAP_TIMEOUT_S,
        )
        for pattern in TRIMMED:
            for path in root.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        for authority in _authorities():
            shutil.copyfile(authority, root / "usr/local/share/ca-certificates" / authority.name)
        subprocess.run(
            ["chroot", str(root), "update-ca-certificates"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC)
        policy.chmod(0o755)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
            check=True,
            timeout=600,
        )
        partial.rename(tarball)


def _authorities() -> list[Path]:
    return sorted(HOST_AUTHORITIES.glob("*.crt")) if HOST_AUTHORITIES.is_dir() else []
