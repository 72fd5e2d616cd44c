"""An invalid setting that a caller does not use cannot break an import: `import imageq` and the
producer API load without reading settings, and only what reads them fails, naming the variable.
Each case runs in a fresh interpreter, with the bad variable in its environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

BAD = {"IMAGEQ_POLLING__JITTER_S": "10"}  # jitter above the poll interval: refused


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Nothing here reaches a server: the broker URL names a port on loopback that no test uses,
    # and every case ends before a connection would be made.
    env = {
        **os.environ,
        **BAD,
        "IMAGEQ_REDIS__BROKER_URL": "redis://127.0.0.1:9/0",
        "IMAGEQ_REDIS__STORE_URL": "redis://127.0.0.1:9/0",
    }
    command = [sys.executable, "-c", code] if code else [sys.executable, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_imports_succeed_with_an_invalid_unrelated_setting() -> None:
    """The public names, the producer API and the worker's app module all import; a caller that
    passes its own settings builds its queue."""
    result = _python(
        "import sys, imageq\n"
        "from imageq import ImageQueue, enqueue, enqueue_many, get, wait, cancel, verify_webhook\n"
        "import imageq.producers.api, imageq.worker.app\n"
        "from imageq.config import Settings\n"
        "ImageQueue(Settings(polling={'jitter_s': 0.5}))\n"
        "print('celery app built:', 'imageq.worker.tasks' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "celery app built: False" in result.stdout


def test_using_the_default_queue_names_the_setting() -> None:
    """`enqueue` on the default queue reads the settings: `InvalidSettings` names the variable."""
    result = _python(
        "from imageq import enqueue\nenqueue('a', aspect_ratio='1:1', resolution='1K')"
    )
    assert result.returncode != 0
    assert "InvalidSettings" in result.stderr
    assert "IMAGEQ_POLLING" in result.stderr
    assert "jitter_s" in result.stderr


def test_starting_a_worker_names_the_setting() -> None:
    """`celery -A imageq.worker.app worker` refuses to start and says which setting is wrong."""
    result = _python("", "-m", "celery", "-A", "imageq.worker.app", "worker", "--without-mingle")
    assert result.returncode != 0
    assert "jitter_s" in result.stdout + result.stderr
