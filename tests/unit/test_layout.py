"""The layout rules a newcomer relies on: every package folder linked into the one top-level
package, module file names unique in the whole project, no grab-bag modules, and every test
module in its layer's folder."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = ("worker", "producers", "config", "ops", "cli", "simulator", "devenv")
SHARED_NAMES = {"__init__.py", "__main__.py", "conftest.py"}
NOT_PROJECT = {"var", "build", "dist", "__pycache__", "node_modules"}


def _tracked_python_files() -> list[Path]:
    """The project's Python files, relative to the root; the links in imageq/ not followed."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [
            name
            for name in subfolders
            if name not in NOT_PROJECT and not name.startswith(".") and ".egg-info" not in name
        ]
        found += [Path(folder, name).relative_to(ROOT) for name in files if name.endswith(".py")]
    return found


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


def test_every_test_module_is_in_a_layer() -> None:
    """Test modules live in tests/unit, tests/http or tests/e2e, nowhere else under tests/."""
    misplaced = [
        str(path)
        for path in _tracked_python_files()
        if path.parts[0] == "tests" and path.name.startswith("test_")
        and (len(path.parts) != 3 or path.parts[1] not in ("unit", "http", "e2e"))
    ]  # fmt: skip
    assert misplaced == []
