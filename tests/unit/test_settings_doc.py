"""docs/settings.md is generated from the settings' descriptions and kept up to date."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imageq.config.settings_doc import REGENERATE, groups, render, variable_name

DOC = Path(__file__).parents[2] / "docs" / "settings.md"


def _fields() -> list[tuple[str, str, str | None]]:
    found = []
    for group_name, group in groups():
        for name, field in group.model_fields.items():
            found.append((group_name, name, field.description))
    return found


def test_docs_settings_page_is_up_to_date() -> None:
    """docs/settings.md is exactly what the generator renders now."""
    assert DOC.read_text() == render(), f"docs/settings.md is out of date: run `{REGENERATE}`"


@pytest.mark.parametrize(("group", "name", "description"), _fields())
def test_every_field_has_a_one_sentence_description(
    group: str, name: str, description: str | None
) -> None:
    """Each setting carries a description: one sentence, ending with a full stop."""
    assert description, f"{variable_name(group, name)} has no description"
    assert description.endswith("."), variable_name(group, name)
    assert not re.search(r"\.\s+[A-Z]", description), f"{variable_name(group, name)}: one sentence"


def test_every_variable_is_listed_once() -> None:
    """Each IMAGEQ_<GROUP>__<NAME> has exactly one row."""
    page = render()
    for group, name, _ in _fields():
        assert page.count(f"| `{variable_name(group, name)}` |") == 1, name


def test_secrets_are_shown_unset() -> None:
    """Secrets show as unset: the page never carries a key, not even a default one."""
    page = render()
    for variable in ("IMAGEQ_API__KEY", "IMAGEQ_WEBHOOK__SECRETS"):
        row = next(line for line in page.splitlines() if f"`{variable}`" in line)
        assert "| unset |" in row


def test_allowed_values_of_a_choice_are_listed() -> None:
    """A Literal's choices and a bound's limits are in the allowed column."""
    page = render()
    pool = next(line for line in page.splitlines() if "`IMAGEQ_WORKER__POOL`" in line)
    assert "`threads`, `prefork`, `solo`, `gevent`" in pool
    port = next(
        line for line in page.splitlines() if "`IMAGEQ_OBSERVABILITY__METRICS_PORT`" in line
    )
    assert ">= 0, <= 65535" in port
