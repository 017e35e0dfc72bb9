"""Self-describing checkpoints, written atomically and loaded safely.

A checkpoint alone is enough to adapt and predict later: it carries the run
config, the class split, the preprocessing, the algorithm's weights (and its
optimiser state, so a stopped run resumes exactly) and the training step.
Only plain containers, numbers, strings and tensors are stored, so loading uses
``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.algorithms.base import Algorithm
from engine.config import RunConfig
from engine.data.preprocess import Preprocessing
from engine.data.splits import ClassSplit
from engine.errors import CheckpointError, ConfigError, EngineError
from engine.io import atomic_torch_save

FORMAT = "meta-studio-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """The loaded content of a checkpoint file."""

    path: Path
    config: RunConfig
    split: ClassSplit
    preprocessing: Preprocessing
    step: int
    algorithm_state: dict[str, Any]
    n_train_classes: int
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: Path, algorithm: Algorithm, config: RunConfig, split: ClassSplit,
                    preprocessing: Preprocessing, step: int, n_train_classes: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (a crash never leaves a half-written file)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "split": split.to_dict(),
        "preprocessing": preprocessing.to_dict(),
        "step": int(step),
        "n_train_classes": int(n_train_classes),
        "algorithm": _to_cpu(algorithm.state_dict()),
        "extra": extra or {},
    }
    return atomic_torch_save(path, payload)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def read_payload(path: Path | str, expected_format: str = FORMAT) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``; any failure becomes a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: refused to load: the file contains objects other than plain data "
                              f"and tensors, so it could run code ({_first_line(error)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                              f"{_first_line(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise CheckpointError(f"{path}: not a Meta Studio file of type {expected_format!r}")
    return payload


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Load and validate a checkpoint file (safe: weights_only)."""
    path = Path(path)
    payload = read_payload(path)
    try:
        return Checkpoint(
            path=path,
            config=RunConfig.from_dict(payload["config"]),
            split=ClassSplit.from_dict(payload["split"]),
            preprocessing=Preprocessing.from_dict(payload["preprocessing"]),
            step=int(payload["step"]),
            algorithm_state=payload["algorithm"],
            n_train_classes=int(payload["n_train_classes"]),
            extra=dict(payload.get("extra") or {}),
        )
    except ConfigError as error:
        raise CheckpointError(f"{path}: invalid config inside the checkpoint: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: checkpoint is missing or has a malformed field ({error})") from None


def load_algorithm(path: Path | str, device: str = "cpu") -> tuple[Algorithm, Checkpoint]:
    """Rebuild the algorithm of a checkpoint with its weights, on ``device``."""
    from engine.algorithms.registry import build_algorithm

    checkpoint = load_checkpoint(path)
    config = checkpoint.config
    config.model.weights_path = ""  # the checkpoint already holds the weights
    algorithm = build_algorithm(config, n_train_classes=checkpoint.n_train_classes)
    try:
        algorithm.load_state_dict(checkpoint.algorithm_state)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: weights do not match the model described in the checkpoint "
                              f"({_first_line(error)})") from None
    algorithm.to(resolve_device(device))
    algorithm.train(False)
    return algorithm, checkpoint


def resolve_device(name: str) -> torch.device:
    """Check that a device name is usable here; ConfigError naming train.device otherwise."""
    name = (name or "cpu").strip()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {name!r} (use cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: {name!r} requested but no CUDA GPU is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device: {name!r} requested but only {torch.cuda.device_count()} "
                              "CUDA device(s) exist")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"train.device: {name!r} requested but MPS is not available here")
    elif device.type != "cpu":
        raise ConfigError(f"train.device: unsupported device type {device.type!r}")
    return device


__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "load_algorithm", "resolve_device",
           "read_payload", "EngineError"]
