"""`imageq sizing` as a user runs it: the installed command, settings from the environment,
no Redis needed; the answer against its schema and the settings it was given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

pytestmark = pytest.mark.e2e

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "cli" / "schemas" / "sizing.json").read_text()
)
# Nowhere to connect: the command must not try.
NO_REDIS = "redis://127.0.0.1:9/0"


def sizing(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEQ_")}
    clean |= {"IMAGEQ_REDIS__BROKER_URL": NO_REDIS, "IMAGEQ_REDIS__STORE_URL": NO_REDIS, **env}
    return subprocess.run(
        [sys.executable, "-m", "imageq.cli", "sizing", *args],
        env=clean, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_sizing_takes_its_defaults_from_the_settings() -> None:
    """Poller mode, 8 threads, a 1-day TTL and an in-flight cap from IMAGEQ_*: all used."""
    result = sizing(
        "--jobs-per-day", "2000000", "--p99-generation-s", "130", "--json",
        IMAGEQ_POLLING__MODE="poller",
        IMAGEQ_WORKER__CONCURRENCY="8",
        IMAGEQ_REDIS__RECORD_TTL_S="86400",
        IMAGEQ_LIMITS__MAX_IN_FLIGHT="500",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    jsonschema.validate(view, SCHEMA)
    assert view["inputs"]["mode"] == "poller"
    assert view["worker"]["threads_per_process"] == 8
    assert view["inputs"]["record_ttl_s"] == 86400
    # About 3,100 jobs in flight against a cap of 500: the cap is what the load meets first.
    assert view["jobs_in_flight"] > 500
    assert view["first_limit"]["name"] == "API in flight"


def test_sizing_text_and_a_usage_error() -> None:
    """The text answer names the first limit; a bad flag with --json is one error object."""
    result = sizing("--jobs-per-day", "100000", "--p99-generation-s", "60")
    assert result.returncode == 0, result.stderr
    assert "first limit:" in result.stdout
    bad = sizing("--jobs-per-day", "-1", "--p99-generation-s", "60", "--json")
    assert bad.returncode == 2
    assert json.loads(bad.stderr)["error"]["type"] == "usage"
