"""One exception tree: every exception class imageq defines derives from `ImageqError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import imageq
from imageq.worker.errors import ImageqError

# Exceptions that must not derive from ImageqError, each with the reason.
ALLOWED_OUTSIDE: dict[str, str] = {
    # The simulator stands in for the remote provider. Its errors are the provider's own
    # validation, turned into HTTP 400 bodies inside the simulator; imageq sees them only as
    # `ApiRejected`. Were they ImageqErrors, an `except ImageqError` in imageq's code could
    # catch a fault of the in-process fake and hide it.
    "imageq.simulator.markers.MarkerError": "the provider's own error",
    "imageq.simulator.submission.SubmitError": "the provider's own error",
}


def _modules() -> list[ModuleType]:
    """Every module of imageq but `__main__` ones (importing those runs the program)."""
    names = [
        info.name
        for info in pkgutil.walk_packages(imageq.__path__, prefix="imageq.")
        if info.name.rpartition(".")[2] != "__main__"
    ]
    return [importlib.import_module(name) for name in names]


def _defined_exceptions() -> dict[str, type[BaseException]]:
    """Dotted name -> class, for each exception class defined (not just imported) in imageq."""
    return {
        f"{module.__name__}.{name}": value
        for module in _modules()
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    }


DEFINED = _defined_exceptions()


@pytest.mark.parametrize("name", sorted(set(DEFINED) - set(ALLOWED_OUTSIDE)))
def test_exception_derives_from_the_base(name: str) -> None:
    """An exception class defined in imageq is an ImageqError."""
    assert issubclass(DEFINED[name], ImageqError)


@pytest.mark.parametrize("name", sorted(ALLOWED_OUTSIDE))
def test_allowed_exception_exists_outside_the_base(name: str) -> None:
    """An allow-listed name is still defined and still outside the tree (no stale entry)."""
    assert name in DEFINED
    assert not issubclass(DEFINED[name], ImageqError)


@pytest.mark.parametrize(
    "name",
    [
        "imageq.worker.errors.ApiError",
        "imageq.worker.errors.BulkFileError",
        "imageq.producers.scheduling.schedule_file.ScheduleError",
        "imageq.devenv.redis_server.RedisUnavailable",
    ],
)
def test_walk_finds_exceptions_across_packages(name: str) -> None:
    """The walk reaches every package, so the check above is not vacuous."""
    assert name in DEFINED


@pytest.mark.parametrize(
    ("home", "name", "still_a"),
    [
        ("imageq.producers.bulkfile", "BulkFileError", ImageqError),
        ("imageq.devenv.redis_server", "RedisUnavailable", RuntimeError),
    ],
)
def test_moved_and_rebased_names_still_work(home: str, name: str, still_a: type[Exception]) -> None:
    """A moved or rebased error still imports from its old home and still catches as before."""
    error = getattr(importlib.import_module(home), name)
    assert issubclass(error, ImageqError)
    assert issubclass(error, still_a)
