"""FEAT (Ye et al. 2020): prototypes adapted to the task by a set-to-set function, as in easyfsl 1.5.0.

The set-to-set function is easyfsl's (and the authors') one-head ``MultiHeadAttention(1, D, D, D)``
applied to the n class prototypes: ``out = LayerNorm(dropout(fc(dropout(softmax(q k^T / sqrt(D))) v))
+ p)`` with ``q, k, v`` linear maps of the prototypes ``p``. Same initialisation, same state-dict keys
(``w_qs``, ``w_ks``, ``w_vs``, ``fc``, ``layer_norm``), so weights copy across. Queries are classified
by their distance to the adapted prototypes and trained with cross-entropy, backbone and attention
together with Adam.

Deliberate differences from easyfsl:
- logits are ``-||q - c||^2 / temperature`` (squared Euclidean distance over a temperature, as in the
  paper and the authors' code, and as our ProtoNet), where easyfsl's ``FEAT`` (a ProtoNet subclass)
  gives ``-||q - c||``: our probabilities are ``softmax(-(easyfsl logits)^2 / temperature)``;
- the paper's auxiliary contrastive term (the "balance"-weighted loss on all instances) is left out:
  easyfsl has no training code for it either;
- the backbone's BatchNorm takes each episode's support and query images as one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    check_support, class_means, episodic_metric_step, eval_mode, squared_euclidean,
)
from engine.algorithms.protonet import PrototypePredictor
from engine.config import AlgorithmConfig, param
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError


@dataclass
class FEATConfig(AlgorithmConfig):
    name: ClassVar[str] = "feat"
    title: ClassVar[str] = "FEAT"
    summary: ClassVar[str] = ("Adapts the class prototypes to each task with self-attention over the whole set "
                              "of prototypes, then classifies by distance as ProtoNet. Ye et al. 2020.")

    temperature: float = param(1.0, "Divides the squared distances before the softmax: higher values give "
                               "softer probabilities.", label="Distance temperature", min=0.0, max=1e4,
                               exclusive_min=True)
    dropout: float = param(0.1, "Sets the dropout of the attention weights and of its output during training.",
                           label="Attention dropout", min=0.0, max=0.9)


class SetAttention(nn.Module):
    """One-head self-attention over a set of D-dimensional vectors with a residual and LayerNorm:
    [n, D] -> [n, D]. easyfsl's ``MultiHeadAttention(1, D, D, D, dropout)`` on a batch of one set."""

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.w_qs = nn.Linear(dim, dim, bias=False)
        self.w_ks = nn.Linear(dim, dim, bias=False)
        self.w_vs = nn.Linear(dim, dim, bias=False)
        for linear in (self.w_qs, self.w_ks, self.w_vs):
            nn.init.normal_(linear.weight, mean=0.0, std=math.sqrt(2.0 / (dim + dim)))
        self.layer_norm = nn.LayerNorm(dim)   # before fc: easyfsl's parameter order (and draws from the RNG)
        self.fc = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.fc.weight)
        self.attention_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.dim = dim

    def forward(self, items: Tensor) -> Tensor:
        """[n, D] -> [n, D]."""
        attention = (self.w_qs(items) @ self.w_ks(items).t() / math.sqrt(self.dim)).softmax(1)
        mixed = self.fc(self.attention_dropout(attention) @ self.w_vs(items))
        return self.layer_norm(self.dropout(mixed) + items)


def feat_logits(query: Tensor, adapted: Tensor, temperature: float) -> Tensor:
    """[Q, D] query features, [n, D] adapted prototypes -> [Q, n] logits."""
    return -squared_euclidean(query, adapted) / temperature


class FEATPredictor(PrototypePredictor):
    """softmax(-||f(x) - c_k||^2 / temperature) over the adapted prototypes ``c_k``."""

    def __init__(self, backbone: nn.Module, prototypes: Tensor, temperature: float) -> None:
        super().__init__(backbone, prototypes)
        self.temperature = float(temperature)

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities."""
        logits = feat_logits(self._features(query_x), self._prototypes, self.temperature)
        return logits.softmax(1).to(query_x.device)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "temperature": self.temperature}


class FEAT(Algorithm):
    """Backbone and set-to-set attention trained together with Adam on the episodes' mean cross-entropy.
    Distances and the loss are computed in float32 also under mixed precision."""
    short_title = "FEAT"
    kind = "metric"
    paper = "Ye et al. 2020, Few-Shot Learning via Embedding Adaptation with Set-to-Set Functions"
    one_pass_adaptation = True
    cacheable_features = True
    recipe = {"algorithm.lr": 1e-3}

    def __init__(self, config: FEATConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        dim = getattr(backbone, "out_features", None)
        if not isinstance(dim, int):
            raise ConfigError(f"model.backbone: FEAT needs a backbone with a feature size (out_features); "
                              f"{type(backbone).__name__} has none")
        self.attention = SetAttention(dim, config.dropout)
        params = list(self.backbone.parameters()) + list(self.attention.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "attention": self.attention}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """Mean over tasks of the query cross-entropy of the distances to the adapted prototypes."""
        return episodic_metric_step(self, batch, title="FEAT trains", optimizer=self.optimizer,
                                    scores=self._task_logits)

    def _task_logits(self, task: Task, support: Tensor, query: Tensor, n_way: int) -> Tensor:
        adapted = self.attention(class_means(support.float(), task.support_y, n_way))
        return feat_logits(query.float(), adapted, self.config.temperature)

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Prototypes = mean eval-mode embedding per class, adapted by the attention (no gradient steps)."""
        n_classes = check_support(support_x, support_y)
        with torch.no_grad(), eval_mode(self.backbone, self.attention):
            features = self.backbone(support_x.to(self.device)).float()
            adapted = self.attention(class_means(features, support_y.to(self.device), n_classes))
        if progress is not None:
            progress(1, 1)
        return FEATPredictor(self.backbone, adapted, self.config.temperature)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return FEATPredictor(self.backbone, state["prototypes"].to(self.device),
                             float(state.get("temperature", self.config.temperature)))

    def load_state_dict(self, state: dict[str, Any], *, with_optimizers: bool = True) -> None:
        """As :meth:`Algorithm.load_state_dict`, first refusing an attention module built for another
        feature size (ValueError naming the sizes and the model fields that set them)."""
        weight = state.get("modules", {}).get("attention", {}).get("w_qs.weight")
        if isinstance(weight, Tensor) and weight.ndim == 2 and weight.shape[1] != self.attention.dim:
            raise ValueError(f"the attention module was trained on features of size {weight.shape[1]}, but this "
                             f"backbone (model.backbone, model.hidden_channels, data.image_size) gives "
                             f"{self.attention.dim}")
        super().load_state_dict(state, with_optimizers=with_optimizers)
