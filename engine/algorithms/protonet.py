"""Prototypical Networks (Snell et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    check_support, class_means, correct_fraction, embed_tasks, eval_mode, squared_euclidean, step_metrics,
)
from engine.config import ProtoNetConfig
from engine.data.types import ClassBatch, Task


def prototype_logits(support: Tensor, support_y: Tensor, query: Tensor, n_classes: int) -> Tensor:
    """[S, D] support features, [S] labels, [Q, D] query features -> [Q, n] logits = -squared distance."""
    return -squared_euclidean(query, class_means(support, support_y, n_classes))


class PrototypePredictor(Predictor):
    """softmax(-||f(x) - c_k||^2) over the class prototypes ``c_k`` (backbone in eval mode)."""

    def __init__(self, backbone: nn.Module, prototypes: Tensor) -> None:
        self.backbone = backbone
        self._prototypes = prototypes
        self.n_classes = int(prototypes.shape[0])

    def _features(self, x: Tensor) -> Tensor:
        with torch.no_grad(), eval_mode(self.backbone):
            return self.backbone(x.to(self._prototypes.device))

    def embed(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D] backbone features (eval mode, no grad), on x's device."""
        return self._features(x).to(x.device)

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities."""
        distances = squared_euclidean(self._features(query_x), self._prototypes)
        return (-distances).softmax(1).to(query_x.device)

    def prototypes(self) -> Tensor:
        return self._prototypes

    def state(self) -> dict[str, Any]:
        return {"prototypes": self._prototypes.detach().cpu()}


class ProtoNet(Algorithm):
    """Per-episode BatchNorm statistics (one forward per episode on the CPU, one grouped forward on GPUs); Adam
    on the mean loss.

    Distances and the loss are computed in float32 also under mixed precision.
    """

    def __init__(self, config: ProtoNetConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        self.optimizer = torch.optim.Adam(self.backbone.parameters(), lr=config.lr)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """Mean over tasks of the query cross-entropy of -squared distances to prototypes."""
        if isinstance(batch, ClassBatch):
            raise TypeError("ProtoNet trains on episodes (a list of Task), not on a ClassBatch")
        tasks = self.prepare_batch(batch)
        self.train(True)
        losses, accuracies = [], []
        with self.autocast():
            embedded = embed_tasks(self.backbone, tasks)
        for task, (support, query) in zip(tasks, embedded):
            logits = prototype_logits(support.float(), task.support_y, query.float(), task.n_way)
            losses.append(F.cross_entropy(logits, task.query_y))
            accuracies.append(correct_fraction(logits.detach(), task.query_y))
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        self.backward_and_step(loss, self.optimizer)
        return step_metrics(loss, accuracies, self.optimizer.param_groups[0]["lr"])

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Prototypes = mean eval-mode embedding per support class (no gradient steps)."""
        n_classes = check_support(support_x, support_y)
        with torch.no_grad(), eval_mode(self.backbone):
            features = self.backbone(support_x.to(self.device))
        prototypes = class_means(features, support_y.to(self.device), n_classes)
        if progress is not None:
            progress(1, 1)
        return PrototypePredictor(self.backbone, prototypes)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return PrototypePredictor(self.backbone, state["prototypes"].to(self.device))
