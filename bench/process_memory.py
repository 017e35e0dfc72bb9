"""Proportional memory (PSS) of a process tree and where it goes, read from Linux's /proc.

PSS (proportional set size) charges each shared page to the processes that map it in equal
parts, so the PSS of a window and its child processes adds up to what the app costs the machine
(RSS would count the shared libraries and the shared-memory data set once per process).

    python bench/process_memory.py PID         # the tree under PID, and the breakdown by mapping
"""

from __future__ import annotations

import functools
import os
import struct
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# How a mapping is grouped in the breakdown: the first pattern found in its path names its group.
GROUPS: tuple[tuple[str, str], ...] = (
    ("torch/lib/", "PyTorch libraries"),
    ("nvidia/", "CUDA libraries (nvidia wheels)"),
    ("triton/", "CUDA libraries (nvidia wheels)"),
    ("PySide6/", "Qt libraries (PySide6)"),
    ("shiboken6/", "Qt libraries (PySide6)"),
    ("/dev/shm/", "shared memory (decoded data set)"),
    ("memfd:", "shared memory (decoded data set)"),
    ("/SYSV", "shared memory (decoded data set)"),
    ("[heap]", "heap and anonymous memory (tensors, Python objects, caches)"),
    ("[stack", "stacks"),
    ("libpython", "Python interpreter and other libraries"),
    ("/bin/python", "Python interpreter and other libraries"),
    (".so", "Python interpreter and other libraries"),
)
OTHER_FILES = "other mapped files (executables, fonts, data files)"
ANONYMOUS = "heap and anonymous memory (tensors, Python objects, caches)"


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    name: str
    pss_mb: float
    rss_mb: float


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the command's ")"


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and every process below it (children, grandchildren, ...), root first."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children[parent].append(int(entry))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop(0)
        tree.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return tree


def _name(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw if w]
    if "-c" in words:  # multiprocessing's spawn: python -c 'from multiprocessing.spawn import ...'
        code = words[words.index("-c") + 1] if words.index("-c") + 1 < len(words) else ""
        return "resource tracker" if "resource_tracker" in code else "spawned child (training process)"
    return " ".join(Path(w).name if i == 0 else w for i, w in enumerate(words))[:60]


def memory_of(pid: int) -> ProcessMemory | None:
    """PSS and RSS of one process in MiB (None once it has gone)."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Rss"):
                    values[key] = int(rest.split()[0]) / 1024.0
    except OSError:
        return None
    return ProcessMemory(pid, _name(pid), values.get("Pss", 0.0), values.get("Rss", 0.0))


def tree_memory(root_pid: int) -> list[ProcessMemory]:
    """Memory of ``root_pid`` and its descendants (those that exited meanwhile are left out)."""
    return [m for m in (memory_of(pid) for pid in process_tree(root_pid)) if m is not None]


def _group(path: str) -> str:
    for pattern, group in GROUPS:
        if pattern in path:
            return group
    return ANONYMOUS if not path or path.startswith("[anon") else OTHER_FILES


@functools.lru_cache(maxsize=None)
def _bss_bytes(path: str) -> int:
    """The size of an ELF library's zero-filled data (memsz - filesz of its PT_LOAD segments; 0 if unreadable)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2:  # 64-bit ELF only
                return 0
            phoff, = struct.unpack_from("<Q", header, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except (OSError, struct.error):
        return 0
    total = 0
    for index in range(phnum):
        p_type, = struct.unpack_from("<I", table, index * phentsize)
        filesz, memsz = struct.unpack_from("<QQ", table, index * phentsize + 32)
        if p_type == 1:  # PT_LOAD
            total += max(0, memsz - filesz)
    return total


def pss_breakdown(pid: int) -> dict[str, float]:
    """PSS of one process in MiB by what is mapped (:data:`GROUPS`), from /proc/PID/smaps. An anonymous
    mapping that starts where a library's mapping ends is that library's zero-filled data (.bss) and
    counts with it (only as large as the library's ELF headers say its .bss is)."""
    groups: dict[str, float] = defaultdict(float)
    group, library, library_end = ANONYMOUS, "", -1
    try:
        with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):  # a mapping's header line
                    fields = line.split(None, 5)
                    start, end = (int(a, 16) for a in first.split("-"))
                    path = fields[5].strip() if len(fields) > 5 else ""
                    if not path and start == library_end and end - start <= _bss_bytes(library) + 4096:
                        path = library  # the library's zero-filled data (.bss), mapped right after it
                    if path.startswith("/"):
                        library, library_end = path, end
                    group = _group(path)
                elif first == "Pss:":
                    groups[group] += int(line.split()[1]) / 1024.0
    except OSError:
        return {}
    return dict(groups)


def format_tree(memories: list[ProcessMemory]) -> str:
    lines = [f"{'pid':>8} {'pss_mb':>8} {'rss_mb':>8}  process"]
    lines += [f"{m.pid:8d} {m.pss_mb:8.1f} {m.rss_mb:8.1f}  {m.name}" for m in memories]
    lines.append(f"{'total':>8} {sum(m.pss_mb for m in memories):8.1f} {sum(m.rss_mb for m in memories):8.1f}"
                 "  (PSS adds up; RSS counts shared pages once per process)")
    return "\n".join(lines)


def format_breakdown(memories: list[ProcessMemory]) -> str:
    """A table: PSS by group (rows) and process (columns)."""
    per_process = {m.pid: pss_breakdown(m.pid) for m in memories}
    groups = sorted({g for b in per_process.values() for g in b},
                    key=lambda g: -sum(b.get(g, 0.0) for b in per_process.values()))
    head = f"{'PSS MiB by mapping':58s}" + "".join(f"{m.pid:>10d}" for m in memories) + f"{'all':>10s}"
    lines = [head]
    for group in groups:
        values = [per_process[m.pid].get(group, 0.0) for m in memories]
        lines.append(f"{group:58s}" + "".join(f"{v:10.1f}" for v in values) + f"{sum(values):10.1f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python bench/process_memory.py PID", file=sys.stderr)
        return 2
    memories = tree_memory(int(argv[0]))
    if not memories:
        print(f"process {argv[0]}: not found", file=sys.stderr)
        return 1
    print(format_tree(memories))
    print()
    print(format_breakdown(memories))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
