"""How health checks are reported, without anything to check: the exit code, the JSON and
text reports, and a refused check name.
"""

from __future__ import annotations

import json

import pytest

from imageq.config import Settings
from imageq.ops.health import Check, exit_code, render, run_checks


def test_render_and_exit_code() -> None:
    """One failed check makes the report unhealthy and the exit code 1; none, 0."""
    good = Check("broker", True, "PONG", 0.001)
    bad = Check("api", False, "refused the key", 0.2)
    assert exit_code([good]) == 0
    assert exit_code([good, bad]) == 1
    assert json.loads(render([good, bad], as_json=True)) == {
        "healthy": False,
        "checks": [
            {"name": "broker", "ok": True, "detail": "PONG", "duration_s": 0.001},
            {"name": "api", "ok": False, "detail": "refused the key", "duration_s": 0.2},
        ],
    }
    assert render([good], as_json=False).splitlines()[-1] == "healthy"


def test_unknown_check_is_refused() -> None:
    """Skipping a check that does not exist is an error, not a silent no-op."""
    with pytest.raises(ValueError, match="no such check: bogus"):
        run_checks(Settings(_env_file=None), skip=["bogus"])
