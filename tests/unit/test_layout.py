"""The repository's layout: every test module in its layer's folder, and module file names
unique project-wide (`__init__`, `__main__` and `conftest` aside), so a name finds one file."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).parents[2]
LAYERS = ("unit", "http", "e2e")
SHARED_NAMES = {"__init__.py", "__main__.py", "conftest.py"}
NOT_PROJECT = {".git", ".venv", "var", "build", "dist", "__pycache__", "node_modules"}
# Names that two modules held before this rule, in folders other than tests/ (bench/run.py and
# producers/scheduling/run.py; worker/tasks.py and producers/scheduling/tasks.py). Remove a name
# here once one of its files is renamed.
KNOWN_DUPLICATES = {"run.py", "tasks.py"}


def project_modules() -> dict[str, list[Path]]:
    """Module file name -> the files of that name, symlinked folders (imageq/) not followed."""
    found: dict[str, list[Path]] = defaultdict(list)
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [
            name
            for name in subfolders
            if name not in NOT_PROJECT and not name.startswith(".") and ".egg-info" not in name
        ]
        for name in files:
            if name.endswith(".py"):
                found[name].append(Path(folder, name).relative_to(REPO))
    return found


def test_every_test_module_is_in_a_layer() -> None:
    """Test modules live in tests/unit, tests/http or tests/e2e, nowhere else under tests/."""
    tests = [path for paths in project_modules().values() for path in paths]
    misplaced = [
        str(path)
        for path in tests
        if path.parts[0] == "tests" and path.name.startswith("test_")
        and (len(path.parts) != 3 or path.parts[1] not in LAYERS)
    ]  # fmt: skip
    assert not misplaced


def test_module_file_names_are_unique() -> None:
    """No two modules share a file name, test modules included."""
    duplicated = {
        name: sorted(map(str, paths))
        for name, paths in project_modules().items()
        if len(paths) > 1 and name not in SHARED_NAMES | KNOWN_DUPLICATES
    }
    assert not duplicated
    still_duplicated = {name for name in KNOWN_DUPLICATES if len(project_modules()[name]) > 1}
    assert still_duplicated == KNOWN_DUPLICATES, "renamed: drop it from KNOWN_DUPLICATES"
