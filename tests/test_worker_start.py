"""A worker with no API key refuses to start, saying why, instead of failing every job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devenv.redis_server import RedisServer


def test_worker_without_key_exits_with_a_clear_message(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The worker exits non-zero and names IMAGEQ_API__KEY."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEQ_")}
    env["IMAGEQ_REDIS__BROKER_URL"] = redis_server.url(7)
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--without-mingle"],
        env=env,
        cwd=tmp_path,  # away from any developer .env
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "IMAGEQ_API__KEY" in result.stdout + result.stderr
