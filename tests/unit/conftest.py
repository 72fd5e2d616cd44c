"""The unit layer is pure: no Redis, no sockets, no child processes.

An autouse guard makes every socket connect and every child process start in a unit test fail
that test, even where the code under test catches the error; such a test belongs in tests/http/
or tests/e2e/.
"""

from __future__ import annotations

import logging
import multiprocessing.process
import os
import socket
import subprocess
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from imageq.worker.logs import StderrHandler

ATTEMPTS = pytest.StashKey[list[str]]()


class NotPure(BaseException):
    """I/O tried in a unit test. A BaseException, so `except Exception` cannot swallow it."""


def _refuser(what: str, attempts: list[str], *, method: bool) -> Callable[..., Any]:
    def refuse(*args: Any, **_: Any) -> Any:
        target = args[1:2] if method else args[:1]  # the address or the command, not `self`
        attempts.append(f"{what}({', '.join(map(repr, target))[:200]})")
        raise NotPure(f"unit tests do no I/O: {attempts[-1]}; move it to tests/http or tests/e2e")

    return refuse


@pytest.fixture(autouse=True)
def no_sockets_or_processes(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Refuse socket connects and child processes for the test's duration."""
    attempts = request.node.stash.setdefault(ATTEMPTS, [])
    methods: list[tuple[type, str, str]] = [
        (socket.socket, "connect", "socket.connect"),
        (socket.socket, "connect_ex", "socket.connect_ex"),
        # Popen's own spawning step, so a refused Popen still cleans up after itself.
        (subprocess.Popen, "_execute_child", "subprocess.Popen"),
        (multiprocessing.process.BaseProcess, "start", "Process.start"),
    ]
    for owner, name, what in methods:
        monkeypatch.setattr(owner, name, _refuser(what, attempts, method=True))
    for name in ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp"):
        monkeypatch.setattr(os, name, _refuser(f"os.{name}", attempts, method=False))


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """A test that sets up imageq's logging (the CLI's `main` does) leaves the next test's root
    logger as it found it: no handler of imageq's, the same level."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in root.handlers[:]:
        if isinstance(handler, StderrHandler):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test that passed although the code under test swallowed a refusal fails all the same."""
    report = yield
    attempts = item.stash.get(ATTEMPTS, [])
    if report.when == "call" and report.passed and attempts:
        report.outcome = "failed"
        report.longrepr = f"unit tests do no I/O, this one tried: {'; '.join(attempts)}"
    return report
