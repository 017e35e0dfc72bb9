"""Reptile (Nichol et al. 2018).

For each task of the meta-batch: copy the weights theta, run ``inner_steps`` of
Adam (betas (0, 0.999), as in the paper; fresh optimiser state per task) at
``inner_lr`` on all the task's images (support and query, full batch), giving phi.
Then ``theta += lr * mean_tasks(phi - theta)``.

Reported metrics: ``loss``/``accuracy`` are the mean over tasks of the training loss
and accuracy on the task's images at the LAST inner step (computed before that
step's update, so they cost no extra forward); ``lr`` is the outer step size.

Mixed precision: the inner forward passes run under autocast; with fp16 each
task's inner Adam gets a fresh GradScaler (as it gets fresh Adam state).
torch.distributed: each rank adapts to its slice of the meta-batch and the summed
weight deltas are averaged over ranks before the outer update, which therefore
equals the single-process update over the whole meta-batch.

BatchNorm uses batch statistics everywhere (as in the paper's transductive
setting; see ``use_batch_statistics``), so adaptation and prediction behave as in
training. Adaptation runs ``test_inner_steps`` of the same Adam on the support set of
a copy, with the MAML head rule for a different number of classes
(:func:`~engine.algorithms.functional.resized_head`).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Callable, ContextManager, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    BackboneWithHead, FunctionalPredictor, check_support, correct_fraction, functional_predictor_from_state, last,
    resized_head, step_metrics, training_episodes, use_batch_statistics,
)
from engine.config import ReptileConfig
from engine.data.types import ClassBatch, Task

ADAM_BETAS = (0.0, 0.999)
INNER_FP16_SCALE = 2.0 ** 12


def train_inner(model: nn.Module, x: Tensor, y: Tensor, *, lr: float, steps: int,
                progress: ProgressCallback | None = None,
                autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                fp16: bool = False) -> tuple[Tensor, Tensor]:
    """``steps`` full-batch Adam steps (fresh state) of cross-entropy on [N, C, H, W] images, [N] labels.

    Updates ``model`` in place; returns (loss, accuracy) of the last step's forward as 0-d
    tensors on the model's device, not read to the host (nan, nan for zero steps). ``autocast``: context for the forward passes (mixed
    precision); ``fp16``: scale the loss with a fresh GradScaler (like the fresh Adam
    state, one per call), which skips a step whose gradients overflow. Runs
    :func:`iter_train_inner` to its end (one inner loop).
    """
    loss_value = accuracy_value = torch.full((), float("nan"), device=next(model.parameters()).device)
    for loss_value, accuracy_value in iter_train_inner(model, x, y, lr=lr, steps=steps, progress=progress,
                                                       autocast=autocast, fp16=fp16):
        pass
    return loss_value, accuracy_value


def iter_train_inner(model: nn.Module, x: Tensor, y: Tensor, *, lr: float, steps: int,
                     progress: ProgressCallback | None = None,
                     autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                     fp16: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """The inner loop of :func:`train_inner`, pausing after each of its ``steps`` Adam steps.

    Yields, after each step (``model`` updated in place), the (loss, accuracy) of that
    step's forward (computed before its update) as 0-d device tensors: reading them is the
    caller's choice, so the inner loop never waits for the GPU. ``progress(done, steps)`` is called
    after each step, before the yield. Gradients are enabled while a step runs, never
    across a ``yield``.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=ADAM_BETAS)
    device_type = next(model.parameters()).device.type
    scaler = torch.amp.GradScaler(device_type, init_scale=INNER_FP16_SCALE) if fp16 else None
    for step in range(steps):
        with torch.enable_grad():
            with autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        if progress is not None:
            progress(step + 1, steps)
        yield loss.detach(), correct_fraction(logits.detach(), y)


class Reptile(Algorithm):
    """Reptile over ``backbone`` plus a ``Linear(out_features, n_way)`` head."""
    short_title = "Reptile"
    kind = "optimisation"
    paper = "Nichol et al. 2018, On First-Order Meta-Learning Algorithms"
    recipe = {"algorithm.lr": 1.0, "algorithm.inner_lr": 1e-3, "algorithm.inner_steps": 5,
              "algorithm.test_inner_steps": 10, "train.lr_schedule": "cosine"}  # outer step annealed to 0
    inner_loop = True

    def __init__(self, config: ReptileConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, use_batch_statistics(backbone), n_way=n_way, n_train_classes=n_train_classes)
        self.config: ReptileConfig = config
        self.head = nn.Linear(backbone.out_features, n_way)
        self.model = BackboneWithHead(self.backbone, self.head)
        self._fast: BackboneWithHead | None = None
        self._fast_device: torch.device | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}

    def _fast_model(self) -> BackboneWithHead:
        """A reusable copy of the model on the current device for the inner loops of training."""
        if self._fast is None or self._fast_device != self.device:
            self._fast = copy.deepcopy(self.model)
            self._fast_device = self.device
        return self._fast

    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """Adapt a copy to each task, then interpolate the weights towards the mean adapted weights."""
        tasks = training_episodes(self, batch, "Reptile trains")
        fast = self._fast_model()
        fast.train(True)
        params, fast_params = list(self.model.parameters()), list(fast.parameters())
        deltas = [torch.zeros_like(p) for p in params]
        losses, accuracies = [], []
        for task in tasks:
            with torch.no_grad():
                for target, source in zip(fast_params, params):
                    target.copy_(source)
            x = torch.cat([task.support_x, task.query_x])
            y = torch.cat([task.support_y, task.query_y])
            loss, acc = train_inner(fast, x, y, lr=self.config.inner_lr, steps=self.config.inner_steps,
                                    autocast=self.autocast, fp16=self.precision == "fp16")
            losses.append(loss)
            accuracies.append(acc)
            with torch.no_grad():
                for delta, adapted, start in zip(deltas, fast_params, params):
                    delta.add_(adapted - start)
        self.average_over_ranks(deltas)  # torch.distributed: the mean over every rank's tasks
        with torch.no_grad():
            for parameter, delta in zip(params, deltas):
                parameter.add_(delta, alpha=self.config.lr * self.lr_scale / len(tasks))
        return step_metrics(torch.stack(losses).mean(), accuracies, self.config.lr * self.lr_scale)

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """``steps`` (default test_inner_steps) Adam steps on the support set of a copy of the model.

        The last predictor of :meth:`iter_adapt` (one inner loop for both).
        """
        return last(self.iter_adapt(support_x, support_y, steps=steps, progress=progress))

    def iter_adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
                   progress: ProgressCallback | None = None) -> Iterator[FunctionalPredictor]:
        """The predictors after 0, 1, ..., ``steps`` inner Adam steps (``steps + 1`` of them, lazily).

        support_x: [S, C, H, W]; support_y: [S] in 0..n-1. Step 0 is the meta-learned
        initialisation (head rule of ``resized_head``); then one Adam step (betas (0, 0.999),
        one fresh optimiser for the whole loop) at inner_lr per predictor, on a copy of the
        model. The k-th predictor equals ``adapt(support_x, support_y, steps=k)``; each holds
        its own snapshot of the weights. ``progress(done, steps)`` is called after each step.
        """
        n_classes = check_support(support_x, support_y)
        steps = self.config.test_inner_steps if steps is None else max(0, int(steps))
        model = self._copy_with_head(n_classes)
        model.train(True)
        yield self._snapshot(model)
        for _ in iter_train_inner(model, support_x.to(self.device), support_y.to(self.device),
                                  lr=self.config.inner_lr, steps=steps, progress=progress):
            yield self._snapshot(model)

    def _snapshot(self, model: BackboneWithHead) -> FunctionalPredictor:
        """A predictor with a copy of ``model``'s current weights (later inner steps do not change it)."""
        return FunctionalPredictor(self.model, {n: p.detach().clone() for n, p in model.named_parameters()})

    def _copy_with_head(self, n_classes: int) -> BackboneWithHead:
        weight, bias = resized_head(self.head.weight.detach(), self.head.bias.detach(), n_classes)
        head = nn.Linear(weight.shape[1], n_classes).to(self.device)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        return BackboneWithHead(copy.deepcopy(self.backbone), head)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return functional_predictor_from_state(self.model, state, self.device)
