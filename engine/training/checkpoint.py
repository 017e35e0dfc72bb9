"""Self-describing checkpoints, written atomically and loaded safely.

A checkpoint alone is enough to adapt and predict later: it carries the run
config, the class split, the preprocessing, the algorithm's weights (and its
optimiser state, so a stopped run resumes exactly) and the training step.
Only plain containers, numbers, strings and tensors are stored, so loading uses
``torch.load(weights_only=True)``: a checkpoint is data, never code.

A checkpoint from someone else is untrusted input. :func:`load_checkpoint`
validates its config (bounds, cross-field rules) and its class split;
:func:`load_algorithm` compares every weight tensor with the shape that config
implies (worked out on PyTorch's "meta" device, which allocates nothing, so a
file cannot make us build a huge model) and refuses non-finite weights and
optimiser state of the wrong shape. Every refusal is a CheckpointError naming
the file.
"""

from __future__ import annotations

import math
import pickle
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, TypeVar

import torch
from torch import Tensor

from engine.algorithms.base import Algorithm
from engine.config import RunConfig, resolve_channels_last
from engine.data.preprocess import Preprocessing
from engine.data.splits import ClassSplit
from engine.errors import CheckpointError, ConfigError, EngineError
from engine.io import atomic_torch_save, verify_zip_records

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


def random_state(device: torch.device) -> dict[str, torch.Tensor]:
    """PyTorch's global generators (the CPU's, and ``device``'s on CUDA): what dropout draws from.
    Saved in a training checkpoint's ``extra["random"]`` so a resumed run draws what it would have."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_random_state(state: Any, device: torch.device) -> bool:
    """Put back a :func:`random_state`; False (nothing changed) for a checkpoint without one or with a
    state PyTorch refuses (written by another device type, say)."""
    if not isinstance(state, dict) or not isinstance(state.get("cpu"), torch.Tensor):
        return False
    try:
        torch.set_rng_state(state["cpu"])
        if device.type == "cuda" and isinstance(state.get("cuda"), torch.Tensor):
            torch.cuda.set_rng_state(state["cuda"], device)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


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
    verify_zip_records(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: refused to load: the file contains objects other than plain data "
                              f"and tensors, so it could run code ({_first_line(error)})") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not a readable checkpoint (it declares more data than fits in "
                              "memory)") from None
    except Exception as error:  # torch.load raises many types on corrupt input; all mean "unreadable"
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                              f"{_first_line(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise CheckpointError(f"{path}: not a Meta Studio file of type {expected_format!r}")
    return payload


def declared_format(path: Path | str) -> str | None:
    """The ``format`` field a Meta Studio file declares, read without its tensors (memory-mapped, so a 100 MB
    checkpoint costs milliseconds); None for a missing, unreadable or foreign file. Only says which reader
    to use: the reader (``read_payload``) still checks the file whole."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # any failure means "not a file whose format can be read"
        return None
    found = payload.get("format") if isinstance(payload, dict) else None
    return found if isinstance(found, str) else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


@contextmanager
def payload_fields(path: Path) -> Iterator[None]:
    """While reading the fields of a small model file (regression models, navigation policies): an invalid
    config or a missing or malformed field becomes a CheckpointError naming ``path``."""
    try:
        yield
    except ConfigError as error:
        raise CheckpointError(f"{path}: invalid config inside the file: {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path}: missing or malformed field ({error})") from None


def read_kind_payload(path: Path, expected_format: str, kinds: Sequence[str], what: str) -> tuple[dict[str, Any], str]:
    """:func:`read_payload` of a small model file and its ``kind``, one of ``kinds`` (CheckpointError naming
    ``path`` and ``what``, e.g. "model" or "policy", otherwise)."""
    payload = read_payload(path, expected_format=expected_format)
    with payload_fields(path):
        kind = payload["kind"]
        if kind not in kinds:
            raise CheckpointError(f"{path}: unknown {what} kind {kind!r} (expected one of {', '.join(kinds)})")
    return payload, kind


class _OfAKind(Protocol):
    kind: str


Loaded = TypeVar("Loaded", bound=_OfAKind)


def load_each_kind(folder: Path | str, file_names: Mapping[str, str], kinds: Sequence[str],
                   load: Callable[[Path], Loaded], what: str) -> dict[str, Loaded]:
    """``load(folder / file_names[kind])`` for each kind, each checked to hold that kind (its ``.kind``);
    CheckpointError naming a missing, bad or swapped file."""
    folder = Path(folder)
    loaded = {kind: load(folder / file_names[kind]) for kind in kinds}
    for kind, item in loaded.items():
        if item.kind != kind:
            raise CheckpointError(f"{folder / file_names[kind]}: holds a {item.kind!r} {what}, expected {kind!r}")
    return loaded


def checked_float_params(path: Path, raw: Any, shapes: Mapping[str, tuple[int, ...]],
                         model: str) -> dict[str, Tensor]:
    """``raw`` as exactly the parameters ``shapes`` names, each a finite float tensor of its shape (as float32);
    CheckpointError naming ``path`` (and ``model``, e.g. "the 2x40 MLP") otherwise."""
    if not isinstance(raw, dict) or set(raw) != set(shapes):
        names = sorted(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path}: expected the parameters {', '.join(shapes)} of {model}, got {names}")
    params: dict[str, Tensor] = {}
    for name, shape in shapes.items():
        tensor = raw[name]
        if not isinstance(tensor, Tensor) or tuple(tensor.shape) != shape or not tensor.is_floating_point():
            got = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise CheckpointError(f"{path}: parameter {name} should be a float tensor of shape {shape}, got {got}")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: parameter {name} holds non-finite values")
        params[name] = tensor.float()
    return params


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Load and validate a checkpoint file (safe: weights_only)."""
    path = Path(path)
    payload = read_payload(path)
    try:
        checkpoint = Checkpoint(
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
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path}: checkpoint is missing or has a malformed field ({error})") from None
    _check_consistency(checkpoint)
    return checkpoint


def _check_consistency(checkpoint: Checkpoint) -> None:
    """The numbers of a checkpoint agree with each other; CheckpointError naming the file otherwise."""
    path, config = checkpoint.path, checkpoint.config
    if checkpoint.step < 0:
        raise CheckpointError(f"{path}: step must not be negative (got {checkpoint.step})")
    if not isinstance(checkpoint.algorithm_state, dict) or not isinstance(
            checkpoint.algorithm_state.get("modules"), dict):
        raise CheckpointError(f"{path}: checkpoint holds no network weights")
    per_class = 4 if config.data.augment_rotations else 1
    most = max(1, len(checkpoint.split.train)) * per_class
    if not 1 <= checkpoint.n_train_classes <= most:
        raise CheckpointError(f"{path}: n_train_classes is {checkpoint.n_train_classes}, but the class split "
                              f"has {len(checkpoint.split.train)} training classes")
    prep = checkpoint.preprocessing
    if (prep.image_size, prep.channels) != (config.data.image_size, config.data.channels):
        raise CheckpointError(f"{path}: preprocessing ({prep.image_size} px, {prep.channels} channel(s)) does not "
                              f"match data.image_size / data.channels of its config "
                              f"({config.data.image_size} px, {config.data.channels})")


def load_algorithm(path: Path | str, device: str = "cpu") -> tuple[Algorithm, Checkpoint]:
    """Rebuild the algorithm of a checkpoint with its weights, on ``device``."""
    from engine.algorithms.registry import build_algorithm

    checkpoint = load_checkpoint(path)
    config = checkpoint.config
    config.model.weights_path = ""  # the checkpoint already holds the weights
    check_algorithm_state(checkpoint.path, config, checkpoint.n_train_classes, checkpoint.algorithm_state)
    try:
        algorithm = build_algorithm(config, n_train_classes=checkpoint.n_train_classes)
    except ConfigError as error:
        raise CheckpointError(f"{path}: the model described in the checkpoint is invalid: {error}") from None
    try:
        algorithm.load_state_dict(checkpoint.algorithm_state)
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise CheckpointError(f"{path}: weights do not match the model described in the checkpoint "
                              f"({_first_line(error)})") from None
    _check_optimizer_state(checkpoint.path, algorithm)
    algorithm.to(resolve_device(device))
    # the run's memory format, so that predictions match the trained run's to the bit
    algorithm.configure_runtime(channels_last=resolve_channels_last(
        config.train.channels_last, algorithm.device, config.data.image_size))
    algorithm.train(False)
    return algorithm, checkpoint


def check_algorithm_state(path: Path, config: RunConfig, n_train_classes: int, state: Any) -> None:
    """Compare the weights in ``state["modules"]`` with the shapes ``config`` implies, before building anything.

    The expected shapes come from building the algorithm on the "meta" device (no memory
    is allocated). Refuses (CheckpointError naming ``path``) a missing, unexpected or
    differently shaped tensor, a non-tensor weight and non-finite weights.
    """
    from engine.algorithms.registry import build_algorithm

    try:
        with torch.device("meta"):
            expected = build_algorithm(config, n_train_classes=n_train_classes).state_dict()["modules"]
    except ConfigError as error:
        raise CheckpointError(f"{path}: the model described in the file is invalid: {error}") from None
    modules = state.get("modules") if isinstance(state, dict) else None
    if not isinstance(modules, dict):
        raise CheckpointError(f"{path}: the file holds no network weights")
    for name in sorted(set(expected) | set(modules)):
        if name not in modules:
            raise CheckpointError(f"{path}: weights of network {name!r} are missing")
        if name not in expected:
            raise CheckpointError(f"{path}: unexpected network {name!r} for algorithm {config.algorithm.name!r}")
        _check_tensors(path, name, expected[name], modules[name])


def _check_tensors(path: Path, network: str, expected: dict[str, Tensor], got: Any) -> None:
    if not isinstance(got, dict):
        raise CheckpointError(f"{path}: weights of network {network!r} are not a dict of tensors")
    for key in sorted(set(expected) | set(got), key=str):
        where = f"{network}.{key}"
        if key not in got:
            raise CheckpointError(f"{path}: weight {where} is missing")
        if key not in expected:
            raise CheckpointError(f"{path}: unexpected weight {where}")
        tensor = got[key]
        if not isinstance(tensor, Tensor):
            raise CheckpointError(f"{path}: weight {where} is not a tensor")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: weight {where} has shape {tuple(tensor.shape)}, but the model in its "
                                  f"config needs {tuple(expected[key].shape)}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: weight {where} contains NaN or infinite values")


def _check_optimizer_state(path: Path, algorithm: Algorithm) -> None:
    """Optimiser moments must have their parameter's shape (PyTorch does not check it)."""
    for name, optimizer in algorithm.optimizers().items():
        for group in optimizer.param_groups:
            for param in group["params"]:
                for key, value in optimizer.state.get(param, {}).items():
                    if isinstance(value, Tensor) and value.ndim > 0 and value.shape != param.shape:
                        raise CheckpointError(f"{path}: optimiser state {name}.{key} has shape "
                                              f"{tuple(value.shape)}, but its parameter has {tuple(param.shape)}")
                    if isinstance(value, Tensor) and value.is_floating_point() and \
                            not bool(torch.isfinite(value).all()):
                        raise CheckpointError(f"{path}: optimiser state {name}.{key} contains NaN or "
                                              "infinite values")
                    if isinstance(value, float) and not math.isfinite(value):
                        raise CheckpointError(f"{path}: optimiser state {name}.{key} is not finite")


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
           "read_payload", "check_algorithm_state", "EngineError"]
