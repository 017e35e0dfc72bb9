"""The interface every few-shot algorithm implements; the whole app hangs on it.

Training: ``meta_train_step(batch)`` takes a list of :class:`~engine.data.types.Task`
(episodic algorithms, ``batch_kind == "episodes"``) or one
:class:`~engine.data.types.ClassBatch` (pre-training baselines,
``batch_kind == "classes"``) and returns float metrics (at least ``loss``,
``accuracy`` and ``lr``).

Adaptation: ``adapt(support_x, support_y)`` returns a :class:`Predictor` for the
new classes; ``Predictor.predict(query_x)`` gives class probabilities. The CLI's
``evaluate``/``predict``, the studio's evaluation view and its adaptation panel
all use exactly these two calls.

Runtime (one code path for every algorithm): the trainer calls
``configure_runtime(precision=..., channels_last=..., task_batching=...)`` after
moving the algorithm to its device. Algorithms then run their forward passes in
``with self.autocast():`` (mixed precision when asked), scale a loss with
``self.scale_loss`` before differentiating it, and finish a step with
``self.optimizer_step(optimizer)`` or ``self.backward_and_step(loss, optimizer)``:
these average gradients over torch.distributed ranks, unscale and skip
non-finite fp16 steps through a ``torch.amp.GradScaler`` (whose state is saved
in ``state_dict()["scaler"]``, so a resumed run continues exactly), and average
BatchNorm running statistics over ranks.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, ContextManager, Iterable, Iterator

import torch
from torch import Tensor, nn

from engine.config import AlgorithmConfig
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError
from engine.runtime import collective

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TASK_BATCHING = ("auto", "loop", "vmap")
FUSED_ADAM_DEVICES = ("cuda", "cpu")
"""Devices where Adam / AdamW run their fused kernel (one kernel for all parameters)."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` during a long adaptation (inner loop)."""


@contextlib.contextmanager
def swapped_backbone(algorithm: "Algorithm", backbone: nn.Module) -> Iterator[None]:
    """``algorithm`` embeds through ``backbone`` (same features: a cache, a folded copy) for the block;
    predictors made inside keep it. Its own backbone is back afterwards, also after an error."""
    original = algorithm.backbone
    algorithm.backbone = backbone
    try:
        yield
    finally:
        algorithm.backbone = original


def to_channels_last(images: Tensor) -> Tensor:
    """[B, C, H, W] images in channels-last memory format, unambiguously so also for C == 1.

    A one-channel batch is "contiguous" in both formats, and ``.contiguous(memory_format=
    torch.channels_last)`` leaves its NCHW strides alone; a convolution then produces NCHW
    output and the whole backbone runs in NCHW (for Conv-4 on the CPU the first max-pool
    alone is ~10x slower that way). With C == 1 the bytes of both layouts are identical, so
    the channels-last strides are set without a copy.
    """
    images = images.contiguous(memory_format=torch.channels_last)
    if images.shape[1] == 1 and images.stride(1) != 1:
        height, width = images.shape[2], images.shape[3]
        images = images.as_strided(images.shape, (height * width, 1, width, 1))
    return images


class Predictor(ABC):
    """A classifier for the ``n_classes`` classes of one support set."""

    n_classes: int

    @abstractmethod
    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] float -> [Q, n_classes] probabilities (rows sum to 1)."""

    def embed(self, x: Tensor) -> Tensor | None:
        """[B, C, H, W] -> [B, D] features used for the decision, or None if not meaningful."""
        return None

    def prototypes(self) -> Tensor | None:
        """[n_classes, D] class representatives in ``embed`` space, where they exist."""
        return None

    def state(self) -> dict[str, Any]:
        """Tensors and numbers that reproduce this predictor (for saving an adapted classifier)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")


class Algorithm(ABC):
    """A few-shot learner: a backbone plus how it is meta-trained and adapted.

    Args:
        config: the algorithm's hyperparameters.
        backbone: feature extractor, [B, C, H, W] -> [B, backbone.out_features].
        n_way: classes per training episode (heads of MAML/Reptile have this size).
        n_train_classes: number of training classes (heads of pre-training baselines).
    """

    # -- capabilities: declared here, asked by the trainer, the race and every view (no lists of names) --
    short_title: ClassVar[str] = ""
    """A compact display name for legends and tables ("ProtoNet"); empty: the config's ``title``."""
    batch_kind: ClassVar[str] = "episodes"
    """What ``meta_train_step`` takes: "episodes" (a list of Task) or "classes" (one ClassBatch)."""
    one_pass_adaptation: ClassVar[bool] = False
    """``adapt`` is one forward pass over the support set (no gradient steps): cheap enough to redo at
    once, in the GUI thread, whenever a support set changes."""
    cacheable_features: ClassVar[bool] = False
    """``adapt`` and ``predict`` see images only through the eval-mode backbone, one image at a time,
    so the features of an image can be cached and reused."""
    inner_loop: ClassVar[bool] = False
    """``adapt`` runs gradient steps that ``iter_adapt`` yields one by one (the inner-loop scrubber)."""
    meta_gradient_memory: ClassVar[bool] = False
    """Training differentiates through an inner loop, so the trainer checks a CUDA step's memory first
    (:func:`engine.training.memory.estimate_maml_memory`)."""
    transductive: ClassVar[bool] = False
    """``Predictor.predict`` uses the whole query batch at once (the predictions of one image depend on the
    others): evaluation feeds each episode's full query set in one call, and the views say "predictions
    depend on the whole test set". ``predict`` then needs at least two query images."""
    kind: ClassVar[str] = "metric"
    """The family the algorithm belongs to: "metric", "optimisation", "fine-tuning" or "transductive"
    (``meta-engine algorithms``, the About box, the leaderboard)."""
    paper: ClassVar[str] = ""
    """The reference, "Authors Year, Title" (``meta-engine algorithms``, the algorithm form)."""
    recipe: ClassVar[dict[str, Any]] = {}
    """The recommended recipe for the leaderboard: dotted config overrides (``{"algorithm.lr": 1e-3,
    "train.steps_scale": ...}``) applied on top of the leaderboard's common settings; empty: defaults."""

    @classmethod
    def display_title(cls, config: AlgorithmConfig | None = None) -> str:
        """``short_title``, else the config's title, else the class name."""
        return cls.short_title or (config.title if config is not None and config.title else cls.__name__)

    def __init__(self, config: AlgorithmConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        self.config = config
        self.backbone = backbone
        self.n_way = n_way
        self.n_train_classes = n_train_classes
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.channels_last = False
        self.task_batching = "auto"
        self.vmap_chunk = 0
        self.cuda_graphs = False
        self.scaler: torch.amp.GradScaler | None = None
        self._scaler_state: dict[str, Any] | None = None
        self.lr_scale = 1.0

    def set_lr_scale(self, scale: float) -> None:
        """Scale every outer learning rate to ``scale`` times its configured value (a schedule's
        factor); algorithms without an optimiser read ``self.lr_scale`` themselves."""
        self.lr_scale = float(scale)
        for optimizer in self.optimizers().values():
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * self.lr_scale

    # -- runtime: precision, memory format, distributed --------------------
    def configure_runtime(self, precision: str = "fp32", channels_last: bool = False,
                          task_batching: str = "auto", vmap_chunk: int = 0, cuda_graphs: bool = False) -> None:
        """Set how steps run on the current device (call after ``to(device)``).

        precision: "fp32", "bf16" or "fp16" (autocast; fp16 adds a GradScaler and
        needs a CUDA or MPS device). channels_last: convert conv weights and image
        batches to ``torch.channels_last``. task_batching: how MAML runs the tasks of
        a meta-batch ("auto", "loop", "vmap"), and vmap_chunk how many tasks one vmap call
        takes (0 = the whole meta-batch); both ignored by the other algorithms. cuda_graphs:
        algorithms that support it replay their step's forward and backward as CUDA graphs
        on CUDA devices (:mod:`engine.algorithms.graphs`); ignored elsewhere.
        Raises ConfigError naming the train field.
        """
        if precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
        if precision == "fp16" and self.device.type == "cpu":
            raise ConfigError("train.precision: fp16 needs a CUDA (or MPS) device; on the CPU use bf16 or fp32")
        if task_batching not in TASK_BATCHING:
            raise ConfigError(f"train.task_batching must be one of {', '.join(TASK_BATCHING)} (got {task_batching!r})")
        if int(vmap_chunk) < 0:
            raise ConfigError(f"train.vmap_chunk must be at least 0 (got {vmap_chunk})")
        self.precision, self.channels_last, self.task_batching = precision, bool(channels_last), task_batching
        self.vmap_chunk = int(vmap_chunk)
        self.cuda_graphs = bool(cuda_graphs)
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        if self.scaler is not None and self._scaler_state:
            self.scaler.load_state_dict(self._scaler_state)
        if self.channels_last:
            for module in self.modules().values():
                module.to(memory_format=torch.channels_last)
        self._use_fused_adam(self.device.type in FUSED_ADAM_DEVICES)

    def _use_fused_adam(self, fused: bool) -> None:
        """Adam / AdamW update all parameters in ONE fused kernel on CUDA and the CPU (the same update rule; a
        step of a small backbone is otherwise a dozen kernel launches on CUDA, and on the CPU the Conv-4's update
        took 0.49 ms looped against 0.14 ms fused, one thread). Set after a checkpoint's optimiser state is
        loaded, which carries the flag of the device it was saved on."""
        for optimizer in self.optimizers().values():
            if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
                continue
            for group in optimizer.param_groups:
                usable = fused and all(p.is_floating_point() and p.device.type in FUSED_ADAM_DEVICES
                                       for p in group["params"])
                group["fused"], group["foreach"] = (True, False) if usable else (None, None)

    @property
    def graphs_note(self) -> str | None:
        """How training steps use CUDA graphs (``train.cuda_graphs``), for the run log; None for algorithms
        that do not use them, and before the first recording."""
        return None

    def autocast(self, cache: bool = True) -> ContextManager[Any]:
        """Mixed-precision context for forward passes (a no-op in fp32). ``cache=False`` for code that
        is recorded into a CUDA graph (autocast's cast cache must not outlive the recording)."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=cache)

    @property
    def loss_scale(self) -> float:
        """The GradScaler's current scale (1.0 without fp16)."""
        if self.scaler is None:
            return 1.0
        self.scaler.scale(torch.ones((), device=self.device))  # creates the scale tensor on first use
        return float(self.scaler.get_scale())

    def scale_loss(self, loss: Tensor) -> Tensor:
        """``loss`` times the fp16 loss scale (unchanged otherwise), ready for backward."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Step on the (scaled) ``.grad`` of its parameters: average over ranks, unscale, skip if non-finite."""
        collective.all_reduce_gradients(p for group in optimizer.param_groups for p in group["params"])
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        self.sync_buffers()

    def backward_and_step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """zero_grad, backward of the (scaled) loss, then :meth:`optimizer_step`."""
        optimizer.zero_grad(set_to_none=True)
        self.scale_loss(loss).backward()
        self.optimizer_step(optimizer)

    def sync_buffers(self) -> None:
        """Average floating-point buffers (running statistics) over ranks; no-op in a single process."""
        collective.average_floating_buffers(self.modules().values())

    def average_over_ranks(self, tensors: Iterable[Tensor]) -> None:
        """In place: each tensor becomes its mean over ranks (e.g. Reptile's weight deltas)."""
        collective.average_tensors_(list(tensors))

    def prepare_batch(self, batch: list[Task] | ClassBatch) -> list[Task] | ClassBatch:
        """Images and labels on the algorithm's device (pinned, non-blocking copies from the CPU to
        CUDA), images in channels-last format when configured."""
        if isinstance(batch, ClassBatch):
            return ClassBatch(self._images_to_device(batch.x), self._to_device(batch.y))
        return [Task(self._images_to_device(t.support_x), self._to_device(t.support_y),
                     self._images_to_device(t.query_x), self._to_device(t.query_y),
                     t.class_ids, t.support_index, t.query_index) for t in batch]

    def _to_device(self, tensor: Tensor) -> Tensor:
        if tensor.device == self.device:
            return tensor
        if self.device.type == "cuda" and tensor.device.type == "cpu":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def _images_to_device(self, images: Tensor) -> Tensor:
        images = self._to_device(images)
        if self.channels_last and images.ndim == 4:
            images = to_channels_last(images)
        return images

    # -- training ---------------------------------------------------------
    @abstractmethod
    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """One optimisation step; returns metrics with at least loss, accuracy, lr."""

    # -- adaptation -------------------------------------------------------
    @abstractmethod
    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Fit a predictor to a support set.

        support_x: [S, C, H, W] float; support_y: [S] int64 in 0..n-1, every class present.
        steps: inner-loop steps for gradient-based methods (None = the configured test steps).
        """

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        """Rebuild a predictor saved with ``Predictor.state()``."""
        raise NotImplementedError(f"{type(self).__name__} cannot load saved predictors")

    # -- bookkeeping ------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """The trainable modules by name (backbone, heads); used for device moves and checkpoints."""
        return {"backbone": self.backbone}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name, saved in checkpoints so a resumed run continues exactly."""
        return {}

    def to(self, device: torch.device | str) -> "Algorithm":
        self.device = torch.device(device)
        for module in self.modules().values():
            module.to(self.device)
        for optimizer in self.optimizers().values():
            for state in optimizer.state.values():
                for key, value in state.items():
                    if isinstance(value, Tensor):
                        state[key] = value.to(self.device)
        return self

    def train(self, mode: bool = True) -> None:
        """Train (or eval) mode for every submodule. Called every step: flips only the flags that differ
        (``nn.Module.train`` sets every submodule's flag through ``__setattr__``, about 0.2 ms for Conv-4)."""
        modules = tuple(self.modules().values())
        if getattr(self, "_submodules_of", None) != tuple(map(id, modules)):
            self._submodules_of = tuple(map(id, modules))
            self._submodules = [submodule for module in modules for submodule in module.modules()]
        for submodule in self._submodules:
            if submodule.training != mode:
                submodule.training = mode

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser state and (fp16) loss-scaler state: tensors and plain values only."""
        state = {
            "modules": {name: m.state_dict() for name, m in self.modules().items()},
            "optimizers": {name: o.state_dict() for name, o in self.optimizers().items()},
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], *, with_optimizers: bool = True) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state["modules"][name])
        if with_optimizers:
            for name, optimizer in self.optimizers().items():
                if name in state.get("optimizers", {}):
                    optimizer.load_state_dict(state["optimizers"][name])
            self._scaler_state = state.get("scaler") or None
            if self.scaler is not None and self._scaler_state:
                self.scaler.load_state_dict(self._scaler_state)
