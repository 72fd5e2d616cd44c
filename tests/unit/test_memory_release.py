"""Giving the allocator's free memory back: after threads free most of what they allocated,
`release_free_memory` lowers the process's RSS."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imageq.cli.main import app
from imageq.devenv.worker_process import WorkerProcess
from imageq.worker.memory_release import MALLOC_TUNABLES, release_free_memory, worker_environment


def resident_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_free_memory_left_by_threads_goes_back() -> None:
    """Sixteen threads allocate about 200 MB in 2-7 KB pieces and keep one in 50: the freed rest
    stays resident in their arenas until released, then RSS falls by at least 10 MB."""
    kept: list[bytearray] = []
    lock = threading.Lock()

    def churn() -> None:
        pieces = [bytearray(2000 + i % 5000) for i in range(3000)]
        with lock:
            kept.extend(pieces[::50])

    threads = [threading.Thread(target=churn) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    before = resident_kb()
    if not release_free_memory() and resident_kb() >= before:
        pytest.skip("no malloc_trim here (not glibc)")
    assert before - resident_kb() >= 10 * 1024
    assert len(kept) == 16 * 60


def test_workers_start_without_glibc_per_thread_cache_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`imageq worker` and the dev/test/bench worker process start Celery with glibc's tcache
    off; a `GLIBC_TUNABLES` the user set is kept as it is."""
    assert worker_environment({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": MALLOC_TUNABLES}
    assert worker_environment({"GLIBC_TUNABLES": "x"})["GLIBC_TUNABLES"] == "x"
    started: list[dict[str, str]] = []

    def fake_execve(_path: str, _argv: list[str], env: dict[str, str]) -> None:
        started.append(env)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    result = CliRunner().invoke(app, ["worker", "-c", "2"])
    assert result.exit_code == 0, result.output
    assert len(started) == 1
    assert started[0]["GLIBC_TUNABLES"] == MALLOC_TUNABLES
    process = WorkerProcess({"IMAGEQ_X": "1"}, tmp_path / "log")
    assert process._env["GLIBC_TUNABLES"] == MALLOC_TUNABLES
