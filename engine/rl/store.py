"""Navigation policy files: small, self-describing (format, kind, config, training history, weights),
written atomically and read safely (``torch.load(weights_only=True)`` through
:func:`engine.training.checkpoint.read_payload`), with every parameter's name, shape and finiteness
checked; any problem is a CheckpointError naming the file."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from engine.errors import CheckpointError
from engine.io import atomic_torch_save
from engine.rl.config import POLICY_KINDS, NavigationConfig
from engine.rl.policy import Params, param_shapes
from engine.rl.training import NavigationPolicy

FORMAT = "meta-studio-navigation-policy"
VERSION = 1
FILE_NAMES = {kind: f"navigation_{kind}.pt" for kind in POLICY_KINDS}


def save_policy(path: Path | str, policy: NavigationPolicy) -> Path:
    """Write ``policy`` atomically (plain data and tensors only)."""
    shapes = param_shapes((policy.config.hidden, policy.config.hidden))
    payload = {
        "format": FORMAT, "version": VERSION, "kind": policy.kind, "config": policy.config.to_dict(),
        "iterations_done": int(policy.iterations_done), "train_seconds": float(policy.train_seconds),
        "stopped": bool(policy.stopped),
        "history": torch.tensor(policy.history, dtype=torch.float32).reshape(-1, 2),
        "params": {name: policy.params[name].detach().cpu().float().contiguous() for name in shapes},
    }
    return atomic_torch_save(Path(path), payload)


def load_policy(path: Path | str) -> NavigationPolicy:
    """Read a file of :func:`save_policy`; CheckpointError naming it for anything else (other file types,
    corrupt or truncated files, unknown kinds, invalid configs, missing, extra or misshapen parameters,
    non-finite weights)."""
    from engine.training.checkpoint import payload_fields, read_kind_payload

    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a navigation policy file (corrupt or truncated: not a PyTorch zip archive)")
    payload, kind = read_kind_payload(path, FORMAT, POLICY_KINDS, "policy")
    with payload_fields(path):
        config = NavigationConfig.from_dict(payload["config"])
        if config.algorithm != kind:
            raise CheckpointError(f"{path}: the config says {config.algorithm!r} but the file holds a {kind!r} policy")
        params = checked_params(path, payload["params"], config.hidden)
        history = payload.get("history")
        rows = history.tolist() if isinstance(history, Tensor) and history.ndim == 2 else []
        return NavigationPolicy(kind, params, config, int(payload["iterations_done"]),
                                [(float(a), float(b)) for a, b in rows], float(payload.get("train_seconds", 0.0)),
                                bool(payload.get("stopped", False)))


def checked_params(path: Path, raw: Any, hidden: int) -> Params:
    """The parameters of a 2 x ``hidden`` policy, each a finite float tensor of the expected shape."""
    from engine.training.checkpoint import checked_float_params

    return checked_float_params(path, raw, param_shapes((hidden, hidden)), f"a 2x{hidden} policy")


def save_policies(folder: Path | str, policies: Mapping[str, NavigationPolicy]) -> dict[str, Path]:
    """Save each policy as ``folder/navigation_<kind>.pt``; returns kind -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {kind: save_policy(folder / FILE_NAMES[kind], policy) for kind, policy in policies.items()}


def load_policies(folder: Path | str, kinds: tuple[str, ...] = POLICY_KINDS) -> dict[str, NavigationPolicy]:
    """Load ``folder/navigation_<kind>.pt`` for each kind; CheckpointError naming a missing or bad file."""
    from engine.training.checkpoint import load_each_kind

    return load_each_kind(folder, FILE_NAMES, kinds, load_policy, "policy")
