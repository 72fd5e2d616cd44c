"""CPU time and memory of process trees, and how busy the machine is, read from Linux's /proc.

Read directly rather than through psutil, which has no type stubs here and is not a dependency.
A process that exits between two reads simply stops counting.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_PROC: Final = Path("/proc")
_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")


def tree(pid: int) -> list[int]:
    """The process and all its descendants (prefork children, if any)."""
    found = [pid]
    for parent in found:  # grows while we walk it: a breadth-first walk
        for task in _listdir(_PROC / str(parent) / "task"):
            children = _read(_PROC / str(parent) / "task" / task / "children")
            found.extend(int(child) for child in children.split())
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of these processes, with their reaped children's."""
    ticks = 0
    for pid in pids:
        ticks += sum(int(value) for value in _stat_fields(pid)[11:15])  # utime stime cutime cstime
    return ticks / _TICKS_PER_S


def own_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of this process alone (not its reaped children, whose time
    was already counted under their own pids while they ran); None if it is gone."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S if fields else None


def pids() -> list[int]:
    """Every process on the machine now."""
    return [int(entry) for entry in _listdir(_PROC) if entry.isdigit()]


def command_line(pid: int) -> str:
    """The process's command line, its arguments joined by spaces ("" if it is gone)."""
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of these processes, summed."""
    total = 0
    for pid in pids:
        statm = _read(_PROC / str(pid) / "statm").split()
        if len(statm) > 1:
            total += int(statm[1]) * _PAGE_BYTES
    return total


@dataclass(frozen=True)
class MachineTicks:
    """Cumulative CPU ticks of the whole machine (all cores)."""

    busy: int
    total: int

    @classmethod
    def now(cls) -> MachineTicks:
        line = _read(_PROC / "stat").split("\n", 1)[0]
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        values = [int(value) for value in line.split()[1:9]]
        idle = values[3] + values[4]
        return cls(busy=sum(values) - idle, total=sum(values))

    def busy_fraction_since(self, earlier: MachineTicks) -> float:
        """Share of all cores' time spent busy between `earlier` and this reading."""
        total = self.total - earlier.total
        return (self.busy - earlier.busy) / total if total > 0 else 0.0


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may itself hold spaces and
    parentheses); [] if the process is gone."""
    stat = _read(_PROC / str(pid) / "stat")
    return stat.rsplit(")", 1)[1].split() if stat else []


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
