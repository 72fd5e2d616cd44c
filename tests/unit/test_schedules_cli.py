"""`imageq schedules check FILE` through its typer command: exit codes 0, 2 and 3, and its
--json against its schema. The listing reads Redis: tests/e2e/test_schedules_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import typer
from typer.testing import CliRunner

from imageq.cli.schedules import schedules
from tests.unit.test_schedule import run_table

SCHEMAS = Path(__file__).resolve().parents[2] / "cli" / "schemas"
SCHEMA = json.loads((SCHEMAS / "schedules-check.json").read_text())


def run(*args: str) -> tuple[int, str]:
    app = typer.Typer()
    app.add_typer(schedules, name="schedules")
    result = CliRunner().invoke(app, ["schedules", "check", *args])
    return result.exit_code, result.stdout


def test_valid_file_exits_0_with_next_runs(tmp_path: Path) -> None:
    """A valid file: exit 0, valid JSON by its schema, three next runs per run."""
    path = tmp_path / "schedule.toml"
    path.write_text(run_table(name="nightly", file="rows.jsonl", cron="0 2 * * *"))
    code, out = run(str(path), "--json")
    assert code == 0, out
    view = json.loads(out)
    jsonschema.validate(view, SCHEMA)
    assert view["valid"] is True
    assert [len(r["next_runs"]) for r in view["runs"]] == [3]
    assert all(t.endswith("T02:00:00.000Z") for t in view["runs"][0]["next_runs"])


def test_invalid_file_exits_2_naming_every_fault(tmp_path: Path) -> None:
    """Two faulty runs: exit 2, both named with their field, in JSON and in text."""
    path = tmp_path / "schedule.toml"
    path.write_text(
        run_table(name="a", file="f", cron="0 2 * *") + run_table(name="b", file="f", every_s=0)
    )
    code, out = run(str(path), "--json")
    assert code == 2
    view = json.loads(out)
    jsonschema.validate(view, SCHEMA)
    assert [(e["name"], e["field"]) for e in view["errors"]] == [("a", "cron"), ("b", "every_s")]
    code, text = run(str(path))
    assert code == 2
    assert "invalid, 2 error(s)" in text
    assert "run 2 (b): every_s: must be a whole number" in text


def test_unreadable_file_exits_3(tmp_path: Path) -> None:
    """A file that is not there: exit 3 (not found)."""
    code, _ = run(str(tmp_path / "missing.toml"))
    assert code == 3
