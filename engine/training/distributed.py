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
from datetime import timedelta
from typing import TYPE_CHECKING, Mapping

import torch
import torch.distributed as dist

from engine.errors import ConfigError
from engine.runtime.collective import World

if TYPE_CHECKING:
    from engine.config import RunConfig

DEFAULT_TIMEOUT = timedelta(minutes=30)


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
    from engine.training.sampling import batch_size_field, training_batch_size

    total, name = training_batch_size(config), batch_size_field(config)
    try:
        check_divisible(total, world_size, name)
    except ConfigError as error:
        return [str(error)]
    return []


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
