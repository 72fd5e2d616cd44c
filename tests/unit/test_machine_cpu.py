"""`bench.machine_cpu`: which part a process is, cores per part, the busiest stretch."""

from __future__ import annotations

import pytest

from bench.machine_cpu import busiest, cores_by_part, full_seconds, part_of


@pytest.mark.parametrize(
    ("command_line", "part"),
    [
        ("python -m imageq.simulator --port 0", "simulator"),
        ("redis-server 127.0.0.1:6379", "redis"),
        ("python -m celery -A imageq.worker.app worker --pool threads", "imageq workers"),
        ("python -m celery -A bench.naive worker -P gevent", "naive workers"),
        ("python -m bench.run --n 1000", "benchmark"),
        ("/usr/lib/erlang/erts/bin/beam.smp -W w", "rabbitmq"),
        ("/usr/sbin/sshd -D", "other"),
    ],
)
def test_part_of(command_line: str, part: str) -> None:
    assert part_of(command_line) == part


def test_cores_by_part_counts_new_processes_from_zero_and_drops_gone_ones() -> None:
    before = {1: (1.0, "redis"), 2: (0.5, "imageq workers"), 3: (0.1, "other")}
    after = {1: (1.5, "redis"), 2: (1.5, "imageq workers"), 4: (1.0, "redis")}
    used = cores_by_part(before, after, seconds=1.0)
    assert used == pytest.approx({"redis": 1.5, "imageq workers": 1.0})


def test_busiest_finds_the_fullest_stretch_and_its_means() -> None:
    rows = [{"a": 0.1}, {"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 1.0}, {"a": 0.1}]
    start, means = busiest(rows, 2)
    assert start == 1
    assert means == pytest.approx({"a": 0.75, "b": 1.0})
    assert busiest([], 30) == (0, {})
    assert full_seconds(rows, cores=2) == 1  # only the second reaches 1.8 of 2 cores
