"""Giving the allocator's free memory back: after threads free most of what they allocated,
`release_free_memory` lowers the process's RSS."""

from __future__ import annotations

import os
import threading

import pytest

from imageq.worker.memory_release import release_free_memory


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
