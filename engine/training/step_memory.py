"""Peak memory of an algorithm's training steps, measured while (or after) it trains.

Next to :mod:`engine.training.memory` (which estimates a MAML run's need before it starts), this
measures what steps really took, for a race's table (:mod:`engine.race`):

* CUDA: :func:`cuda_step_peak_bytes` runs one step with ``torch.cuda.max_memory_allocated``
  reset before it and subtracts what other models on the device held (so several algorithms
  training side by side are measured apart);
* CPU (no allocator statistics): :func:`cpu_step_memory`, the algorithm's weights, gradients and
  optimiser state (:func:`state_bytes`) plus the input batch (:func:`batch_bytes`) plus the peak
  of live tensor bytes during one training step profiled with ``torch.profiler`` memory events
  (:func:`profiled_step_peak_bytes`).

Importing this module does not import torch (the race, which the CLI and the studio import at
start-up, re-exports it); every function imports torch when called.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from engine.errors import EngineError

if TYPE_CHECKING:
    from torch import Tensor

T = TypeVar("T")

CUDA_MEMORY_METHOD = ("CUDA: torch.cuda.max_memory_allocated during its steps (reset before each of them), "
                      "minus what the other algorithms held")
CPU_MEMORY_METHOD = ("CPU: its weights, gradients and optimiser state + the input batch + the peak of live "
                     "tensor bytes during one training step profiled with torch.profiler memory events")


def state_bytes(algorithm: Any, device_type: str) -> int:
    """Bytes of the algorithm's weights, buffers, gradients and optimiser state on ``device_type``."""
    import torch

    seen: set[int] = set()
    total = 0

    def add(tensor: Any) -> None:
        nonlocal total
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != device_type:
            return
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key and key not in seen:
            seen.add(key)
            total += storage.nbytes()

    for module in algorithm.modules().values():
        for parameter in module.parameters():
            add(parameter)
            add(parameter.grad)
        for buffer in module.buffers():
            add(buffer)
    for optimizer in algorithm.optimizers().values():
        for state in optimizer.state.values():
            for value in state.values():
                add(value)
    return total


def batch_bytes(batch: Any) -> int:
    """Bytes of the image and label tensors of a training batch (list of Tasks or a ClassBatch)."""
    import torch

    tensors: list[Tensor] = []
    for item in batch if isinstance(batch, list) else [batch]:
        tensors += [v for v in vars(item).values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def cuda_step_peak_bytes(step: Callable[[], T], device: str, own_bytes: int) -> tuple[T, int]:
    """Run ``step`` on CUDA ``device``; (what it returned, its peak allocated bytes above what the
    other models held). ``own_bytes``: what the stepping model itself holds before the step
    (:func:`state_bytes` on "cuda"), so the rest of the allocation is the others'."""
    import torch

    cuda = torch.device(device)
    torch.cuda.synchronize(cuda)
    others = torch.cuda.memory_allocated(cuda) - own_bytes
    torch.cuda.reset_peak_memory_stats(cuda)
    value = step()
    return value, torch.cuda.max_memory_allocated(cuda) - others


def cpu_step_memory(algorithm: Any, batch: Any) -> tuple[int | None, str]:
    """(peak bytes of one training step on ``batch`` on the CPU, how it was measured), or (None, why not)."""
    try:
        peak = profiled_step_peak_bytes(algorithm, batch)
    except (RuntimeError, EngineError) as error:
        return None, f"not measured (the profiled step failed: {error})"
    if peak is None:
        return None, "not measured (this PyTorch's profiler reports no memory events)"
    return state_bytes(algorithm, "cpu") + batch_bytes(batch) + peak, CPU_MEMORY_METHOD


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide the profiler's native start/stop chatter on file descriptor 2 (restored afterwards)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profiled_step_peak_bytes(algorithm: Any, batch: Any) -> int | None:
    """Peak of live CPU tensor bytes allocated during one ``meta_train_step`` on ``batch``
    (torch.profiler memory events, summed in time order), or None when the profiler gives none."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    algorithm.train(True)
    prepared = algorithm.prepare_batch(batch)
    with _native_stderr_silenced():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            algorithm.meta_train_step(prepared)
    try:
        events = [e for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    except AttributeError:  # a PyTorch without the raw event list
        return None
    if not events:
        return None
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak
