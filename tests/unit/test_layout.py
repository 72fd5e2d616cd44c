"""The layout rules a newcomer relies on: one top-level package, module file names unique in the
whole project, no grab-bag modules, and no bare imports of the repository's folders."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = ("worker", "producers", "config", "ops", "cli", "simulator", "devenv")
SHARED_NAMES = {"__init__.py", "__main__.py", "conftest.py"}


def _tracked_python_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [Path(name) for name in listed]


def test_module_file_names_are_unique() -> None:
    """No two modules anywhere in the project share a file name (package markers aside)."""
    names = Counter(path.name for path in _tracked_python_files() if path.name not in SHARED_NAMES)
    assert [name for name, count in names.items() if count > 1] == []


def test_no_grab_bag_modules() -> None:
    """No `common.py`, `utils.py` or `helpers.py`: every module is named for its one job."""
    grab_bags = {"common.py", "utils.py", "helpers.py", "misc.py"}
    assert [str(path) for path in _tracked_python_files() if path.name in grab_bags] == []


def test_every_package_folder_is_linked_into_imageq() -> None:
    """imageq/ links each of the repository's package folders, and nothing else is a link."""
    links = {path.name for path in (ROOT / "imageq").iterdir() if path.is_symlink()}
    assert links == set(PACKAGE_FOLDERS)
    for folder in PACKAGE_FOLDERS:
        assert (ROOT / "imageq" / folder).resolve() == (ROOT / folder).resolve()
