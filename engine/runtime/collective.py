"""Collective operations over torch.distributed ranks, below the algorithms and the trainer.

The algorithms average gradients, buffers and tensors through these; the trainer (above) sets the
process group up in :mod:`engine.training.distributed`. In a single process every call is a no-op,
so the same algorithm code runs alone and under torchrun. This module imports nothing of the
project above :mod:`engine.errors`, so no import runs back up from the algorithms.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class World:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_world() -> World | None:
    """The initialised process group with more than one rank, or None (single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return World(rank, dist.get_world_size(), local_rank, str(dist.get_backend()))


def is_main_process() -> bool:
    """True on rank 0 and in a single process."""
    world = current_world()
    return world is None or world.is_main


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if current_world() is not None:
        dist.barrier()


# -- splitting the work and collectives ---------------------------------------------------------------
def shard(total: int, world: World | None) -> slice:
    """The rows ``[rank * total / W, (rank + 1) * total / W)`` this rank handles (everything when single)."""
    if world is None:
        return slice(0, total)
    size = total // world.world_size
    return slice(world.rank * size, (world.rank + 1) * size)


# -- collectives -------------------------------------------------------------------------------------------------
def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each ``.grad`` by its mean over ranks (flattened into one buffer per dtype/device).

    A parameter with a gradient on some rank but not on this one takes zeros here,
    so every rank reduces the same buffers; one with no gradient anywhere stays None.
    """
    world = current_world()
    if world is None:
        return
    params = [p for p in parameters if p.requires_grad]
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=_comm_device(params))
    dist.all_reduce(has_grad, op=dist.ReduceOp.MAX)
    live = []
    for p, flag in zip(params, has_grad.tolist()):
        if flag:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            live.append(p.grad)
    average_tensors_(live, world)


def average_tensors_(tensors: list[Tensor], world: World | None = None) -> None:
    """In place: each tensor becomes its mean over ranks (floating-point tensors only)."""
    world = world or current_world()
    if world is None or not tensors:
        return
    buckets: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for tensor in tensors:
        buckets.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for group in buckets.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat.div_(world.world_size)
        offset = 0
        for t in group:
            t.detach().copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def average_floating_buffers(modules: Iterable[torch.nn.Module]) -> None:
    """Average the floating-point buffers (BatchNorm running statistics, feature means) over ranks."""
    if current_world() is None:
        return  # (called every step: not even the list of buffers in a single process)
    buffers = [b for m in modules for b in m.buffers() if b is not None and b.is_floating_point()]
    average_tensors_(buffers)


def broadcast_state(modules: Iterable[torch.nn.Module], src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank (the start of data-parallel training)."""
    if current_world() is None:
        return
    for module in modules:
        for tensor in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
            dist.broadcast(tensor.data, src=src)


def average_metrics(metrics: dict[str, float], device: torch.device, keys: Iterable[str] = ("loss", "accuracy")
                    ) -> dict[str, float]:
    """``metrics`` with ``keys`` replaced by their mean over ranks (so every rank sees the global values)."""
    world = current_world()
    names = [k for k in keys if k in metrics]
    if world is None or not names:
        return metrics
    values = torch.tensor([float(metrics[k]) for k in names], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    values /= world.world_size
    return {**metrics, **dict(zip(names, values.tolist()))}


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on at least one (e.g. a stop request)."""
    if current_world() is None:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def _comm_device(params: list[Tensor]) -> torch.device:
    return params[0].device if params else torch.device("cpu")
