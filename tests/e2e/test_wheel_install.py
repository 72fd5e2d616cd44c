"""imageq as an application installs it: a wheel built from this repository, holding `imageq`
alone, installed without extras in a fresh virtual environment, and run from an application
directory with top-level `config` and `worker` packages of its own. A Celery worker from that
environment takes a job the application enqueues, through to `succeeded`, against the test
Redis and the simulator on loopback.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imageq.devenv.redis_server import RedisServer
from imageq.devenv.worker_process import settings_env
from tests.conftest import DEADLINE_S, wait_for

# Building and installing take most of the time, not the job.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
# The wheel is built from a copy without these, so stale build output cannot leak into it.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    ".hypothesis", "tests", "bench", "docs",
)  # fmt: skip
# Extras and tools a producer or a worker does without: `pip install imageq` brings none.
EXTRAS_ONLY = ("aiohttp", "flower", "fsspec", "gevent", "hypothesis", "matplotlib", "pytest")
WHEEL_BROKER_DB, WHEEL_STORE_DB = 12, 13  # no other worker of the session reads these

# The application's own script: its `config` and `worker` are its own, imageq's are imageq's.
ENQUEUE_SCRIPT = """\
import json
import sys
from pathlib import Path

import config
import worker
from imageq import enqueue, wait

import imageq.config
import imageq.worker

here = Path(__file__).resolve().parent
assert Path(config.__file__).resolve() == here / "config" / "__init__.py", config.__file__
assert Path(worker.__file__).resolve() == here / "worker" / "__init__.py", worker.__file__
assert config.OWNER == worker.OWNER == "the application"
assert imageq.config is not config and imageq.worker is not worker
job_id = enqueue("a lighthouse at dusk", aspect_ratio="16:9", resolution="1K", quality="low")
job = wait(job_id, timeout_s=float(sys.argv[1]))
assert sys.modules["config"] is config and sys.modules["worker"] is worker
print(json.dumps({"status": job.status.value, "outputs": len(job.outputs),
                  "imageq": imageq.__file__}))
"""


def run(command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """Run to the end; fail the test with its output if it exits non-zero."""
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=240, check=False, **options
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """imageq's wheel, built by pip from a clean copy of the repository."""
    source = tmp_path_factory.mktemp("source") / "imageq"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCE)
    dist = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)]
    )
    (built,) = dist.glob("imageq-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a new virtual environment with the wheel installed, no extras."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", str(wheel)])
    return python


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """An application with top-level `config` and `worker` packages, as a service has."""
    app = tmp_path / "app"
    for package in ("config", "worker"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text('OWNER = "the application"\n')
    (app / "enqueue_one.py").write_text(ENQUEUE_SCRIPT)
    return app


@pytest.fixture
def app_env(settings_values: dict[str, Any], redis_server: RedisServer) -> dict[str, str]:
    """The session's settings on Redis databases of their own, in a clean environment."""
    values = copy.deepcopy(settings_values)
    values["redis"] = {
        "broker_url": redis_server.url(WHEEL_BROKER_DB),
        "store_url": redis_server.url(WHEEL_STORE_DB),
    }
    values["observability"] = {"metrics_port": 0, "log_task_lines": True}
    outside = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEQ_", "PYTHON"))}
    return {**outside, **settings_env(values), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def app_worker(fresh_python: Path, app_dir: Path, app_env: dict[str, str]) -> Iterator[Path]:
    """`python -m celery -A imageq.worker.app worker` from the fresh environment, in the app's
    directory (so the app's packages come first on sys.path); yields its log."""
    log_path = app_dir.parent / "worker.log"
    command = [
        str(fresh_python), "-m", "celery", "-A", "imageq.worker.app", "worker",
        "--loglevel=INFO", "--hostname=wheel@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, cwd=app_dir, env=app_env, stdout=log, stderr=subprocess.STDOUT
        )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"worker exited at start:\n{log_path.read_text()[-3000:]}")
            return " ready." in log_path.read_text(errors="replace")

        wait_for(ready, timeout_s=60, what="the fresh environment's worker to be ready")
        yield log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_wheel_holds_imageq_alone(wheel: Path) -> None:
    """Top-level names: `imageq` and its .dist-info, nothing else; the linked folders, their
    data files and both commands are inside."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (dist_info,) = {name.split("/")[0] for name in names} - {"imageq"}
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert {name.split("/")[0] for name in names} == {"imageq", dist_info}
    assert re.fullmatch(r"imageq-[^-/]+\.dist-info", dist_info), dist_info
    for folder in ("cli", "config", "devenv", "ops", "producers", "simulator", "worker"):
        assert f"imageq/{folder}/__init__.py" in names, folder
    assert "imageq/py.typed" in names
    assert any(re.fullmatch(r"imageq/worker/store/lua/\w+\.lua", name) for name in names)
    assert any(re.fullmatch(r"imageq/worker/domain/schemas/.+\.json", name) for name in names)
    assert "imageq/cli/schemas/error.json" in names  # the CLI's JSON contract
    assert re.search(r"^imageq = imageq\.cli\.main:main$", entry_points, re.M)
    assert re.search(r"^imageq-simulator = ", entry_points, re.M)


def test_plain_install_leaves_the_extras_out(fresh_python: Path, tmp_path: Path) -> None:
    """No extra's package is installed; the simulator says which extra it needs; the CLI runs."""
    listed = run([str(fresh_python), "-m", "pip", "list", "--format=json"], cwd=tmp_path)
    installed = {row["name"].lower() for row in json.loads(listed.stdout)}
    assert "imageq" in installed
    assert installed.isdisjoint(EXTRAS_ONLY), sorted(installed & set(EXTRAS_ONLY))
    simulator = subprocess.run(
        [str(fresh_python), "-c", "import imageq.simulator"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert simulator.returncode != 0
    assert "pip install 'imageq[simulator]'" in simulator.stderr
    run([str(fresh_python.with_name("imageq")), "--help"], cwd=tmp_path)


def test_application_with_its_own_config_and_worker_runs_a_job(
    fresh_python: Path, app_dir: Path, app_env: dict[str, str], app_worker: Path
) -> None:
    """The app enqueues and waits with `from imageq import enqueue, wait`; the worker from the
    fresh environment takes the job to `succeeded`; neither loads imageq from the repository."""
    result = run(
        [str(fresh_python), "enqueue_one.py", str(DEADLINE_S + 10)], cwd=app_dir, env=app_env
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["status"] == "succeeded", app_worker.read_text()[-3000:]
    assert report["outputs"] >= 1
    assert Path(report["imageq"]).is_relative_to(fresh_python.parents[1])
