"""Export a trained model to files other runtimes load: ONNX, a PyTorch exported program (pt2) or TorchScript,
with the parity check built in.

Two kinds of model are exported:

* an adapted classifier: ``[B, C, H, W]`` float32 images, normalised as the model's preprocessing does
  (``(x/255 - mean) / std``), to ``[B, n_classes]`` probabilities; the class names travel in the file's
  metadata (ONNX ``metadata_props``, pt2 and TorchScript extra files ``classes.txt``);
* a trained backbone: the same images to ``[B, D]`` features (eval mode, running statistics).

Every file carries ``preprocessing.json`` (image size, channels, mean, std) and the kind. The batch size is
dynamic. Parity is part of the export: the written file is loaded back (onnxruntime, ``torch.export.load``,
``torch.jit.load``) and run on the support images and a few query images; the largest absolute difference
from PyTorch's output (for features: relative to the largest feature) above :data:`PARITY_TOLERANCE`
fails the export with :class:`ParityError` and removes the file.

ONNX needs the optional packages onnx, onnxscript and onnxruntime (the ``export`` extra); they are imported
only when an ONNX export runs.

:func:`classifier_source` and :func:`backbone_source` take a private CPU snapshot of the model (cheap, in the
caller's thread); :func:`export_source` writes and checks it and may run in a worker thread.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.adapted import AdaptedClassifier, as_network_input, is_adapted_file, load_adapted, predictor_module
from engine.algorithms.base import Algorithm
from engine.data.folder import scan_folder
from engine.data.preprocess import Preprocessing
from engine.errors import DatasetError, EngineError
from engine.io import atomic_write_bytes
from engine.training.checkpoint import Checkpoint, load_algorithm

EXPORT_FORMATS = {"onnx": ("ONNX", ".onnx"), "pt2": ("pt2 (torch.export program)", ".pt2"),
           "torchscript": ("TorchScript (legacy)", ".ts.pt")}
"""Format name -> (title, usual file suffix)."""
PARITY_TOLERANCE = 1e-4
N_PARITY_QUERIES = 6
ONNX_OPSET = 18
ONNX_INSTALL_HINT = "pip install 'meta-studio[export]' (onnx, onnxscript, onnxruntime)"


class ExportError(EngineError):
    """An export that could not be written (a missing optional package, a model the exporter cannot follow)."""


class ParityError(ExportError):
    """The written file does not compute what the PyTorch model computes (beyond the tolerance)."""


@dataclass
class ExportSource:
    """What one export writes: a CPU module in eval mode, its parity inputs and PyTorch's outputs on them.

    kind: "classifier" (probabilities) or "backbone" (features).
    inputs: parity batches, [B, C, H, W] float32 normalised (support, then queries).
    reference: PyTorch's output for each batch of ``inputs``.
    metadata: text entries stored in the file (``classes.txt``, ``preprocessing.json``, ``kind``).
    """

    module: nn.Module
    kind: str
    preprocessing: Preprocessing
    inputs: list[Tensor]
    reference: list[Tensor]
    class_names: list[str] = field(default_factory=list)

    @property
    def metadata(self) -> dict[str, str]:
        entries = {"kind": self.kind, "preprocessing.json": json.dumps(self.preprocessing.to_dict())}
        if self.class_names:
            entries["classes.txt"] = "\n".join(self.class_names) + "\n"
        return entries


@dataclass(frozen=True)
class ExportReport:
    """The written file and its parity figure (largest absolute difference, on ``n_images`` images)."""

    path: Path
    format: str
    kind: str
    parity: float
    n_images: int
    input_shape: tuple[int, int, int]
    output_size: int
    class_names: tuple[str, ...] = ()

    def describe(self) -> str:
        """One paragraph for the terminal and the studio: what the file takes, gives and how close it is."""
        c, h, w = self.input_shape
        what = f"probabilities of {', '.join(self.class_names)}" if self.kind == "classifier" else "features"
        measure = "max abs difference of probabilities" if self.kind == "classifier" else \
            "max abs difference of features (relative to the largest)"
        return (f"exported the {self.kind} as {EXPORT_FORMATS[self.format][0]} to {self.path}: input [B, {c}, {h}, {w}] float32 "
                f"normalised images, output [B, {self.output_size}] {what}\n"
                f"parity: {measure} {self.parity:.2e} on {self.n_images} images (tolerance {PARITY_TOLERANCE:g})")


# -- what to export ----------------------------------------------------------------------------------
def classifier_source(adapted: AdaptedClassifier, queries: Tensor | None = None) -> ExportSource:
    """A snapshot of an adapted classifier: a CPU copy computing ``adapted.predict``; parity on the support
    images and ``queries`` ([Q, C, H, W] uint8 or normalised; default: a few flipped support images and
    seeded noise)."""
    if type(adapted.algorithm).transductive:
        name = adapted.config.algorithm.name
        raise ExportError(f"{name} is transductive: its predictions come from an inference over the whole batch of "
                          "query images, which the exporters cannot follow for every batch size; export the "
                          "trained backbone instead (meta-engine export without --support)")
    algorithm = copy.deepcopy(adapted.algorithm).to("cpu")  # the live model keeps its device and grad flags
    for network in algorithm.modules().values():
        network.requires_grad_(False)
    try:
        module = predictor_module(algorithm, algorithm.predictor_from_state(adapted.predictor.state()))
    except (RuntimeError, NotImplementedError, TypeError, KeyError) as error:
        raise ExportError(f"cannot export this {adapted.config.algorithm.name} classifier ({error})") from None
    support = adapted.support_x().cpu()
    query_x = as_network_input(queries, adapted.preprocessing).cpu() if queries is not None \
        else parity_queries(support, adapted.preprocessing)
    inputs = [support, query_x]
    reference = [adapted.predict(x).cpu() for x in inputs]
    return ExportSource(module=module, kind="classifier", preprocessing=adapted.preprocessing, inputs=inputs,
                        reference=reference, class_names=list(adapted.class_names))


def backbone_source(algorithm: Algorithm, preprocessing: Preprocessing) -> ExportSource:
    """A snapshot of a trained backbone (eval mode) mapping normalised images to features; parity on seeded
    images."""
    backbone = copy.deepcopy(algorithm.backbone).to("cpu").eval().requires_grad_(False)
    size, channels = preprocessing.image_size, preprocessing.channels
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2 * N_PARITY_QUERIES, channels, size, size), dtype=torch.uint8,
                           generator=generator)
    inputs = [preprocessing.normalize(images[:N_PARITY_QUERIES]), preprocessing.normalize(images[N_PARITY_QUERIES:])]
    with torch.no_grad():
        reference = [backbone(x) for x in inputs]
    return ExportSource(module=backbone, kind="backbone", preprocessing=preprocessing, inputs=inputs,
                        reference=reference)


def parity_queries(support: Tensor, preprocessing: Preprocessing) -> Tensor:
    """A few query images that are not the support images: mirrored support images and seeded noise,
    normalised [Q, C, H, W]."""
    mirrored = support[:N_PARITY_QUERIES // 2].flip(-1)
    generator = torch.Generator().manual_seed(0)
    size, channels = preprocessing.image_size, preprocessing.channels
    noise = torch.randint(0, 256, (N_PARITY_QUERIES - len(mirrored), channels, size, size), dtype=torch.uint8,
                          generator=generator)
    return torch.cat([mirrored, preprocessing.normalize(noise)])


# -- writing and checking ----------------------------------------------------------------------------
def export_source(source: ExportSource, path: Path | str, fmt: str) -> ExportReport:
    """Write ``source`` as ``fmt`` (a key of :data:`EXPORT_FORMATS`) to ``path`` atomically, load it back and check
    parity; ParityError (the file removed) when it differs by more than :data:`PARITY_TOLERANCE`."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"--format: unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    writer, runner = _WRITERS[fmt]
    example = source.inputs[0]
    try:
        data = writer(source, example)
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as error:
        raise ExportError(f"{path}: cannot export this model to {EXPORT_FORMATS[fmt][0]} ({_first_line(error)})") from None
    atomic_write_bytes(path, data)
    run = runner(path)
    outputs = [run(x) for x in source.inputs]
    parity = max(_difference(out, ref, source.kind) for out, ref in zip(outputs, source.reference))
    if not parity <= PARITY_TOLERANCE:  # also NaN
        path.unlink(missing_ok=True)
        raise ParityError(f"{path}: the exported {EXPORT_FORMATS[fmt][0]} model differs from PyTorch by {parity:.2e} "
                          f"(largest absolute difference; tolerance {PARITY_TOLERANCE:g}); the file was removed")
    prep = source.preprocessing
    return ExportReport(path=path, format=fmt, kind=source.kind, parity=parity,
                        n_images=sum(len(x) for x in source.inputs),
                        input_shape=(prep.channels, prep.image_size, prep.image_size),
                        output_size=int(source.reference[0].shape[1]), class_names=tuple(source.class_names))


def _difference(output: Tensor, reference: Tensor, kind: str) -> float:
    if tuple(output.shape) != tuple(reference.shape):
        return float("inf")
    difference = float((output.float() - reference.float()).abs().max())
    if kind == "backbone":
        difference /= max(1.0, float(reference.abs().max()))
    return difference


def _batch_dim() -> dict[int, Any]:
    return {0: torch.export.Dim("batch", min=1)}


class _SlicedAdaptiveMaxPool2d(nn.Module):
    """``nn.AdaptiveMaxPool2d`` written with max pooling or slices of the input's (static) size: ONNX has no
    adaptive pooling (Relation Networks pool their relation module adaptively)."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, h, w]; H and W are fixed by the preprocessing, only B varies."""
        height, width = int(x.shape[-2]), int(x.shape[-1])
        size = self.output_size if isinstance(self.output_size, (tuple, list)) else (self.output_size,) * 2
        out_h, out_w = (height if size[0] is None else size[0]), (width if size[1] is None else size[1])
        if height % out_h == 0 and width % out_w == 0:
            return F.max_pool2d(x, (height // out_h, width // out_w))
        rows = [torch.stack([x[..., _cell(i, height, out_h), _cell(j, width, out_w)].amax(dim=(-2, -1))
                             for j in range(out_w)], dim=-1) for i in range(out_h)]
        return torch.stack(rows, dim=-2)


def _cell(index: int, size: int, cells: int) -> slice:
    """The input rows (or columns) of adaptive pooling's output cell ``index`` (as PyTorch computes them)."""
    return slice(index * size // cells, -(-(index + 1) * size // cells))


def _onnx_ready(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.AdaptiveMaxPool2d`` replaced by :class:`_SlicedAdaptiveMaxPool2d` (in place:
    the module is the export's own copy)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.AdaptiveMaxPool2d):
            setattr(module, name, _SlicedAdaptiveMaxPool2d(child.output_size))
        else:
            _onnx_ready(child)
    return module


def _write_onnx(source: ExportSource, example: Tensor) -> bytes:
    _require_onnx()
    _no_tqdm_monitor()
    output = "probabilities" if source.kind == "classifier" else "features"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on decompositions and opset versions
        program = torch.onnx.export(_onnx_ready(source.module), (example,), None, dynamo=True, input_names=["images"],
                                    output_names=[output], dynamic_shapes=(_batch_dim(),), opset_version=ONNX_OPSET,
                                    verbose=False)
    model = program.model_proto
    for key, value in source.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _no_tqdm_monitor() -> None:
    """The ONNX exporter draws tqdm bars, and tqdm then keeps a monitor thread for the life of the process; a
    training process that finds another Python thread leaves its memory tuning off (training/host_memory.py)."""
    from tqdm import tqdm

    tqdm.monitor_interval = 0


def _run_onnx(path: Path) -> Callable[[Tensor], Tensor]:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise ExportError(f"{path}: onnxruntime cannot load the exported file ({_first_line(error)})") from None
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _write_pt2(source: ExportSource, example: Tensor) -> bytes:
    with torch.no_grad():
        program = torch.export.export(source.module, (example,), dynamic_shapes=(_batch_dim(),), strict=False)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files=source.metadata)
    return buffer.getvalue()


def _run_pt2(path: Path) -> Callable[[Tensor], Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "No complete tensor found in the group" (CPU weights)
        module = torch.export.load(str(path)).module()
    return _no_grad(module)


def _write_torchscript(source: ExportSource, example: Tensor) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated: the legacy format
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # BatchNorm's batch-size check (MAML)
        traced = torch.jit.trace(source.module, (example,), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files=source.metadata)
    return buffer.getvalue()


def _run_torchscript(path: Path) -> Callable[[Tensor], Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path))
    return _no_grad(module)


def _no_grad(module: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return module(x)
    return run


_WRITERS = {"onnx": (_write_onnx, _run_onnx), "pt2": (_write_pt2, _run_pt2),
            "torchscript": (_write_torchscript, _run_torchscript)}


def _require_onnx() -> None:
    missing = []
    for package in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: {ONNX_INSTALL_HINT}")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


# -- from files (meta-engine export) -----------------------------------------------------------------
def export_checkpoint(checkpoint: Path, out: Path, fmt: str, *, support: Path | None = None, device: str = "cpu",
                      steps: int | None = None) -> ExportReport:
    """Export a training checkpoint (its backbone, or adapted to ``support`` as a classifier) or a saved
    adapted classifier (``support`` ignored)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"--format: unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if is_adapted_file(checkpoint):
        source = classifier_source(load_adapted(checkpoint, device=device))
    elif support is None:
        algorithm, ckpt = load_algorithm(checkpoint, device=device)
        source = backbone_source(algorithm, ckpt.preprocessing)
    else:
        source = classifier_source(adapt_to_folder(checkpoint, support, device=device, steps=steps))
    return export_source(source, out, fmt)


def adapt_to_folder(checkpoint: Path, support: Path, *, device: str = "cpu",
                    steps: int | None = None) -> AdaptedClassifier:
    """The checkpoint's model adapted to ``support`` (one sub-folder of images per class)."""
    algorithm, ckpt = load_algorithm(checkpoint, device=device)
    images, labels, names = load_support_folder(support, ckpt)
    predictor = algorithm.adapt(images.to(algorithm.device), labels.to(algorithm.device), steps=steps)
    return AdaptedClassifier(path=None, algorithm=algorithm, checkpoint=ckpt, class_names=names,
                             support_images=images, support_labels=labels, predictor=predictor)


def load_support_folder(support: Path, checkpoint: Checkpoint) -> tuple[Tensor, Tensor, list[str]]:
    """([S, C, H, W] float32 normalised images, [S] labels, class names) of a folder with one sub-folder per
    class."""
    if not support.is_dir():
        raise DatasetError(f"{support}: support folder not found")
    index = scan_folder(support)
    if index.layout != "flat":
        raise DatasetError(f"{support}: the support folder must hold one sub-folder of images per class")
    images, labels, names = [], [], []
    for label, entry in enumerate(index.classes):
        decoded, _, _ = checkpoint.preprocessing.load_many(entry.files)
        if len(decoded) == 0:
            raise DatasetError(f"{support / entry.name}: no readable images for class {entry.name!r}")
        images.append(decoded)
        labels += [label] * len(decoded)
        names.append(entry.name)
    if len(names) < 2:
        raise DatasetError(f"{support}: need at least 2 class folders, found {len(names)}")
    return torch.cat(images), torch.tensor(labels, dtype=torch.int64), names


def format_from_suffix(path: Path | str) -> str | None:
    """The format a file name's suffix names (``.onnx``, ``.pt2``, ``.ts.pt``), None otherwise."""
    name = str(path).lower()
    return next((fmt for fmt, (_, suffix) in EXPORT_FORMATS.items() if name.endswith(suffix)), None)


__all__ = ["EXPORT_FORMATS", "PARITY_TOLERANCE", "ExportError", "ParityError", "ExportSource", "ExportReport",
           "classifier_source", "backbone_source", "export_source", "export_checkpoint", "adapt_to_folder",
           "load_support_folder", "format_from_suffix"]
