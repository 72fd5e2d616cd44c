"""The README documents every setting and the two commands."""

from __future__ import annotations

from pathlib import Path

from imageq.config import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_table() -> None:
    """Each IMAGEQ_<GROUP>__<NAME> appears in the README's settings table."""
    for group_name, group in Settings.model_fields.items():
        assert group.annotation is not None
        for name in group.annotation.model_fields:
            assert f"| `IMAGEQ_{group_name.upper()}__{name.upper()}` |" in README, name


def test_two_commands() -> None:
    """make demo and make test are shown."""
    assert "make demo" in README
    assert "make test" in README
