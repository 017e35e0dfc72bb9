"""Adapted classifiers: a trained model fitted to a support set of new classes, saved as one file.

An adapted-classifier file stands alone: besides the class names, the support
images and what adaptation fitted (``Predictor.state()``, e.g. the prototypes),
it carries the training checkpoint's config, class split, preprocessing and
network weights (without optimiser state). The studio's Adapt panel writes it;
the panel and ``meta-engine predict --checkpoint FILE`` read it back. Like
checkpoints it holds only plain containers, numbers, strings and tensors and is
loaded with ``torch.load(weights_only=True)``: the file is data, never code.

:func:`export_torchscript` turns an adapted classifier into a TorchScript module
``[B, C, H, W] float normalised images -> [B, n_classes] probabilities`` that
runs without this package.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor
from engine.algorithms.functional import FunctionalPredictor
from engine.config import RunConfig
from engine.data.folder import SkippedFile
from engine.data.preprocess import Preprocessing
from engine.data.splits import ClassSplit
from engine.errors import CheckpointError, ConfigError, EngineError
from engine.io import atomic_torch_save, atomic_write_bytes
from engine.training.checkpoint import (Checkpoint, check_algorithm_state, declared_format, load_checkpoint,
                                        read_payload, resolve_device)

FORMAT = "meta-studio-adapted"
VERSION = 1
MAX_CLASS_NAME_LENGTH = 200


@dataclass
class AdaptedClassifier:
    """A loaded adapted classifier.

    support_images: [S, C, H, W] uint8 (or float32 already normalised) at the preprocessing size.
    support_labels: [S] int64 in 0..n_classes-1, every class present.
    checkpoint: the embedded training checkpoint (``checkpoint.path`` is this file).
    """

    path: Path | None
    algorithm: Algorithm
    checkpoint: Checkpoint
    class_names: list[str]
    support_images: Tensor
    support_labels: Tensor
    predictor: Predictor
    support_names: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def preprocessing(self) -> Preprocessing:
        return self.checkpoint.preprocessing

    @property
    def config(self) -> RunConfig:
        return self.checkpoint.config

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def support_x(self) -> Tensor:
        """[S, C, H, W] float32 normalised support images."""
        return as_network_input(self.support_images, self.preprocessing)

    def predict(self, images: Tensor) -> Tensor:
        """[Q, C, H, W] uint8, or float32 already normalised -> [Q, n_classes] probabilities (CPU)."""
        x = as_network_input(images, self.preprocessing).to(self.algorithm.device)
        return self.predictor.predict(x).cpu()

    def predict_files(self, paths: Sequence[Path]) -> tuple[Tensor, list[Path], list[SkippedFile]]:
        """Decode and classify image files -> ([G, n] probabilities of the good files, good paths, skipped)."""
        images, good, skipped = self.preprocessing.load_many(paths)
        if not good:
            return torch.empty(0, self.n_classes), good, skipped
        return self.predict(images), good, skipped


def as_network_input(images: Tensor, preprocessing: Preprocessing) -> Tensor:
    """uint8 images are normalised with ``preprocessing``; float images are taken as already normalised."""
    if images.dtype == torch.uint8:
        return preprocessing.normalize(images)
    return images.to(torch.float32)


# -- saving ---------------------------------------------------------------------------------------
def save_adapted(path: Path | str, source: Checkpoint | AdaptedClassifier | Path | str,
                 class_names: Sequence[str], support_images: Tensor, support_labels: Tensor,
                 predictor_state: dict[str, Any], *, algorithm: Algorithm | None = None,
                 support_names: Sequence[str] | None = None) -> Path:
    """Write an adapted classifier atomically and return its path.

    source: the training checkpoint (loaded, or its file) or an adapted classifier whose
        embedded checkpoint is reused; its config, split, preprocessing and weights are copied.
    algorithm: when given, its current weights are saved instead of the source's.
    support_images: [S, C, H, W] uint8 (stored as is) or float32 normalised.
    support_labels: [S] int64 in 0..len(class_names)-1.
    predictor_state: ``Predictor.state()`` of the predictor adapted to this support set.
    support_names: optional [S] display names of the support images (file names).
    """
    checkpoint = _source_checkpoint(source)
    names = [str(n) for n in class_names]
    images = support_images.detach().cpu()
    labels = support_labels.detach().cpu().to(torch.int64)
    _check_support_tensors(Path(path), names, images, labels, checkpoint.preprocessing, CheckpointError)
    modules = (algorithm.state_dict() if algorithm is not None else checkpoint.algorithm_state)["modules"]
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": checkpoint.config.to_dict(),
        "split": checkpoint.split.to_dict(),
        "preprocessing": checkpoint.preprocessing.to_dict(),
        "step": int(checkpoint.step),
        "n_train_classes": int(checkpoint.n_train_classes),
        "algorithm": {"modules": _to_cpu(modules), "optimizers": {}},
        "source_checkpoint": str(checkpoint.extra.get("source_checkpoint") or checkpoint.path),
        "class_names": names,
        "support_images": images.contiguous(),
        "support_labels": labels.contiguous(),
        "support_names": [str(n) for n in (support_names or [])],
        "predictor": _to_cpu(dict(predictor_state)),
    }
    return atomic_torch_save(path, payload)


def _source_checkpoint(source: Checkpoint | AdaptedClassifier | Path | str) -> Checkpoint:
    if isinstance(source, AdaptedClassifier):
        return source.checkpoint
    if isinstance(source, Checkpoint):
        return source
    return load_checkpoint(source)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


# -- loading --------------------------------------------------------------------------------------
def is_adapted_file(path: Path | str) -> bool:
    """True when ``path`` declares itself an adapted classifier (its format field, read without the tensors);
    ``load_adapted`` then checks it whole and names the file if it is damaged."""
    return declared_format(path) == FORMAT


def load_adapted(path: Path | str, device: str = "cpu") -> AdaptedClassifier:
    """Load and validate an adapted classifier (weights_only); CheckpointError naming the file."""
    path = Path(path)
    payload = read_payload(path, FORMAT)
    try:
        checkpoint = _embedded_checkpoint(path, payload)
        names = payload["class_names"]
        images, labels = payload["support_images"], payload["support_labels"]
        support_names = payload.get("support_names") or []
        predictor_state = payload["predictor"]
    except ConfigError as error:
        raise CheckpointError(f"{path}: invalid config inside the adapted classifier: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: adapted classifier is missing or has a malformed field ({error})") from None
    _check_support_tensors(path, names, images, labels, checkpoint.preprocessing, CheckpointError)
    if not isinstance(support_names, list) or not all(isinstance(n, str) for n in support_names):
        raise CheckpointError(f"{path}: support_names must be a list of strings")
    if not isinstance(predictor_state, dict):
        raise CheckpointError(f"{path}: predictor state must be a dict")
    algorithm = _build_algorithm(path, checkpoint, device)
    predictor = _rebuild_predictor(path, algorithm, predictor_state, images, checkpoint.preprocessing, len(names))
    return AdaptedClassifier(path=path, algorithm=algorithm, checkpoint=checkpoint, class_names=list(names),
                             support_images=images, support_labels=labels, predictor=predictor,
                             support_names=list(support_names) if len(support_names) == len(labels) else [],
                             source=str(payload.get("source_checkpoint", "")))


def _embedded_checkpoint(path: Path, payload: dict[str, Any]) -> Checkpoint:
    algorithm_state = payload["algorithm"]
    if not isinstance(algorithm_state, dict) or not isinstance(algorithm_state.get("modules"), dict):
        raise CheckpointError(f"{path}: adapted classifier holds no network weights")
    return Checkpoint(path=path, config=RunConfig.from_dict(payload["config"]),
                      split=ClassSplit.from_dict(payload["split"]),
                      preprocessing=Preprocessing.from_dict(payload["preprocessing"]),
                      step=int(payload["step"]), algorithm_state=algorithm_state,
                      n_train_classes=int(payload["n_train_classes"]),
                      extra={"source_checkpoint": str(payload.get("source_checkpoint", ""))})


def _check_support_tensors(path: Path, names: Any, images: Any, labels: Any, prep: Preprocessing,
                           error: type[EngineError]) -> None:
    """Validate class names [n], images [S, C, H, W] and labels [S]; ``error`` naming ``path``."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise error(f"{path}: class_names must be a list of strings")
    if len(names) < 2:
        raise error(f"{path}: an adapted classifier needs at least 2 classes (got {len(names)})")
    if len(set(names)) != len(names) or any(not n.strip() or len(n) > MAX_CLASS_NAME_LENGTH for n in names):
        raise error(f"{path}: class names must be unique, non-empty and at most {MAX_CLASS_NAME_LENGTH} characters")
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise error(f"{path}: support_images and support_labels must be tensors")
    expected = (prep.channels, prep.image_size, prep.image_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.dtype not in (torch.uint8, torch.float32):
        raise error(f"{path}: support_images must be uint8 or float32 of shape [S, {expected[0]}, {expected[1]}, "
                    f"{expected[2]}] (got {images.dtype} {tuple(images.shape)})")
    if labels.ndim != 1 or labels.dtype != torch.int64 or labels.shape[0] != images.shape[0]:
        raise error(f"{path}: support_labels must be int64 of shape [{images.shape[0]}] "
                    f"(got {labels.dtype} {tuple(labels.shape)})")
    counts = torch.bincount(labels.clamp_min(0), minlength=len(names)) if labels.numel() else torch.zeros(0)
    if labels.numel() == 0 or int(labels.min()) < 0 or int(labels.max()) >= len(names) or bool((counts == 0).any()):
        raise error(f"{path}: support_labels must be 0..{len(names) - 1} with every class present")
    if images.dtype == torch.float32 and not bool(torch.isfinite(images).all()):
        raise error(f"{path}: support_images contain non-finite values")


def _build_algorithm(path: Path, checkpoint: Checkpoint, device: str) -> Algorithm:
    from engine.algorithms.registry import build_algorithm

    config = checkpoint.config
    config.model.weights_path = ""
    # shapes first, on the meta device: a crafted file describing a huge model allocates nothing
    check_algorithm_state(path, config, checkpoint.n_train_classes, checkpoint.algorithm_state)
    try:
        algorithm = build_algorithm(config, n_train_classes=checkpoint.n_train_classes)
        algorithm.load_state_dict(checkpoint.algorithm_state, with_optimizers=False)
    except ConfigError as error:
        raise CheckpointError(f"{path}: the model described in the adapted classifier is invalid: {error}") from None
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: weights do not match the model described in the adapted classifier "
                              f"({_first_line(error)})") from None
    algorithm.to(resolve_device(device))
    algorithm.train(False)
    return algorithm


def _rebuild_predictor(path: Path, algorithm: Algorithm, state: dict[str, Any], images: Tensor,
                       prep: Preprocessing, n_classes: int) -> Predictor:
    """predictor_from_state, then one prediction on the support images to check the shapes fit."""
    try:
        predictor = algorithm.predictor_from_state(state)
        probs = predictor.predict(as_network_input(images, prep).to(algorithm.device))
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, NotImplementedError) as error:
        raise CheckpointError(f"{path}: the fitted classifier state does not fit the model "
                              f"({_first_line(error)})") from None
    if tuple(probs.shape) != (images.shape[0], n_classes):
        raise CheckpointError(f"{path}: the fitted classifier gives {tuple(probs.shape)[-1]} classes, "
                              f"but the file names {n_classes}")
    return predictor


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


# -- TorchScript ----------------------------------------------------------------------------------
class _FastWeightsModule(nn.Module):
    """softmax(model(x)) for a model whose parameters hold the adapted (fast) weights."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        """[B, C, H, W] float normalised -> [B, n_classes] probabilities."""
        return self.model(images).softmax(1)


def predictor_module(algorithm: Algorithm, predictor: Predictor) -> nn.Module:
    """A module computing ``predictor.predict``; MAML/Reptile fast weights are written into the (copied) model,
    because tracing cannot follow ``torch.func.functional_call``."""
    if isinstance(predictor, FunctionalPredictor):
        result = predictor.model.load_state_dict(predictor.params, strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"adapted weights do not fit the model: {result.unexpected_keys[0]}")
        return _FastWeightsModule(predictor.model).eval()
    return _PredictorModule(algorithm, predictor).eval()


class _PredictorModule(nn.Module):
    """``predictor.predict`` as a module; the algorithm's networks are submodules so tracing sees their weights."""

    def __init__(self, algorithm: Algorithm, predictor: Predictor) -> None:
        super().__init__()
        self.networks = nn.ModuleDict(algorithm.modules())
        self._predictor = predictor

    def forward(self, images: Tensor) -> Tensor:
        """[B, C, H, W] float normalised -> [B, n_classes] probabilities."""
        return self._predictor.predict(images)


def export_torchscript(adapted: AdaptedClassifier, path: Path | str) -> Path:
    """Trace the adapted classifier to TorchScript (CPU) and save it atomically.

    The module maps [B, C, H, W] float32 images, normalised as ``adapted.preprocessing``
    does ((x/255 - mean) / std), to [B, n_classes] probabilities; the class names and the
    preprocessing are stored in the archive as ``extra_files`` (``classes.txt``,
    ``preprocessing.json``).
    """
    path = Path(path)
    algorithm = copy.deepcopy(adapted.algorithm).to("cpu")  # the live model keeps its device and grad flags
    for network in algorithm.modules().values():
        network.requires_grad_(False)
    try:
        predictor = algorithm.predictor_from_state(adapted.predictor.state())
        module = predictor_module(algorithm, predictor)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the portable format
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # BatchNorm's batch-size check (MAML)
            traced = torch.jit.trace(module, (adapted.support_x().cpu(),), check_trace=False)
    except (RuntimeError, NotImplementedError, TypeError) as error:
        raise CheckpointError(f"{path}: cannot export this classifier to TorchScript ({_first_line(error)})") from None
    extra = {"classes.txt": "\n".join(adapted.class_names) + "\n",
             "preprocessing.json": json.dumps(adapted.preprocessing.to_dict())}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, buffer, _extra_files=extra)
    return atomic_write_bytes(path, buffer.getvalue())


__all__ = ["FORMAT", "AdaptedClassifier", "save_adapted", "load_adapted", "is_adapted_file",
           "export_torchscript", "as_network_input", "predictor_module"]
