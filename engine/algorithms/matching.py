"""Matching Networks (Vinyals et al. 2016) without full-context embeddings.

attention(q, s_i) = softmax_i(scale * cos(f(q), f(s_i))); p(y=k | q) = sum_i attention_i * [y_i = k];
loss = NLL of log(p + 1e-8). ``scale`` is a learnable temperature (a scalar
parameter, initialised to 10 and kept positive through its logarithm): raw
cosines lie in [-1, 1], too flat for a softmax over a few support images.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    check_support, class_means, episodic_metric_step, eval_mode,
)
from engine.config import MatchingConfig
from engine.data.types import ClassBatch, Task

EPS = 1e-8
INITIAL_SCALE = 10.0


class Temperature(nn.Module):
    """A positive learnable scalar ``exp(log_scale)``."""

    def __init__(self, initial: float = INITIAL_SCALE) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(initial)))

    def forward(self) -> Tensor:
        return self.log_scale.exp()


def matching_probabilities(support: Tensor, support_y: Tensor, query: Tensor, n_classes: int,
                           scale: Tensor | float) -> Tensor:
    """[S, D] support, [S] labels, [Q, D] query features -> [Q, n] class probabilities."""
    cosine = F.normalize(query, dim=1) @ F.normalize(support, dim=1).t()          # [Q, S]
    attention = (scale * cosine).softmax(1)
    return attention @ F.one_hot(support_y, n_classes).to(attention.dtype)


def attention_nll(probabilities: Tensor, query_y: Tensor, n_classes: int) -> Tensor:
    """The training loss of [Q, n] attention probabilities for [Q] labels: NLL of log(p + 1e-8)."""
    return F.nll_loss(torch.log(probabilities + EPS), query_y)


class MatchingPredictor(Predictor):
    """Attention over the stored support embeddings (backbone in eval mode)."""

    def __init__(self, backbone: nn.Module, support: Tensor, support_y: Tensor, scale: float) -> None:
        self.backbone = backbone
        self.support = support
        self.support_y = support_y
        self.scale = float(scale)
        self.n_classes = int(support_y.max().item()) + 1

    def _features(self, x: Tensor) -> Tensor:
        with torch.no_grad(), eval_mode(self.backbone):
            return self.backbone(x.to(self.support.device))

    def embed(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D] backbone features."""
        return self._features(x).to(x.device)

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities (rows sum to 1)."""
        probabilities = matching_probabilities(self.support, self.support_y, self._features(query_x),
                                               self.n_classes, self.scale)
        return probabilities.to(query_x.device)

    def prototypes(self) -> Tensor:
        """[n, D] mean support embedding per class (for plots; the decision uses all support points)."""
        return class_means(self.support, self.support_y, self.n_classes)

    def state(self) -> dict[str, Any]:
        return {"support": self.support.detach().cpu(), "support_y": self.support_y.detach().cpu(),
                "scale": self.scale}


class MatchingNetworks(Algorithm):
    """Cosine-attention classifier; per-episode BatchNorm statistics (see ``embed_tasks``);
    Adam on backbone and temperature."""
    short_title = "Matching Nets"
    paper = "Vinyals et al. 2016, Matching Networks for One Shot Learning"
    recipe = {"algorithm.lr": 1e-3}
    one_pass_adaptation = True
    cacheable_features = True

    def __init__(self, config: MatchingConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        self.temperature = Temperature()
        params = list(self.backbone.parameters()) + list(self.temperature.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "temperature": self.temperature}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """Mean over tasks of the query NLL of log(attention probabilities + eps)."""
        scale = self.temperature()

        def probabilities(task: Task, support: Tensor, query: Tensor, n_way: int) -> Tensor:
            return matching_probabilities(support.float(), task.support_y, query.float(), n_way, scale)

        return episodic_metric_step(self, batch, title="Matching Networks train", optimizer=self.optimizer,
                                    scores=probabilities, loss=attention_nll)

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Embed the support set once (eval mode); no gradient steps."""
        check_support(support_x, support_y)
        with torch.no_grad(), eval_mode(self.backbone):
            support = self.backbone(support_x.to(self.device))
        if progress is not None:
            progress(1, 1)
        return MatchingPredictor(self.backbone, support, support_y.to(self.device),
                                 float(self.temperature().item()))

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return MatchingPredictor(self.backbone, state["support"].to(self.device),
                                 state["support_y"].to(self.device), float(state["scale"]))
