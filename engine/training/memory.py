"""How much memory a MAML run needs, measured before training starts.

:func:`estimate_maml_memory` builds a throw-away copy of the configured MAML on
the device, computes the meta-gradient of synthetic tasks of the configured shape
at a reduced meta-batch, and scales the measurement to the real meta-batch:

* CUDA: the true peak (``torch.cuda.max_memory_allocated``) of the meta-gradient
  for 1 task (and 2 tasks for the batched vmap path; the difference is the cost of
  each further task);
* CPU / MPS: the bytes of the tensors autograd saves for one task (forward, inner
  gradients and, for second order, their graph), which is what dominates.

Task by task ("loop"), a step holds the graph of one task at a time, so the need
hardly grows with the meta-batch; the batched path ("vmap") holds every task's
graph at once. Parameters, their gradients and Adam's two moments are added
(4 x the parameter bytes). Available memory: free GPU memory plus what PyTorch's
caching allocator holds unused (CUDA), ``MemAvailable`` from /proc/meminfo or
``os.sysconf`` (CPU). Numbers are estimates (allocator fragmentation and library
workspaces are covered by a safety margin, not measured).

The trainer calls it for MAML on CUDA before the first step: a run whose path
does not fit fails at once with a message offering first-order MAML or a smaller
meta-batch, and "auto" task batching falls back to the loop when only the loop
fits. The studio calls it to show the estimate.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from engine.config import RunConfig, resolve_channels_last
from engine.data.types import Task
from engine.errors import ConfigError
from engine.runtime.precision import resolve_precision

GIB = 1024 ** 3
SAFETY_FACTOR = 1.15
"""Margin on measured activation memory for allocator fragmentation and cuDNN workspaces."""
CPU_BACKWARD_FACTOR = 1.5
"""On the CPU only saved tensors are counted; the backward pass's temporaries add about half again."""


@dataclass
class MemoryEstimate:
    """The estimate for one process. ``batched``: whether it is for the vmap path (else the loop)."""

    bytes_needed: int
    bytes_available: int
    fits: bool
    message: str
    batched: bool = False
    fixed_bytes: int = 0          # parameters, gradients, Adam state
    first_task_bytes: int = 0     # activations of a meta-batch of one task
    per_task_bytes: int = 0       # each further task
    tasks_per_process: int = 1

    def needed_for(self, n_tasks: int) -> int:
        """Bytes for ``n_tasks`` tasks per process on the same path."""
        return self.fixed_bytes + self.first_task_bytes + max(n_tasks - 1, 0) * self.per_task_bytes


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


# -- available memory -------------------------------------------------------------------------------------------
def available_bytes(device: torch.device | str) -> int:
    """Memory this process could still allocate on ``device`` (bytes)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached_unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached_unused, 0))
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return available_ram()


def available_ram() -> int:
    """``MemAvailable`` of /proc/meminfo, else free physical pages (os.sysconf), else 0."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


# -- the estimate ---------------------------------------------------------------------------------------------------
def estimate_maml_memory(config: RunConfig, device: torch.device | str = "cpu", *, batched: bool | None = None,
                         world_size: int = 1) -> MemoryEstimate:
    """Estimate the memory of one MAML meta-training step of ``config`` on ``device``.

    batched: the path to estimate (True = vmap, False = loop); None = the path the run
    would take: ``train.task_batching`` "loop"/"vmap", and for "auto" the loop on the
    CPU, on an accelerator the vmap path when it fits, else the loop.
    world_size: processes sharing the meta-batch (torch.distributed).
    Raises ConfigError naming algorithm.name for an algorithm without ``meta_gradient_memory``.
    """
    from engine.algorithms.registry import algorithm_class

    if not algorithm_class(config.algorithm.name).meta_gradient_memory:
        raise ConfigError(f"algorithm.name: the memory estimate is for MAML / FOMAML / ANIL runs and the algorithms "
                          f"that differentiate through an inner loop like them (got {config.algorithm.name!r})")
    device = torch.device(device)
    tasks_per_process = max(config.task.meta_batch_size // max(world_size, 1), 1)
    loop, vmap = _measure(config, device)
    if batched is None:
        batched = _default_path(config, device, vmap, tasks_per_process)
    profile = vmap if batched else loop
    available = available_bytes(device)
    at_once = _tasks_per_vmap_call(config, tasks_per_process) if batched else tasks_per_process
    needed = profile.needed_for(at_once) if profile.measured else max(profile.partial, available + 1)
    estimate = MemoryEstimate(needed, available, needed <= available, "", batched, profile.fixed,
                              profile.first_task, profile.per_task, tasks_per_process)
    estimate.message = _message(config, device, estimate, profile.measured, world_size)
    return estimate


@dataclass
class _Profile:
    fixed: int = 0
    first_task: int = 0
    per_task: int = 0
    measured: bool = True
    partial: int = 0   # bytes reached before running out of memory while measuring

    def needed_for(self, n_tasks: int) -> int:
        return self.fixed + self.first_task + max(n_tasks - 1, 0) * self.per_task


def _default_path(config: RunConfig, device: torch.device, vmap: _Profile, n_tasks: int) -> bool:
    mode = config.train.task_batching
    if mode != "auto" or n_tasks < 2:
        return mode == "vmap" and n_tasks >= 2
    if device.type == "cpu" or not vmap.measured:
        return False
    return vmap.needed_for(_tasks_per_vmap_call(config, n_tasks)) <= available_bytes(device)


def _tasks_per_vmap_call(config: RunConfig, n_tasks: int) -> int:
    """Tasks whose graphs the vmap path holds at once: ``train.vmap_chunk`` (0 = all) of ``n_tasks``."""
    chunk = config.train.vmap_chunk
    return min(chunk, n_tasks) if chunk > 0 else n_tasks


def _measure(config: RunConfig, device: torch.device) -> tuple[_Profile, _Profile]:
    """(loop profile, vmap profile) from a throw-away copy of the algorithm on ``device``."""
    from engine.algorithms.registry import build_algorithm

    config = copy.deepcopy(config)
    config.model.weights_path = ""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        algorithm = build_algorithm(config, n_train_classes=max(config.task.n_way, 1)).to(device)
        channels_last = resolve_channels_last(config.train.channels_last, device, config.data.image_size)
        algorithm.configure_runtime(resolve_precision(config.train.precision, device)[0], channels_last, "loop")
        tasks = _synthetic_tasks(config, 2, algorithm)
    param_bytes = sum(p.numel() * p.element_size() for p in algorithm.model.parameters())
    input_bytes = sum(t.numel() * t.element_size()
                      for t in (tasks[0].support_x, tasks[0].support_y, tasks[0].query_x, tasks[0].query_y))
    fixed = 4 * param_bytes
    try:
        if device.type == "cuda":
            return _measure_cuda(algorithm, tasks, device, fixed, input_bytes)
        return _measure_saved(algorithm, tasks, fixed, input_bytes)
    finally:
        del algorithm, tasks
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _measure_cuda(algorithm, tasks: list[Task], device: torch.device, fixed: int,
                  input_bytes: int) -> tuple[_Profile, _Profile]:
    loop_peak = _cuda_peak(lambda: algorithm.meta_gradient(tasks[:1], batched=False), device)
    if loop_peak is None or loop_peak[1]:
        partial = loop_peak[0] if loop_peak else 0
        failed = _Profile(fixed, measured=False, partial=fixed + partial)
        return failed, failed
    loop = _Profile(fixed, int(loop_peak[0] * SAFETY_FACTOR), input_bytes)
    one = _cuda_peak(lambda: algorithm.meta_gradient(tasks[:1], batched=True), device)
    two = _cuda_peak(lambda: algorithm.meta_gradient(tasks[:2], batched=True), device)
    if one is None or two is None or one[1] or two[1]:
        partial = max(one[0] if one else 0, two[0] if two else 0)
        return loop, _Profile(fixed, measured=False, partial=fixed + partial)
    per_task = max(two[0] - one[0], input_bytes)
    return loop, _Profile(fixed, int(one[0] * SAFETY_FACTOR), int(per_task * SAFETY_FACTOR))


def _cuda_peak(step: Callable[[], object], device: torch.device) -> tuple[int, bool] | None:
    """(peak bytes above the start, ran out of memory) of ``step``; None when it fails otherwise."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    out_of_memory = False
    try:
        result = step()
        torch.cuda.synchronize(device)
        del result
    except torch.cuda.OutOfMemoryError:
        out_of_memory = True
    except RuntimeError:
        return None
    peak = torch.cuda.max_memory_allocated(device) - start
    torch.cuda.empty_cache()
    return int(peak), out_of_memory


def _measure_saved(algorithm, tasks: list[Task], fixed: int, input_bytes: int) -> tuple[_Profile, _Profile]:
    """CPU / MPS: bytes of the tensors autograd saves for one task on the loop path."""
    parameter_storages = {p.untyped_storage().data_ptr() for p in algorithm.model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        algorithm.meta_gradient(tasks[:1], batched=False)
    activations = int(sum(saved.values()) * CPU_BACKWARD_FACTOR * SAFETY_FACTOR) + input_bytes
    return _Profile(fixed, activations, input_bytes), _Profile(fixed, activations, activations)


def _synthetic_tasks(config: RunConfig, n: int, algorithm) -> list[Task]:
    """``n`` random tasks with the configured shapes, on the algorithm's device."""
    generator = torch.Generator().manual_seed(0)
    task, data = config.task, config.data
    shape = (data.channels, data.image_size, data.image_size)
    tasks = []
    for _ in range(n):
        support_y = torch.arange(task.n_way).repeat_interleave(task.n_shot)
        query_y = torch.arange(task.n_way).repeat_interleave(task.n_query)
        tasks.append(Task(torch.randn(len(support_y), *shape, generator=generator), support_y,
                          torch.randn(len(query_y), *shape, generator=generator), query_y))
    return algorithm.prepare_batch(tasks)


def _message(config: RunConfig, device: torch.device, estimate: MemoryEstimate, measured: bool,
             world_size: int) -> str:
    maml_family = config.algorithm.name in ("maml", "fomaml")  # one config class, MAML or ANIL by its flag
    if maml_family:
        method = "ANIL" if config.algorithm.anil else "MAML"
    else:  # Meta-SGD, BOIL: their own names
        method = config.algorithm.title
    order = f"{'first' if config.algorithm.first_order else 'second'}-order {method}"
    meta_batch = config.task.meta_batch_size
    per = f" ({estimate.tasks_per_process} per process)" if world_size > 1 else ""
    path = "all tasks at once (vmap)" if estimate.batched else "one task at a time"
    free = f"{device} has {gib(estimate.bytes_available)} free"
    if estimate.fits:
        return (f"{order} needs ~{gib(estimate.bytes_needed)} at meta-batch {meta_batch}{per}, {path}; {free}")
    if not measured:
        head = f"{order} does not fit: {device} ran out of memory while measuring one step ({free})"
    else:
        head = f"{order} needs ~{gib(estimate.bytes_needed)} at meta-batch {meta_batch}{per}, {path}, but {free}"
    advice = []
    if not config.algorithm.first_order:
        advice.append("use first-order MAML (algorithm fomaml / --first-order true)" if maml_family
                      else f"use first-order {method} (--first-order true)")
    smaller = _largest_meta_batch(estimate) * world_size if measured else 0
    if 1 <= smaller < meta_batch:
        advice.append(f"lower task.meta_batch_size to {smaller}")
    if estimate.batched:
        chunk = _largest_meta_batch(estimate) if measured else 0
        if 1 <= chunk < estimate.tasks_per_process:
            advice.append(f"set train.vmap_chunk to {chunk} (tasks per vmap call)")
        advice.append("set train.task_batching to loop (one task at a time)")
    if not advice or smaller < 1:
        advice.append("lower task.n_query, data.image_size or model.hidden_channels")
    return f"{head}; " + " or ".join(advice)


def _largest_meta_batch(estimate: MemoryEstimate) -> int:
    """The most tasks per process that fit (0 when even one does not)."""
    room = estimate.bytes_available - estimate.fixed_bytes - estimate.first_task_bytes
    if room < 0:
        return 0
    if estimate.per_task_bytes <= 0:
        return estimate.tasks_per_process
    return 1 + int(room // estimate.per_task_bytes)
