"""Keep freed host memory for reuse during training (glibc's malloc).

A CPU training step allocates and frees hundreds of megabytes of activations and
gradients. glibc serves every block above its mmap threshold with a fresh mapping and
unmaps it on free, so the next step touches brand-new pages again: measured for
second-order MAML (Conv-4, 5-way 1-shot 15-query, meta-batch 16, channels-last, 1 thread)
149 000 minor page faults per step and ~0.25 s of kernel time, 106-118 ms per task; with
freed blocks kept, under 1 000 faults and 94-98 ms per task. The price: the process keeps
its peak heap instead of returning it (as PyTorch's CUDA caching allocator does with GPU
memory). Set ``META_STUDIO_KEEP_HOST_MEMORY=0`` to leave malloc alone.

Call it before the process starts other threads: ``mallopt`` changing the thresholds while
another thread allocates is a race. Measured: a 2-process gloo run (tests/engine/
test_distributed.py) aborted in 3 of 4 tries ("terminate called without an active exception")
when it was called after the process group's threads had started, and in 0 of 5 when called
before. Hence the entry points call it first (``meta-engine``, ``meta-studio``), and the
trainer only where no process group and no other Python thread runs.

Training in a thread other than the main one (the studio trains in a ``QThread``) needs one
more setting: glibc gives such threads their own arenas, made of 64 MiB heaps that are unmapped
as soon as they are empty, whatever the trim threshold. Measured in the studio (ProtoNet bench,
``bench/bench_studio_overhead.py``): 320 000-720 000 minor page faults and 0.6-1.3 s of kernel
time per 200 steps in the training thread, against 2 000 faults and ~0 s in the main thread.
:func:`keep_freed_host_memory_in_all_threads` also sets ``M_ARENA_MAX`` to 1, so every thread
allocates from the main heap that the thresholds keep (per-thread caches of small blocks stay).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Callable

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEEP_BYTES = 1 << 30   # blocks up to 1 GiB come from (and go back to) the heap; the heap is not trimmed below it

_applied: bool | None = None
_one_arena: bool | None = None


def keep_freed_host_memory() -> bool:
    """Tune glibc's malloc once per process, before other threads start (see the module doc); True when
    it is in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def keep_freed_host_memory_if_alone() -> bool:
    """:func:`keep_freed_host_memory` when it is safe now (this is the only Python thread and no
    torch.distributed process group, whose threads allocate, is running); else only report whether an
    entry point already did it."""
    if _applied is None and _alone():
        return keep_freed_host_memory()
    return bool(_applied)


def keep_freed_host_memory_in_all_threads() -> bool:
    """:func:`keep_freed_host_memory_if_alone`, and every thread allocates from the main heap
    (``M_ARENA_MAX`` = 1, see the module doc): for a process that trains outside its main thread.
    Call it before the process starts other threads; True when both are in effect."""
    global _one_arena
    if _one_arena is None and _alone():
        mallopt = _mallopt() if keep_freed_host_memory() else None
        _one_arena = mallopt is not None and bool(mallopt(M_ARENA_MAX, 1))
    return bool(_one_arena)


def _alone() -> bool:
    """This is the only Python thread and no torch.distributed process group (whose threads allocate) runs."""
    import torch.distributed as dist

    return threading.active_count() == 1 and not (dist.is_available() and dist.is_initialized())


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None where it is missing (not Linux, not glibc) or switched off."""
    if os.environ.get("META_STUDIO_KEEP_HOST_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def _apply() -> bool:
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
