"""R2D2 (Bertinetto et al. 2019): a differentiable closed-form ridge-regression head on learned features.

Per episode, with X the [S, D] support features and Y their [S, n] one-hot labels, the head is the
ridge-regression solution in its Woodbury form (an S x S system: S, the support size, is far below D)

    W = X^T (X X^T + lambda I)^-1 Y                                                   [D, n]

and a query's logits are ``scale * x_q W + bias``. ``lambda``, ``scale`` and ``bias`` are learned
with the backbone by back-propagating the query cross-entropy through the solve (``lambda`` is kept
positive as ``exp(log_lambda)``). The bias is the paper's: one scalar added to every logit, so it
cancels in the softmax (its gradient is zero); it is kept so that the head is the paper's
``alpha X W + beta``. This is MetaOptNet's ridge-regression head; its SVM form needs a QP solver
and is not offered.

Kind "metric": adapting is one forward pass over the support set and a small linear solve, with no
gradient steps (one-pass, features cacheable), like the metric methods. Training embeds each
episode with its own BatchNorm statistics (as ProtoNet); adaptation uses the eval-mode backbone.
The solve runs in float32 also under mixed precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import check_support, episodic_metric_step, eval_mode, full_precision
from engine.config import AlgorithmConfig, param
from engine.data.types import ClassBatch, Task


@dataclass
class R2D2Config(AlgorithmConfig):
    name: ClassVar[str] = "r2d2"
    title: ClassVar[str] = "R2D2 (ridge regression)"
    summary: ClassVar[str] = ("Solves a ridge regression from the support features to the labels in closed form "
                              "and back-propagates through it. Bertinetto et al. 2019.")

    ridge_lambda: float = param(1.0, "Sets the starting value of the ridge penalty lambda (learned with the "
                                "network).", label="Ridge penalty (initial)", min=0.0, max=1e6, exclusive_min=True)
    scale: float = param(10.0, "Sets the starting value of the learned scale of the regression outputs (the "
                         "logits).", label="Output scale (initial)", min=0.0, max=1e6, exclusive_min=True)


def one_hot(labels: Tensor, n_classes: int, dtype: torch.dtype) -> Tensor:
    """[S] labels in 0..n-1 -> [S, n] one-hot rows of ``dtype``."""
    return (labels.unsqueeze(1) == torch.arange(n_classes, device=labels.device)).to(dtype)


def ridge_weights(support: Tensor, support_y: Tensor, n_classes: int, ridge: Tensor | float) -> Tensor:
    """W = X^T (X X^T + ridge I)^-1 Y for [S, D] features X and [S] labels: [D, n_classes] (differentiable)."""
    gram = support @ support.t()
    system = gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return support.t() @ torch.linalg.solve(system, one_hot(support_y, n_classes, support.dtype))


class RidgeHead(nn.Module):
    """The learned scalars of the head: ``log_lambda`` (the penalty's log), ``scale`` and ``bias``."""

    def __init__(self, ridge_lambda: float, scale: float) -> None:
        super().__init__()
        self.log_lambda = nn.Parameter(torch.tensor(math.log(ridge_lambda)))
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def fit(self, support: Tensor, support_y: Tensor, n_classes: int) -> Tensor:
        """The [D, n] ridge-regression weights of a support set."""
        return ridge_weights(support, support_y, n_classes, self.log_lambda.exp())

    def forward(self, query: Tensor, weights: Tensor) -> Tensor:
        """[Q, D] query features, [D, n] weights -> [Q, n] logits ``scale * x W + bias``."""
        return self.scale * (query @ weights) + self.bias


class RidgePredictor(Predictor):
    """softmax(scale * f(x) W + bias) with the backbone in eval mode."""

    def __init__(self, backbone: nn.Module, weights: Tensor, scale: float, bias: float) -> None:
        self.backbone = backbone
        self.weights = weights
        self.scale, self.bias = float(scale), float(bias)
        self.n_classes = int(weights.shape[1])

    def _features(self, x: Tensor) -> Tensor:
        with torch.no_grad(), eval_mode(self.backbone):
            return full_precision(self.backbone(x.to(self.weights.device)))

    def embed(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D] backbone features (eval mode), on x's device."""
        return self._features(x).to(x.device)

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities."""
        logits = self.scale * (self._features(query_x) @ self.weights) + self.bias
        return logits.softmax(1).to(query_x.device)

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights.detach().cpu(), "scale": self.scale, "bias": self.bias}


class R2D2(Algorithm):
    """Backbone + :class:`RidgeHead`; Adam on the mean query cross-entropy of a meta-batch."""
    short_title = "R2D2"
    kind = "metric"
    paper = "Bertinetto et al. 2019, Meta-learning with differentiable closed-form solvers"
    one_pass_adaptation = True
    cacheable_features = True
    recipe: ClassVar[dict[str, Any]] = {"algorithm.lr": 1e-3}

    def __init__(self, config: R2D2Config, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        self.config: R2D2Config = config
        self.head = RidgeHead(config.ridge_lambda, config.scale)
        self.optimizer = torch.optim.Adam([*self.backbone.parameters(), *self.head.parameters()], lr=config.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """Mean over tasks of the query cross-entropy of the ridge-regression logits."""
        return episodic_metric_step(self, batch, title="R2D2 trains", optimizer=self.optimizer,
                                    scores=self._task_logits)

    def _task_logits(self, task: Task, support: Tensor, query: Tensor, n_way: int) -> Tensor:
        weights = self.head.fit(full_precision(support), task.support_y, n_way)
        return self.head(full_precision(query), weights)

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """The closed-form head of the eval-mode support features (no gradient steps; ``steps`` is ignored)."""
        n_classes = check_support(support_x, support_y)
        with torch.no_grad(), eval_mode(self.backbone):
            features = full_precision(self.backbone(support_x.to(self.device)))
            weights = self.head.fit(features, support_y.to(self.device), n_classes)
        if progress is not None:
            progress(1, 1)
        return RidgePredictor(self.backbone, weights, float(self.head.scale.detach()),
                              float(self.head.bias.detach()))

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return RidgePredictor(self.backbone, state["weights"].to(self.device), state["scale"], state["bias"])
