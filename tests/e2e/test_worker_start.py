"""A worker with no API key refuses to start, saying why, instead of failing every job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imageq.devenv.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]


def test_worker_without_key_exits_with_a_clear_message(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The worker exits non-zero and names IMAGEQ_API__KEY."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEQ_")}
    env["IMAGEQ_REDIS__BROKER_URL"] = redis_server.url(7)
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "imageq.worker.app", "worker", "--without-mingle"],
        env=env,
        cwd=tmp_path,  # away from any developer .env
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "IMAGEQ_API__KEY" in result.stdout + result.stderr


def test_gevent_pool_from_settings_alone_is_refused_and_imageq_worker_patches(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """IMAGEQ_WORKER__POOL=gevent without `-P gevent`: Celery would not patch, every greenlet
    would block the others; the worker exits saying so. `imageq worker` names the pool itself,
    so the same settings start a (patched) worker."""
    pytest.importorskip("gevent", reason="the benchmark's extra: pip install -e '.[bench]'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEQ_")}
    env.update(
        IMAGEQ_REDIS__BROKER_URL=redis_server.url(7),
        IMAGEQ_REDIS__STORE_URL=redis_server.url(8),
        IMAGEQ_API__KEY="sk-test-0123456789",
        IMAGEQ_WORKER__POOL="gevent",
        IMAGEQ_OBSERVABILITY__METRICS_PORT="0",
    )
    celery = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "imageq.worker.app",
        "worker",
        "--without-mingle",
    ]
    refused = subprocess.run(
        celery, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode != 0
    assert "-P gevent" in refused.stdout + refused.stderr

    imageq = [sys.executable, "-m", "imageq.cli", "worker", "--hostname=gevent-check@%h"]
    process = subprocess.Popen(
        imageq,
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:  # ends when the worker exits; bounded by the test timeout
            seen.append(line)
            if " ready." in line:
                break
        assert any(" ready." in line for line in seen), "".join(seen)[-3000:]
        assert any("gevent" in line for line in seen), "".join(seen)[-3000:]
    finally:
        process.terminate()
        process.communicate(timeout=30)
