"""Baseline and Baseline++ (Chen et al. 2019): pre-train a classifier, fit a new head on the support set.

Pre-training: backbone + head over all ``n_train_classes`` on :class:`ClassBatch`
batches with Adam (linear head for Baseline, cosine head scaled by
``cosine_scale`` for Baseline++).

Adaptation: the backbone is frozen (eval mode) and the support features are
computed once; a NEW head (``config.head``: linear or cosine) is initialised from
a fixed seed and fitted with ``finetune_steps`` full-batch Adam steps at
``finetune_lr`` on those features (Chen et al. use SGD on mini-batches; full-batch
Adam on a handful of cached features is deterministic and converges in fewer steps).

torch.distributed: each rank takes an equal slice of every pre-training batch and
gradients are averaged, as DistributedDataParallel does; BatchNorm statistics are
per rank (no SyncBatchNorm) and running statistics are averaged over ranks after
each step, so a multi-process run is close to, not bit-equal to, one process with
the whole batch.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import CosineHead, check_support, correct_fraction, eval_mode, last, step_metrics
from engine.config import AlgorithmConfig, BaselineConfig
from engine.data.types import ClassBatch, Task

HEAD_SEED = 0


def make_head(kind: str, in_features: int, n_classes: int, scale: float,
              generator: torch.Generator | None = None) -> nn.Module:
    """A ``linear`` or ``cosine`` head [B, in_features] -> [B, n_classes].

    With ``generator`` the weights are drawn from it (uniform +-1/sqrt(in_features),
    zero bias), so the same seed gives the same head.
    """
    head: nn.Module = nn.Linear(in_features, n_classes) if kind == "linear" else \
        CosineHead(in_features, n_classes, scale)
    if generator is not None:
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            weight = torch.rand(n_classes, in_features, generator=generator) * 2 * bound - bound
            head.weight.copy_(weight)
            if isinstance(head, nn.Linear):
                head.bias.zero_()
    return head


def fit_head(features: Tensor, labels: Tensor, n_classes: int, *, kind: str, steps: int, lr: float,
             scale: float, progress: ProgressCallback | None = None) -> nn.Module:
    """Fit a new head on fixed [S, D] features and [S] labels: ``steps`` full-batch Adam steps.

    The last head of :func:`iter_fit_head` (one fitting loop).
    """
    return last(iter_fit_head(features, labels, n_classes, kind=kind, steps=steps, lr=lr, scale=scale,
                              progress=progress))


def iter_fit_head(features: Tensor, labels: Tensor, n_classes: int, *, kind: str, steps: int, lr: float,
                  scale: float, progress: ProgressCallback | None = None) -> Iterator[nn.Module]:
    """The heads of :func:`fit_head` after 0, 1, ..., ``steps`` Adam steps (``steps + 1`` frozen copies).

    features: [S, D] fixed support features; labels: [S] in 0..n_classes-1. Step 0 is the new
    head freshly drawn from ``HEAD_SEED`` (it knows nothing of the support set yet). Each
    yielded head is a separate module without gradients that later steps do not change.
    ``progress(done, steps)`` is called after each step. Gradients are enabled while a step
    runs, never across a ``yield``.
    """
    generator = torch.Generator().manual_seed(HEAD_SEED)
    head = make_head(kind, features.shape[1], n_classes, scale, generator).to(features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    yield _frozen_copy(head)
    for step in range(steps):
        with torch.enable_grad():
            loss = F.cross_entropy(head(features), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if progress is not None:
            progress(step + 1, steps)
        yield _frozen_copy(head)


def _frozen_copy(head: nn.Module) -> nn.Module:
    """A copy of ``head`` whose parameters need no gradients."""
    return copy.deepcopy(head).requires_grad_(False)


class HeadPredictor(Predictor):
    """softmax(head(backbone(x))) with the backbone in eval mode."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        self.backbone = backbone
        self.head = head
        self.n_classes = int(head.weight.shape[0])

    def _features(self, x: Tensor) -> Tensor:
        with torch.no_grad(), eval_mode(self.backbone):
            return self.backbone(x.to(self.head.weight.device))

    def embed(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D] frozen backbone features."""
        return self._features(x).to(x.device)

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities."""
        return self.predict_features(self._features(query_x)).to(query_x.device)

    def predict_features(self, features: Tensor) -> Tensor:
        """[Q, D] frozen backbone features (as ``embed`` gives them) -> [Q, n_classes] probabilities."""
        with torch.no_grad():
            return self.head(features.to(self.head.weight.device)).softmax(1)

    def state(self) -> dict[str, Any]:
        kind = "cosine" if isinstance(self.head, CosineHead) else "linear"
        state: dict[str, Any] = {"kind": kind, "weight": self.head.weight.detach().cpu()}
        if kind == "linear":
            state["bias"] = self.head.bias.detach().cpu()
        else:
            state["scale"] = float(self.head.scale)
        return state


def head_from_state(state: dict[str, Any], device: torch.device) -> nn.Module:
    """Rebuild a head saved by :meth:`HeadPredictor.state`."""
    weight = state["weight"]
    head = make_head(str(state["kind"]), weight.shape[1], weight.shape[0], float(state.get("scale", 1.0)))
    with torch.no_grad():
        head.weight.copy_(weight)
        if isinstance(head, nn.Linear):
            head.bias.copy_(state["bias"])
    return head.to(device).requires_grad_(False)


class ClassifierPretraining(Algorithm):
    """Shared part of Baseline, Baseline++ and SimpleShot: supervised pre-training over all train classes."""

    batch_kind = "classes"
    pretrain_head = "linear"

    def __init__(self, config: AlgorithmConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        scale = float(getattr(config, "cosine_scale", 10.0))
        self.head = make_head(self.pretrain_head, backbone.out_features, n_train_classes, scale)
        params = list(self.backbone.parameters()) + list(self.head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"pretrain": self.optimizer}

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """One Adam step of cross-entropy over the training classes on a [B, C, H, W] ClassBatch."""
        if not isinstance(batch, ClassBatch):
            raise TypeError(f"{type(self).__name__} pre-trains on a ClassBatch, not on episodes")
        batch = self.prepare_batch(batch)
        self.train(True)
        with self.autocast():
            features = self.backbone(batch.x)
        features = features.float()
        self.observe_features(features.detach())
        logits = self.head(features)
        loss = F.cross_entropy(logits, batch.y)
        self.backward_and_step(loss, self.optimizer)
        return step_metrics(loss, [correct_fraction(logits.detach(), batch.y)], self.optimizer.param_groups[0]["lr"])

    def observe_features(self, features: Tensor) -> None:
        """Hook: the detached [B, D] training features of each step."""

    def support_features(self, support_x: Tensor) -> Tensor:
        """[S, C, H, W] -> [S, D] eval-mode features without gradients."""
        with torch.no_grad(), eval_mode(self.backbone):
            return self.backbone(support_x.to(self.device))


class Baseline(ClassifierPretraining):
    """Baseline: linear pre-training head; a new ``config.head`` fitted on the support features."""
    short_title = "Baseline"
    kind = "fine-tuning"
    paper = "Chen et al. 2019, A Closer Look at Few-shot Classification"
    recipe = {"algorithm.lr": 1e-3, "algorithm.batch_size": 64, "algorithm.finetune_steps": 100,
              "algorithm.finetune_lr": 0.01}  # Adam pre-training, 100 fine-tuning steps, as in the paper
    cacheable_features = True
    inner_loop = True

    def __init__(self, config: BaselineConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        self.config: BaselineConfig = config

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Fit a new head on the frozen support features (``steps`` defaults to finetune_steps).

        The last predictor of :meth:`iter_adapt` (one fitting loop for both).
        """
        return last(self.iter_adapt(support_x, support_y, steps=steps, progress=progress))

    def iter_adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
                   progress: ProgressCallback | None = None) -> Iterator[HeadPredictor]:
        """The predictors after 0, 1, ..., ``steps`` head-fitting steps (``steps + 1`` of them, lazily).

        support_x: [S, C, H, W]; support_y: [S] in 0..n-1. The support features are computed
        once (backbone frozen, eval mode). Step 0 is the freshly initialised head (seeded
        random weights, zero bias: its accuracy is that of a random linear read-out, about
        chance), then one full-batch Adam step at finetune_lr per predictor. The k-th
        predictor equals ``adapt(support_x, support_y, steps=k)``.
        """
        n_classes = check_support(support_x, support_y)
        steps = self.config.finetune_steps if steps is None else max(0, int(steps))
        features = self.support_features(support_x)
        for head in iter_fit_head(features, support_y.to(self.device), n_classes, kind=self.config.head,
                                  steps=steps, lr=self.config.finetune_lr, scale=self.config.cosine_scale,
                                  progress=progress):
            yield HeadPredictor(self.backbone, head)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return HeadPredictor(self.backbone, head_from_state(state, self.device))


class BaselinePlusPlus(Baseline):
    """Baseline++: cosine pre-training head (scale ``cosine_scale``), cosine head fitted by default."""
    short_title = "Baseline++"
    paper = "Chen et al. 2019, A Closer Look at Few-shot Classification"
    recipe = {"algorithm.lr": 1e-3, "algorithm.batch_size": 64, "algorithm.finetune_steps": 100,
              "algorithm.finetune_lr": 0.01, "algorithm.cosine_scale": 10.0}

    pretrain_head = "cosine"
