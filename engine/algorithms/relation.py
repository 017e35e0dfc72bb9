"""Relation Networks (Sung et al. 2018), as in easyfsl 1.5.0's ``RelationNetworks``.

The backbone gives feature MAPS ([C, h, w], ``backbone.feature_map``: Conv-4 before flattening,
ResNet-12 before global pooling; the algorithm embeds through :class:`FeatureMaps`, so the adapt
session's feature cache stores maps). A class prototype is the mean support map of the class; the
relation module scores each (prototype, query) pair from their concatenation along channels
(prototype first) with easyfsl's ``default_relation_module``: conv3x3(2C->C, pad 1), BN, ReLU,
adaptive max-pool to 5x5, conv3x3(C->C), BN, ReLU, adaptive max-pool to 1x1, Linear(C, hidden),
ReLU, Linear(hidden, 1), sigmoid. The state-dict keys are easyfsl's, so weights copy across.

Loss (``algorithm.loss``): "mse" (default) is the paper's and the original code's choice, which
easyfsl's docstring states: the mean squared error between the [Q, n] relation scores and the
one-hot labels. easyfsl ships no trainer of its own; its episodic-training notebook applies
``nn.CrossEntropyLoss`` to whatever the classifier outputs, which is "cross_entropy" here
(cross-entropy with the relation scores as logits). Probabilities: the relation scores
normalised to sum to 1 with "mse" (what that loss trains: scores near 1 for the right class,
near 0 elsewhere), ``softmax(scores)`` with "cross_entropy" (what that loss trains).

Deliberate differences from easyfsl, none of which changes a number beyond float round-off:
- the first convolution is linear in the concatenated pair, so it runs on the n prototypes and
  the Q queries separately (its weight split in two) and the results are added per pair:
  n + Q convolutions instead of n * Q;
- the relation module's BatchNorm layers (momentum 1, as in easyfsl and the original code) are
  :class:`~engine.models.batchnorm.EpisodeBatchNorm2d`: with several episodes in a step their
  running statistics become the mean of the episodes' statistics (easyfsl sees one episode at
  a time; with one episode per step the two are identical);
- the backbone's BatchNorm takes each episode's support and query images as one batch (one
  forward per episode), where easyfsl forwards the support and the query set separately.
At 28 px the Conv-4 map is 1x1 (the paper's Omniglot encoder pools only twice, 7x7): the
adaptive pooling of the relation module makes any map size work, as in easyfsl.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    check_support, class_means, episodic_metric_step, eval_mode,
)
from engine.config import AlgorithmConfig, param
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError
from engine.models.batchnorm import EpisodeBatchNorm2d, episode_statistics

LOSSES = ("mse", "cross_entropy")
MIN_SCORE = 1e-30
"""Relation scores are clamped at this before normalising (a sigmoid can underflow to 0)."""


@dataclass
class RelationConfig(AlgorithmConfig):
    name: ClassVar[str] = "relation"
    title: ClassVar[str] = "Relation Networks"
    summary: ClassVar[str] = ("Scores each pair of a query's feature map and a class's mean map with a small "
                              "learned network (the relation module). Sung et al. 2018.")

    hidden_units: int = param(8, "Sets the width of the relation module's hidden linear layer.",
                              label="Relation module width", min=1, max=4096)
    loss: str = param("mse", "Chooses the training loss on the relation scores: 'mse' against one-hot labels (the "
                      "paper's) or 'cross_entropy' with the scores as logits.", label="Loss", choices=LOSSES)


class FeatureMaps(nn.Module):
    """A view of a backbone that outputs its feature maps: [B, C, H, W] -> [B, map_channels, s, s].

    It is the algorithm's ``backbone`` (what the trainer, the adapt session's feature cache and the tests'
    wrappers see and may wrap); the network itself, saved as "backbone", is its ``backbone`` attribute.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone.feature_map(x)


def map_channels(backbone: nn.Module) -> int:
    """The channels of ``backbone``'s feature maps; ConfigError naming model.backbone if it has none."""
    channels = getattr(backbone, "map_channels", None)
    if not callable(getattr(backbone, "feature_map", None)) or not isinstance(channels, int):
        raise ConfigError(f"model.backbone: Relation Networks compare feature maps, which the "
                          f"{type(backbone).__name__} backbone does not give; choose conv4 or resnet12")
    return channels


def class_mean_maps(maps: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """[S, C, h, w] maps, [S] labels -> [n, C, h, w] mean map per class."""
    return class_means(maps.flatten(1), labels, n_classes).view(n_classes, *maps.shape[1:])


def _relation_block(in_channels: int, channels: int, padding: int, pooled: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, channels, kernel_size=3, padding=padding),
                         EpisodeBatchNorm2d(channels, momentum=1.0), nn.ReLU(), nn.AdaptiveMaxPool2d(pooled))


class RelationModule(nn.Sequential):
    """easyfsl's ``default_relation_module(channels, hidden_units)`` (same layers, same state-dict keys);
    :meth:`scores` evaluates it on every (prototype, query) pair."""

    def __init__(self, channels: int, hidden_units: int = 8) -> None:
        super().__init__(_relation_block(2 * channels, channels, 1, 5), _relation_block(channels, channels, 0, 1),
                         nn.Flatten(), nn.Linear(channels, hidden_units), nn.ReLU(), nn.Linear(hidden_units, 1),
                         nn.Sigmoid())
        self.channels = channels

    def scores(self, prototypes: Tensor, queries: Tensor) -> Tensor:
        """[n, C, h, w] prototypes, [Q, C, h, w] queries -> [Q, n] relation scores in (0, 1).

        The first convolution of the concatenation (prototype, query) is the sum of a convolution of
        the prototype with the first C input channels of the weight and one of the query with the rest.
        """
        first = self[0][0]
        weight = first.weight
        on_prototypes = F.conv2d(prototypes, weight[:, :self.channels], None, padding=first.padding)
        on_queries = F.conv2d(queries, weight[:, self.channels:], first.bias, padding=first.padding)
        pairs = (on_queries.unsqueeze(1) + on_prototypes.unsqueeze(0)).flatten(0, 1)    # [Q * n, C, h, w]
        for layer in [*list(self[0])[1:], *list(self)[1:]]:   # (slicing a Sequential subclass rebuilds it)
            pairs = layer(pairs)
        return pairs.view(queries.shape[0], prototypes.shape[0])


def relation_probabilities(scores: Tensor, loss: str) -> Tensor:
    """[Q, n] relation scores -> [Q, n] probabilities: normalised scores ("mse") or their softmax."""
    if loss == "cross_entropy":
        return scores.softmax(1)
    scores = scores.clamp_min(MIN_SCORE)
    return scores / scores.sum(1, keepdim=True)


def relation_loss(scores: Tensor, labels: Tensor, n_classes: int, loss: str) -> Tensor:
    """The training loss of [Q, n] relation scores for [Q] labels."""
    if loss == "cross_entropy":
        return F.cross_entropy(scores, labels)
    classes = torch.arange(n_classes, device=labels.device)
    return F.mse_loss(scores, (labels.unsqueeze(1) == classes).to(scores.dtype))


class RelationPredictor(Predictor):
    """Relation scores of a query's map to each class's mean support map (eval mode)."""

    def __init__(self, backbone: nn.Module, relation: RelationModule, prototypes: Tensor, loss: str) -> None:
        self.backbone = backbone
        self.relation = relation
        self._prototypes = prototypes
        self.loss = loss
        self.n_classes = int(prototypes.shape[0])

    def _maps(self, x: Tensor) -> Tensor:
        with torch.no_grad(), eval_mode(self.backbone):
            return self.backbone(x.to(self._prototypes.device))

    def scores(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] relation scores in (0, 1)."""
        maps = self._maps(query_x)
        with torch.no_grad(), eval_mode(self.relation):
            return self.relation.scores(self._prototypes.to(maps.dtype), maps).float()

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities (rows sum to 1)."""
        return relation_probabilities(self.scores(query_x), self.loss).to(query_x.device)

    def embed(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C * h * w] flattened feature maps."""
        return self._maps(x).flatten(1).to(x.device)

    def prototypes(self) -> Tensor:
        """[n, C * h * w] flattened mean support maps (the relation module compares these)."""
        return self._prototypes.flatten(1)

    def state(self) -> dict[str, Any]:
        return {"prototypes": self._prototypes.detach().cpu(), "loss": self.loss}


class RelationNetworks(Algorithm):
    """Backbone and relation module trained together with Adam on the episodes' mean loss."""
    short_title = "RelationNet"
    kind = "metric"
    paper = "Sung et al. 2018, Learning to Compare: Relation Network for Few-Shot Learning"
    one_pass_adaptation = True
    cacheable_features = True
    recipe = {"algorithm.lr": 1e-3}

    def __init__(self, config: RelationConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        if config.loss not in LOSSES:
            raise ConfigError(f"algorithm.loss must be one of {', '.join(LOSSES)} (got {config.loss!r})")
        self.relation = RelationModule(map_channels(backbone), config.hidden_units)
        self.encoder = backbone
        self.backbone = FeatureMaps(backbone)
        params = list(self.encoder.parameters()) + list(self.relation.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.encoder, "relation": self.relation}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """Mean over tasks of the loss of the query relation scores."""
        return episodic_metric_step(self, batch, title="Relation Networks train", optimizer=self.optimizer,
                                    scores=self._task_scores, loss=self._task_loss, scoring=self._scoring)

    @contextlib.contextmanager
    def _scoring(self) -> Iterator[None]:
        """The relation module runs under autocast, with one running-statistics update for the meta-batch."""
        with self.autocast(), episode_statistics(self.relation):
            yield

    def _task_scores(self, task: Task, support: Tensor, query: Tensor, n_way: int) -> Tensor:
        return self.relation.scores(class_mean_maps(support, task.support_y, n_way), query).float()

    def _task_loss(self, scores: Tensor, query_y: Tensor, n_way: int) -> Tensor:
        return relation_loss(scores, query_y, n_way, self.config.loss)

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Prototypes = mean eval-mode feature map per support class (no gradient steps)."""
        n_classes = check_support(support_x, support_y)
        with torch.no_grad(), eval_mode(self.backbone):
            maps = self.backbone(support_x.to(self.device))
        if progress is not None:
            progress(1, 1)
        return RelationPredictor(self.backbone, self.relation,
                                 class_mean_maps(maps, support_y.to(self.device), n_classes), self.config.loss)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return RelationPredictor(self.backbone, self.relation, state["prototypes"].to(self.device),
                                 str(state.get("loss", self.config.loss)))

    def load_state_dict(self, state: dict[str, Any], *, with_optimizers: bool = True) -> None:
        """As :meth:`Algorithm.load_state_dict`, first refusing a relation module built for other feature
        maps (ValueError naming the channels and the model fields that set them)."""
        weight = state.get("modules", {}).get("relation", {}).get("0.0.weight")
        if isinstance(weight, Tensor) and weight.ndim == 4 and weight.shape[1] != 2 * self.relation.channels:
            raise ValueError(f"the relation module was trained on feature maps of {weight.shape[1] // 2} channels, "
                             f"but this backbone (model.backbone, model.hidden_channels) gives "
                             f"{self.relation.channels}")
        super().load_state_dict(state, with_optimizers=with_optimizers)
