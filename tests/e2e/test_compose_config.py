"""docker-compose.yml validated by compose itself: `docker compose config` (the plugin) and
`docker-compose config` (the standalone 1.29 of Debian 12, which `make compose-check` runs).
Child processes, so not in the unit layer; each is skipped where its compose is not installed.
Neither needs an engine. The stack itself is run by `make compose-check` (docs/compose.md).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROFILES = ["--profile", "demo", "--profile", "monitoring"]


def compose_plugin_works() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
    )
    return result.returncode == 0


def project_copy(tmp_path: Path) -> Path:
    """The compose file beside `.env` made from `.env.example`, as the README's first step
    does (the file requires `.env`); nothing of a developer's own `.env` is read."""
    folder = tmp_path / "imageq"
    folder.mkdir()
    shutil.copy(ROOT / "docker-compose.yml", folder)
    shutil.copy(ROOT / ".env.example", folder / ".env")
    return folder


@pytest.mark.skipif(
    not compose_plugin_works(),
    reason="`docker compose` is not available here (no docker CLI or no compose plugin)",
)
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config -q` validates the file (it needs no engine), every profile on."""
    result = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.yml", *PROFILES, "config", "-q"],
        cwd=project_copy(tmp_path), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="the standalone docker-compose is not installed here (Debian's docker-compose)",
)
def test_standalone_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """docker-compose 1.29 reads the same file: every profile, defaults filled as without .env
    values, and the local images of the check in place of the pulled ones."""
    folder = project_copy(tmp_path)
    result = subprocess.run(
        ["docker-compose", *PROFILES, "config"],
        cwd=folder, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "image: redis:7.2-alpine" in result.stdout
    assert "PYTHON_IMAGE: python:3.11" in result.stdout
    (folder / ".env").write_text("REDIS_IMAGE=local/redis:1\nPYTHON_IMAGE=local/base:1\n")
    swapped = subprocess.run(
        ["docker-compose", *PROFILES, "config"],
        cwd=folder, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert swapped.returncode == 0, swapped.stderr
    assert "image: local/redis:1" in swapped.stdout
    assert "PYTHON_IMAGE: local/base:1" in swapped.stdout
