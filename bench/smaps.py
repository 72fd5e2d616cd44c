"""A process's resident memory by kind of mapping, from Linux's /proc/PID/smaps (pure parsing).

The kinds: thread stacks (an anonymous read-write mapping right above its no-access guard
page), glibc malloc arenas of threads (an anonymous read-write mapping at a 64 MiB boundary,
right below the no-access rest of its reservation), the main heap (`[heap]`), other anonymous
memory (pymalloc's arenas, large allocations, Python's frame stacks) and file-backed memory
(code, shared libraries).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

KINDS: Final = ("thread stacks", "malloc arenas", "heap", "anonymous other", "files")
ARENA_ALIGN: Final = 64 * 1024 * 1024  # glibc's HEAP_MAX_SIZE on 64-bit


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    path: str
    rss_kb: int


@dataclass(frozen=True)
class Kind:
    """How many mappings of a kind, and their resident memory."""

    count: int
    rss_kb: int


def parse(text: str) -> list[Mapping]:
    """The mappings of an smaps text, in address order, each with its `Rss`."""
    found: list[Mapping] = []
    head: list[str] | None = None
    rss = 0
    for line in text.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            if head is not None:
                found.append(_mapping(head, rss))
            head, rss = fields, 0
        elif fields and fields[0] == "Rss:":
            rss = int(fields[1])
    if head is not None:
        found.append(_mapping(head, rss))
    return found


def _mapping(head: list[str], rss_kb: int) -> Mapping:
    start, end = (int(part, 16) for part in head[0].split("-"))
    path = head[5] if len(head) > 5 else ""
    return Mapping(start, end, head[1], path, rss_kb)


def classify(mappings: list[Mapping]) -> dict[str, Kind]:
    """Resident memory by kind (see the module's docstring)."""
    counts = dict.fromkeys(KINDS, 0)
    rss = dict.fromkeys(KINDS, 0)
    for index, mapping in enumerate(mappings):
        kind = _kind(mapping, mappings, index)
        counts[kind] += 1
        rss[kind] += mapping.rss_kb
    return {kind: Kind(counts[kind], rss[kind]) for kind in KINDS}


def _kind(mapping: Mapping, mappings: list[Mapping], index: int) -> str:
    if mapping.path == "[heap]":
        return "heap"
    if mapping.path and not mapping.path.startswith("["):
        return "files"
    if mapping.path or not mapping.perms.startswith("rw"):
        return "anonymous other"
    below = mappings[index - 1] if index > 0 else None
    above = mappings[index + 1] if index + 1 < len(mappings) else None
    if mapping.start % ARENA_ALIGN == 0:
        if mapping.end - mapping.start == ARENA_ALIGN:
            return "malloc arenas"  # an arena grown to its whole reservation
        if above is not None and above.start == mapping.end and _no_access(above):
            return "malloc arenas"
    if below is not None and below.end == mapping.start and _no_access(below):
        return "thread stacks"
    return "anonymous other"


def _no_access(mapping: Mapping) -> bool:
    return not mapping.path and mapping.perms.startswith("---")


def of_process(pid: int) -> dict[str, Kind]:
    """The kinds of one process now; empty kinds if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        text = ""
    return classify(parse(text))
