"""P>M>F (Hu et al. 2022): a Pre-trained backbone, Meta-trained as a ProtoNet, Fine-tuned on each support set.

P: the backbone starts from pre-trained weights (``model.backbone`` a torchvision network with
``model.weights_path`` "torchvision", or a weights file). M: meta-training is ProtoNet's
(``meta_train`` off keeps the pre-trained features frozen: the training steps then only check the
episodes, so a run's checkpoint is the pre-trained network as it is). F: at test and adaptation
time a copy of the backbone takes ``finetune_steps`` SGD steps (momentum 0.9) on the ProtoNet loss of
the support set against its horizontally flipped copy (P>M>F's pseudo-query from augmented support
images), BatchNorm statistics kept; the prototypes are then the fine-tuned copy's support means.
With ``finetune_steps`` 0 the adaptation is ProtoNet's, one pass, and the Adapt view caches features.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Predictor, ProgressCallback
from engine.algorithms.functional import check_support, class_means, episode_ways, eval_mode
from engine.algorithms.protonet import PrototypePredictor, ProtoNet, prototype_logits
from engine.config import AlgorithmConfig, param
from engine.data.types import ClassBatch, Task


@dataclass
class PMFConfig(AlgorithmConfig):
    name: ClassVar[str] = "pmf"
    title: ClassVar[str] = "P>M>F (pre-train, meta-train, fine-tune)"
    summary: ClassVar[str] = ("Starts from a pre-trained backbone, meta-trains it as a ProtoNet, and fine-tunes "
                              "a copy on each support set before classifying by prototypes. Hu et al. 2022.")

    lr: float = param(1e-5, "Sets the meta-training learning rate of Adam (small: the backbone is pre-trained).",
                      label="Learning rate", min=0.0, max=10.0, exclusive_min=True, basic=True)
    meta_train: bool = param(True, "Meta-trains the backbone with ProtoNet episodes; off keeps the pre-trained "
                             "features frozen.", label="Meta-train the backbone", basic=True)
    finetune_steps: int = param(20, "Sets the SGD steps that fine-tune the backbone on the support set at test "
                                "time (0: plain prototypes, features cached).", label="Fine-tuning steps",
                                min=0, max=1000, basic=True)
    finetune_lr: float = param(1e-3, "Sets the learning rate of the test-time fine-tuning (SGD, momentum 0.9).",
                               label="Fine-tuning learning rate", min=0.0, max=10.0, exclusive_min=True)


class FinetunedPrototypePredictor(PrototypePredictor):
    """Prototypes of a fine-tuned backbone copy; its weights are part of the saved state."""

    def state(self) -> dict[str, Any]:
        weights = {key: value.detach().cpu() for key, value in self.backbone.state_dict().items()}
        return {"prototypes": self._prototypes.detach().cpu(), "backbone": weights}


class PMF(ProtoNet):
    """ProtoNet meta-training (optional) and support-set fine-tuning at test time."""

    short_title = "P>M>F"
    paper = "Hu et al. 2022, Pushing the Limits of Simple Pipelines for Few-Shot Learning"
    kind = "fine-tuning"
    recipe = {"algorithm.lr": 1e-5, "train.lr_schedule": "cosine"}

    def __init__(self, config: PMFConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        self.one_pass_adaptation = self.cacheable_features = config.finetune_steps == 0

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """ProtoNet's step; with ``meta_train`` off the frozen backbone's episode loss, without a step."""
        if self.config.meta_train:
            return super().meta_train_step(batch)
        tasks = self.prepare_batch(batch)
        with torch.no_grad(), eval_mode(self.backbone):
            loss, accuracy = self._episode_loss(tuple(episode_ways(task) for task in tasks), tasks, cache=False)
        return {"loss": float(loss), "accuracy": float(accuracy), "lr": 0.0}

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Fine-tune a copy of the backbone on the support set (``steps`` defaults to finetune_steps)."""
        steps = self.config.finetune_steps if steps is None else int(steps)
        if steps == 0:
            return super().adapt(support_x, support_y, progress=progress)
        n_classes = check_support(support_x, support_y)
        support_x, support_y = support_x.to(self.device), support_y.to(self.device)
        backbone = self._finetuned_copy(support_x, support_y, n_classes, steps, progress)
        with torch.no_grad():
            prototypes = class_means(backbone(support_x), support_y, n_classes)
        return FinetunedPrototypePredictor(backbone, prototypes)

    def _finetuned_copy(self, support_x: Tensor, support_y: Tensor, n_classes: int, steps: int,
                        progress: ProgressCallback | None) -> nn.Module:
        """A copy of the backbone after ``steps`` SGD steps on the support-vs-flipped-support ProtoNet loss."""
        backbone = copy.deepcopy(getattr(self.backbone, "inner", self.backbone)).eval()
        optimizer = torch.optim.SGD(backbone.parameters(), lr=self.config.finetune_lr, momentum=0.9)
        pseudo_query = torch.flip(support_x, dims=[3])
        with torch.enable_grad():
            for step in range(steps):
                logits = prototype_logits(backbone(support_x), support_y, backbone(pseudo_query), n_classes)
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(logits, support_y).backward()
                optimizer.step()
                if progress is not None:
                    progress(step + 1, steps)
        for parameter in backbone.parameters():
            parameter.requires_grad_(False)
        return backbone

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        if "backbone" not in state:
            return super().predictor_from_state(state)
        backbone = copy.deepcopy(self.backbone).eval()
        backbone.load_state_dict(state["backbone"])
        return FinetunedPrototypePredictor(backbone, state["prototypes"].to(self.device))
