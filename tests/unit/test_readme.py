"""The README: the two commands, a quick start, and links that lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _links(page: Path) -> list[str]:
    """Relative link targets of a Markdown page, anchors dropped, as paths from the root."""
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t[0] != "#"]
    return [str((page.parent / t).resolve().relative_to(ROOT)) for t in local]


def test_two_commands() -> None:
    """make demo and make test are shown."""
    assert "make demo" in README
    assert "make test" in README


def test_readme_reads_in_a_sitting() -> None:
    """The README stays short: internals and reference live in docs/."""
    assert len(README.splitlines()) <= 280


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
)
def test_relative_links_resolve(page: str) -> None:
    """Every relative link of the README and of docs/ names a file that exists."""
    missing = [target for target in _links(ROOT / page) if not (ROOT / target).exists()]
    assert not missing, f"{page} links to missing files: {missing}"
