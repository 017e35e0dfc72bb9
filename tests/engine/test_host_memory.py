"""The host-allocator tuning the trainer applies: on glibc, freed blocks stay for reuse (no page faults)."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from engine.training import host_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_after_tuning_big_allocations_stop_faulting_in_fresh_pages() -> None:
    def faults_for_allocations() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.empty(8 << 20, dtype=torch.uint8).fill_(1)  # 8 MiB, above glibc's default mmap threshold
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    assert host_memory.keep_freed_host_memory() and host_memory.keep_freed_host_memory()  # idempotent
    faults_for_allocations()  # the heap grows once
    assert faults_for_allocations() < 500  # untuned: ~2 000 faults per 8 MiB block, 20 000 here


def test_the_switch_leaves_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_STUDIO_KEEP_HOST_MEMORY", "0")
    assert host_memory._apply() is False


def test_the_trainer_leaves_malloc_alone_while_other_threads_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing malloc's thresholds while another thread allocates is a race (it aborted a gloo run)."""
    import threading

    monkeypatch.setattr(host_memory, "_applied", None)
    calls: list[int] = []
    monkeypatch.setattr(host_memory, "_apply", lambda: calls.append(1) or True)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert host_memory.keep_freed_host_memory_if_alone() is False and calls == []
    finally:
        release.set()
        other.join()
    assert host_memory.keep_freed_host_memory_if_alone() is True and calls == [1]
