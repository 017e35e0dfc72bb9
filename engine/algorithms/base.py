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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from engine.config import AlgorithmConfig
from engine.data.types import ClassBatch, Task

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` during a long adaptation (inner loop)."""


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

    batch_kind: ClassVar[str] = "episodes"

    def __init__(self, config: AlgorithmConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        self.config = config
        self.backbone = backbone
        self.n_way = n_way
        self.n_train_classes = n_train_classes
        self.device = torch.device("cpu")

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
        for module in self.modules().values():
            module.train(mode)

    def state_dict(self) -> dict[str, Any]:
        """Weights and optimiser state (tensors and plain values only: loads with weights_only)."""
        return {
            "modules": {name: m.state_dict() for name, m in self.modules().items()},
            "optimizers": {name: o.state_dict() for name, o in self.optimizers().items()},
        }

    def load_state_dict(self, state: dict[str, Any], *, with_optimizers: bool = True) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state["modules"][name])
        if with_optimizers:
            for name, optimizer in self.optimizers().items():
                if name in state.get("optimizers", {}):
                    optimizer.load_state_dict(state["optimizers"][name])
