"""Scale-out with ``torch.distributed``: ``torchrun --nproc-per-node N -m engine train ...``.

Design (data parallel, exact): every process ("rank") builds the same model from
the same seed (and takes rank 0's weights by broadcast, as DistributedDataParallel
does), draws the SAME global meta-batch from the SAME seeded sampler and keeps
only its own equal slice of tasks (:func:`shard`). Gradients are averaged over
ranks (:func:`all_reduce_gradients`) before every optimiser step, so the step
sees the mean over the whole meta-batch, exactly what a single process with the
same total meta-batch computes: the loss is a mean over tasks, the slices are
equal, and each episode is normalised with its own BatchNorm statistics
(:mod:`engine.models.batchnorm`), so no task's result depends on which rank
holds its neighbours.

Task streams: each rank seeds its own sampler with ``train.seed``; because all
ranks then draw the identical stream and split it, the union of the slices is
the single-process stream (sampling indices and normalising a few small images
is cheap next to a training step), a resumed run restores the stream from the
checkpoint on every rank, and no rank can drift.

Only rank 0 writes the run folder, validates and prints; the others pass
``run_dir=None``. Backends: nccl for CUDA devices (each rank on ``cuda:LOCAL_RANK``),
gloo otherwise. :func:`torchrun_command` builds the command line the studio offers.
"""

from __future__ import annotations

import importlib
import os
import shlex
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Iterable, Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.config import RunConfig

DEFAULT_TIMEOUT = timedelta(minutes=30)


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


# -- set-up and tear-down ----------------------------------------------------------------------------------
def torchrun_env(env: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from torchrun's variables, or None when not launched with several ranks."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)") from None
    if world_size <= 1:
        return None
    return rank, world_size, local_rank


def local_device(device_name: str, local_rank: int) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when CUDA was asked for, else the device asked for."""
    device = torch.device((device_name or "cpu").strip())
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"train.device: {device_name!r} requested but no CUDA GPU is available here")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"train.device: local rank {local_rank} needs GPU cuda:{local_rank} but only "
                          f"{torch.cuda.device_count()} CUDA device(s) exist; lower --nproc-per-node")
    return torch.device("cuda", local_rank)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device_name: str, env: Mapping[str, str] | None = None,
                     timeout: timedelta = DEFAULT_TIMEOUT) -> World | None:
    """Join the process group torchrun describes (env://); None when running as a single process."""
    found = torchrun_env(env)
    if found is None:
        return None
    rank, world_size, local_rank = found
    device = local_device(device_name, local_rank)
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        _import_dynamo_first()
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, timeout=timeout)
    return World(rank, world_size, local_rank, backend)


def _import_dynamo_first() -> None:
    """Import ``torch._dynamo`` before the process group exists (the first optimiser imports it anyway).

    Imported later, it keeps about ten references to the default group (measured: torch 2.14), so
    ``destroy_process_group`` can no longer free the group nor join gloo's threads; at the
    interpreter's exit such a thread, still releasing a finished all_reduce, waits for the GIL, is
    ended by the finalising interpreter and aborts the process ("terminate called without an active
    exception"): a finished run then exits with SIGABRT (tests/engine/test_distributed.py: 4 of about
    40 two-process launches on a 2-core EPYC, and the CI run of 2026-11-23).
    """
    importlib.import_module("torch._dynamo")


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


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined, and after a failure)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing left to tidy
            pass


# -- splitting the work ----------------------------------------------------------------------------------------
def check_divisible(total: int, world_size: int, field_name: str) -> None:
    """ConfigError naming ``field_name`` unless ``total`` splits evenly over ``world_size`` ranks."""
    if total % world_size:
        raise ConfigError(f"{field_name} ({total}) must be divisible by the number of processes ({world_size}) "
                          "so that every rank gets an equal share")


def handoff_problems(config: "RunConfig", world_size: int) -> list[str]:
    """Why ``config`` cannot train on ``world_size`` ranks (empty when it can), each naming its field.

    The same rule the trainer enforces at start-up: episodic algorithms split the
    meta-batch, class-batch baselines split the batch.
    """
    from engine.algorithms.registry import ALGORITHMS

    if ALGORITHMS[config.algorithm.name].batch_kind == "episodes":
        total, name = config.task.meta_batch_size, "task.meta_batch_size"
    else:
        total, name = int(getattr(config.algorithm, "batch_size", 1)), "algorithm.batch_size"
    try:
        check_divisible(total, world_size, name)
    except ConfigError as error:
        return [str(error)]
    return []


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


# -- the command line the studio offers ----------------------------------------------------------------------------
def torchrun_command(config_path: str, nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
                     launcher: str = "torchrun") -> str:
    """A ready ``torchrun ... -m engine train --config <path>`` command line.

    One machine: ``--standalone`` (a private rendezvous on a free port). Several
    machines: run the same command on every node; ``rdzv_endpoint`` ("host:port" of
    one reachable node) is required there. ``launcher`` may be e.g.
    ``"/path/to/python -m torch.distributed.run"`` for a specific environment.
    """
    if nproc < 1:
        raise ConfigError(f"processes per node must be at least 1 (got {nproc})")
    if nnodes < 1:
        raise ConfigError(f"number of nodes must be at least 1 (got {nnodes})")
    parts = [launcher]
    if nnodes == 1 and not rdzv_endpoint:
        parts += ["--standalone", f"--nproc-per-node={nproc}"]
    else:
        if not rdzv_endpoint:
            raise ConfigError(f"{nnodes} nodes need a rendezvous endpoint host:port reachable from every node")
        parts += [f"--nnodes={nnodes}", f"--nproc-per-node={nproc}", "--rdzv-backend=c10d",
                  f"--rdzv-endpoint={shlex.quote(rdzv_endpoint)}", "--rdzv-id=meta-studio"]
    parts += ["-m", "engine", "train", "--config", shlex.quote(str(config_path))]
    return " ".join(parts)
