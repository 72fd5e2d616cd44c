"""The images the stack runs: Redis and Prometheus from Debian's packages on the local base
(deploy/local-images/), imageq's from the project's own Dockerfile through compose; and what
the check asks of them: not root, a health check, their size, and no secret in any layer."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Final

from imageq.devenv.compose_check.daemon import DOCKER, Daemon
from imageq.devenv.compose_check.stack import Stack

LOCAL_IMAGES: Final = {"REDIS_IMAGE": "redis", "PROMETHEUS_IMAGE": "prometheus"}
IMAGEQ_IMAGES: Final = ("imageq:latest", "imageq-simulator:latest")
BUILD_TIMEOUT_S: Final = 900.0


def build_local_images(daemon: Daemon, project: Path, base: str) -> dict[str, str]:
    """Build Redis's and Prometheus's images on `base`; variable -> tag, for compose's .env."""
    key = base.rpartition(":")[2]
    tags = {}
    for variable, name in LOCAL_IMAGES.items():
        tag = f"imageq-check/{name}:{key}"
        folder = project / "deploy/local-images"
        daemon.run(
            [
                DOCKER, "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
                "--file", str(folder / f"{name}.Dockerfile"), "--tag", tag, str(folder),
            ],
            timeout_s=BUILD_TIMEOUT_S,
        )  # fmt: skip
        tags[variable] = tag
    return tags


def build_imageq(stack: Stack) -> None:
    """`docker-compose build`: the Dockerfile users build, on the base in .env's PYTHON_IMAGE."""
    stack.compose("--profile", "demo", "build", timeout_s=BUILD_TIMEOUT_S)


def image_size_mb(daemon: Daemon, image: str) -> float:
    size = daemon.run([DOCKER, "image", "inspect", "--format", "{{.Size}}", image]).stdout
    return int(size) / 1e6


def image_user(daemon: Daemon, image: str) -> str:
    """The user the image's processes start as, by numeric uid inside a throwaway container."""
    command = [DOCKER, "run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u"]
    return daemon.run(command).stdout.strip()


def has_healthcheck(daemon: Daemon, image: str) -> bool:
    config = json.loads(
        daemon.run([DOCKER, "image", "inspect", "--format", "{{json .Config}}", image]).stdout
    )
    return bool((config.get("Healthcheck") or {}).get("Test"))


def secret_findings(daemon: Daemon, image: str, secrets: Iterable[str]) -> list[str]:
    """Where any secret shows up in the image: its history, its config, or a layer's bytes."""
    wanted = [secret.encode() for secret in secrets]
    found = []
    history = daemon.run([DOCKER, "history", "--no-trunc", image]).stdout.encode()
    config = daemon.run([DOCKER, "image", "inspect", image]).stdout.encode()
    for name, text in (("docker history", history), ("image config", config)):
        if any(secret in text for secret in wanted):
            found.append(f"{image}: a secret in its {name}")
    with tempfile.TemporaryFile() as saved:
        subprocess.run(
            [DOCKER, "save", image], stdout=saved, env=daemon.env, check=True, timeout=300
        )
        saved.seek(0)
        if _stream_contains(saved, wanted):
            found.append(f"{image}: a secret in a layer's bytes (docker save)")
    return found


def _stream_contains(stream: IO[bytes], wanted: list[bytes]) -> bool:
    """Whether any of `wanted` occurs in the binary stream, matches across chunk edges too."""
    overlap = max(len(w) for w in wanted) - 1
    tail = b""
    while chunk := stream.read(1 << 20):
        window = tail + chunk
        if any(w in window for w in wanted):
            return True
        tail = window[-overlap:]
    return False
