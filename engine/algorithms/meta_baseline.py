"""Meta-Baseline (Chen et al. 2021): meta-train a cosine nearest-centroid classifier with a learned temperature.

Logits of a query with features ``z`` for class ``k`` with centroid ``c_k`` (the mean support
feature of the class, as in the authors' code: mean first, then normalised):

    logit_k = tau * cos(z, c_k)

with the temperature ``tau`` learned with the backbone (it starts at ``temperature``, 10 in the
paper) on the episodes' query cross-entropy. Adaptation is one forward pass over the support set
(eval-mode backbone): the centroids; prediction is ``softmax(tau * cos)``.

The paper's two stages: (1) Classifier-Baseline, a linear classifier over all training classes,
then (2) this meta-stage from the pre-trained backbone. A run trains on one kind of batch (the
trainer builds one sampler from the class's ``batch_kind``), so stage 1 is a run of its own: train
``baseline`` and start this algorithm from its backbone with ``model.weights_path`` (a state-dict
file of the backbone's weights, e.g. ``torch.save(algorithm.backbone.state_dict(), path)``). Without
starting weights the meta-stage trains from scratch (a cosine ProtoNet with a learned temperature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    check_support, class_means, episodic_metric_step, eval_mode, full_precision,
)
from engine.config import AlgorithmConfig, param
from engine.data.types import ClassBatch, Task


@dataclass
class MetaBaselineConfig(AlgorithmConfig):
    name: ClassVar[str] = "meta_baseline"
    title: ClassVar[str] = "Meta-Baseline"
    summary: ClassVar[str] = ("Meta-trains a cosine nearest-centroid classifier with a learned temperature, "
                              "best started from a Baseline's pre-trained network (Starting weights file). "
                              "Chen et al. 2021.")

    temperature: float = param(10.0, "Sets the starting value of the learned temperature that scales the cosine "
                               "similarities (the logits).", label="Temperature (initial)", min=0.0, max=1e4,
                               exclusive_min=True)


def cosine_centroid_logits(support: Tensor, support_y: Tensor, query: Tensor, n_classes: int,
                           temperature: Tensor | float) -> Tensor:
    """[S, D] support features, [S] labels, [Q, D] query features -> [Q, n] ``temperature * cos(query, centroid)``."""
    centroids = F.normalize(class_means(support, support_y, n_classes), dim=1)
    return temperature * (F.normalize(query, dim=1) @ centroids.t())


class Temperature(nn.Module):
    """The learned temperature ``tau`` (a scalar parameter ``value``)."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(initial)))


class CosineCentroidPredictor(Predictor):
    """softmax(tau * cos(f(x), c_k)) over the class centroids ``c_k`` (backbone in eval mode)."""

    def __init__(self, backbone: nn.Module, centroids: Tensor, temperature: float) -> None:
        self.backbone = backbone
        self._centroids = centroids
        self.temperature = float(temperature)
        self.n_classes = int(centroids.shape[0])

    def _features(self, x: Tensor) -> Tensor:
        with torch.no_grad(), eval_mode(self.backbone):
            return full_precision(self.backbone(x.to(self._centroids.device)))

    def embed(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D] backbone features (eval mode, no grad), on x's device."""
        return self._features(x).to(x.device)

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities."""
        cosines = F.normalize(self._features(query_x), dim=1) @ F.normalize(self._centroids, dim=1).t()
        return (self.temperature * cosines).softmax(1).to(query_x.device)

    def prototypes(self) -> Tensor:
        return self._centroids

    def state(self) -> dict[str, Any]:
        return {"centroids": self._centroids.detach().cpu(), "temperature": self.temperature}


class MetaBaseline(Algorithm):
    """Backbone + :class:`Temperature`; Adam on the mean query cross-entropy of the cosine-centroid logits."""
    short_title = "Meta-Baseline"
    kind = "metric"
    paper = "Chen et al. 2021, Meta-Baseline: Exploring Simple Meta-Learning for Few-Shot Learning"
    one_pass_adaptation = True
    cacheable_features = True
    recipe: ClassVar[dict[str, Any]] = {"algorithm.lr": 1e-3}

    def __init__(self, config: MetaBaselineConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        self.config: MetaBaselineConfig = config
        self.temperature = Temperature(config.temperature)
        self.optimizer = torch.optim.Adam([*self.backbone.parameters(), *self.temperature.parameters()],
                                          lr=config.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "temperature": self.temperature}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """Mean over tasks of the query cross-entropy of ``tau * cos(query, centroid)``."""
        return episodic_metric_step(self, batch, title="Meta-Baseline trains", optimizer=self.optimizer,
                                    scores=self._task_logits)

    def _task_logits(self, task: Task, support: Tensor, query: Tensor, n_way: int) -> Tensor:
        return cosine_centroid_logits(full_precision(support), task.support_y, full_precision(query), n_way,
                                      self.temperature.value)

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Centroids = mean eval-mode features per support class (no gradient steps; ``steps`` is ignored)."""
        n_classes = check_support(support_x, support_y)
        with torch.no_grad(), eval_mode(self.backbone):
            features = full_precision(self.backbone(support_x.to(self.device)))
        centroids = class_means(features, support_y.to(self.device), n_classes)
        if progress is not None:
            progress(1, 1)
        return CosineCentroidPredictor(self.backbone, centroids, float(self.temperature.value.detach()))

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return CosineCentroidPredictor(self.backbone, state["centroids"].to(self.device), state["temperature"])
