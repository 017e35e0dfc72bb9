"""Prototypical Networks (Snell et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    check_support, class_means, embed_tasks, episode_losses, episode_ways, eval_mode, mean_of, squared_euclidean,
    step_metrics, training_episodes,
)
from engine.algorithms.graphs import GraphedLoss, cuda_graphs_usable
from engine.config import ProtoNetConfig
from engine.data.types import ClassBatch, Task


def prototype_logits(support: Tensor, support_y: Tensor, query: Tensor, n_classes: int) -> Tensor:
    """[S, D] support features, [S] labels, [Q, D] query features -> [Q, n] logits = -squared distance."""
    return -squared_euclidean(query, class_means(support, support_y, n_classes))


def _task_logits(task: Task, support: Tensor, query: Tensor, n_way: int) -> Tensor:
    """:func:`prototype_logits` of one episode, in float32 also under mixed precision."""
    return prototype_logits(support.float(), task.support_y, query.float(), n_way)


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
    short_title = "ProtoNet"
    paper = "Snell et al. 2017, Prototypical Networks for Few-shot Learning"
    recipe = {"algorithm.lr": 1e-3, "train.lr_schedule": "step", "train.lr_decay_every": 2000,
              "train.lr_decay_factor": 0.5}  # Adam 1e-3 halved every 2000 episodes, as in the paper
    one_pass_adaptation = True
    cacheable_features = True

    def __init__(self, config: ProtoNetConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        self.optimizer = torch.optim.Adam(self.backbone.parameters(), lr=config.lr)
        self._graphed: GraphedLoss | None = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """Mean over tasks of the query cross-entropy of -squared distances to prototypes."""
        tasks = training_episodes(self, batch, "ProtoNet trains")
        ways = tuple(episode_ways(task) for task in tasks)
        outputs = self._graphed_loss(tasks, ways) if cuda_graphs_usable(self.cuda_graphs, self.device) else None
        loss, accuracy = outputs if outputs is not None else self._episode_loss(ways, tasks)
        self.backward_and_step(loss, self.optimizer)
        return step_metrics(loss, [accuracy], self.optimizer.param_groups[0]["lr"])

    def _episode_loss(self, ways: tuple[int, ...], tasks: list[Task], *, cache: bool = True) -> tuple[Tensor, Tensor]:
        """(mean query cross-entropy, mean query accuracy) over the tasks, both 0-d tensors; ``ways``
        gives each task's number of classes. No host synchronisation (it is recorded as a CUDA graph)."""
        with self.autocast(cache):
            embedded = embed_tasks(self.backbone, tasks)
        loss, accuracies = episode_losses(tasks, embedded, ways, _task_logits)
        return loss, mean_of(accuracies)

    def _graphed_loss(self, tasks: list[Task], ways: tuple[int, ...]) -> tuple[Tensor, ...] | None:
        """:meth:`_episode_loss` replayed as CUDA graphs, or None when this step runs eagerly."""
        if self._graphed is None:
            self._graphed = GraphedLoss(self.backbone, self._graphed_episode_loss)
        inputs = [x for task in tasks for x in (task.support_x, task.support_y, task.query_x, task.query_y)]
        return self._graphed(inputs, (ways, self.precision, self.backbone.training))

    def _graphed_episode_loss(self, context: tuple[Any, ...], *inputs: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`_episode_loss` on tasks given as flat (support_x, support_y, query_x, query_y) groups."""
        tasks = [Task(*inputs[i:i + 4]) for i in range(0, len(inputs), 4)]
        return self._episode_loss(context[0], tasks, cache=False)

    @property
    def graphs_note(self) -> str | None:
        return self._graphed.note if self._graphed is not None else None

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
