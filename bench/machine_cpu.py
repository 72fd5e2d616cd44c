"""Where the machine's CPU goes, second by second: every process's CPU, grouped into parts.

    python -m bench.machine_cpu [--seconds 180] [--every 1] [--window 30] [--out FILE]

Run it beside a benchmark round (`python -m bench.run ... & python -m bench.machine_cpu`) to
see how many cores the imageq workers, the simulator, Redis, the benchmark's own process (the
producer and the webhook receiver) and everything else used, each second. A round's average
busy share hides its peak: most of a round is the tail after the last jobs finish. So it also
prints the busiest `--window` seconds, with each part's cores over them, and how many seconds
the machine was at 90 % of its cores or more. `--out` keeps the per-second readings as JSON
lines. Reads only `/proc`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from bench import procfs

PARTS: Final = (
    ("imageq.simulator", "simulator"),
    ("redis-server", "redis"),
    ("imageq.worker", "imageq workers"),
    ("bench.naive", "naive workers"),
    ("bench.", "benchmark"),
    ("beam.smp", "rabbitmq"),
)
"""A process belongs to the first part whose marker is in its command line; else `other`."""

FULL: Final = 0.9
"""A second counts as full when the machine used at least this share of its cores."""

Reading = dict[int, tuple[float, str]]  # pid: (CPU seconds, part)


def part_of(command_line: str) -> str:
    for marker, part in PARTS:
        if marker in command_line:
            return part
    return "other"


def read_processes() -> Reading:
    """Every process's own CPU seconds so far (user + system) and its part."""
    found: Reading = {}
    for pid in procfs.pids():
        cpu_s = procfs.own_cpu_seconds(pid)
        if cpu_s is not None:  # else gone between the listing and the read
            found[pid] = (cpu_s, part_of(procfs.command_line(pid)))
    return found


def cores_by_part(before: Reading, after: Reading, seconds: float) -> dict[str, float]:
    """Cores each part used between two readings (a process new since `before` counts from
    zero; one gone since is not counted)."""
    used: dict[str, float] = {}
    for pid, (cpu_s, part) in after.items():
        earlier = before.get(pid, (0.0, part))[0]
        if cpu_s > earlier:
            used[part] = used.get(part, 0.0) + (cpu_s - earlier) / seconds
    return used


def busiest(rows: Sequence[Mapping[str, float]], width: int) -> tuple[int, dict[str, float]]:
    """The start of the `width` consecutive rows with the most cores in all, and each part's
    mean cores over them."""
    if not rows:
        return 0, {}
    width = min(width, len(rows))
    totals = [sum(row.values()) for row in rows]
    start = max(range(len(rows) - width + 1), key=lambda at: sum(totals[at : at + width]))
    means: dict[str, float] = {}
    for row in rows[start : start + width]:
        for part, cores in row.items():
            means[part] = means.get(part, 0.0) + cores / width
    return start, means


def full_seconds(rows: Sequence[Mapping[str, float]], cores: int) -> int:
    return sum(sum(row.values()) >= FULL * cores for row in rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long to read")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--window", type=int, default=30, help="readings in the busiest stretch")
    parser.add_argument("--out", type=Path, help="keep the per-second readings here (JSON lines)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    rows: list[dict[str, float]] = []
    before, at = read_processes(), time.monotonic()
    end = at + args.seconds
    while at < end:
        time.sleep(args.every)
        after, now = read_processes(), time.monotonic()
        rows.append(cores_by_part(before, after, now - at))
        before, at = after, now
    if args.out is not None:
        with args.out.open("w") as out:
            for second, row in enumerate(rows):
                out.write(json.dumps({"t": second, **{k: round(v, 3) for k, v in row.items()}}))
                out.write("\n")
    start, means = busiest(rows, args.window)
    print(
        f"{len(rows)} readings every {args.every:g} s on {cores} cores; at least"
        f" {FULL:.0%} of them busy in {full_seconds(rows, cores)} readings"
    )
    print(f"busiest {min(args.window, len(rows))} readings, from reading {start}, cores used:")
    for part, used in sorted(means.items(), key=lambda item: -item[1]):
        print(f"  {part:<16} {used:5.2f}")
    print(f"  {'all':<16} {sum(means.values()):5.2f}")


if __name__ == "__main__":
    main()
