"""MAML (Finn et al. 2017): second-order, first-order (FOMAML) and ANIL variants.

The inner loop is functional: parameters live in a dict, each step is
``theta_i' = theta_i - inner_lr * grad`` computed with ``torch.autograd.grad``
(``create_graph=True`` for second order) and the model is evaluated with
``torch.func.functional_call``. :func:`maml_meta_gradient` works on any small
``nn.Module`` and loss (classification or sinusoid regression), and is what
:class:`MAML` calls for its outer step.

BatchNorm: as in Finn et al.'s code, every BatchNorm layer uses the statistics of
the batch it sees, in the inner loop, the outer loop and at adaptation/prediction
time (no running averages; see ``use_batch_statistics``). Support and query
batches are normalised separately, and a query batch with its own statistics
(transductive), exactly as during training, so evaluation matches training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    BackboneWithHead, FunctionalPredictor, LossFn, Params, accuracy, adapt_parameters, check_support,
    functional_predictor_from_state, inner_loop, resized_head, tasks_to, use_batch_statistics,
)
from engine.config import MAMLConfig
from engine.data.types import ClassBatch, Task

TaskTensors = tuple[Tensor, Tensor, Tensor, Tensor]
"""(support_x, support_y, query_x, query_y) of one task."""


@dataclass
class MetaGradient:
    """Result of :func:`maml_meta_gradient`.

    grads: parameter name -> d(mean query loss)/d(parameter); parameters of the
        ``features`` module are named ``"features." + name``.
    loss: mean query loss over the tasks (after adaptation).
    query_outputs: per task, the detached [Q, ...] model outputs on the query set.
    """

    grads: dict[str, Tensor]
    loss: float
    query_outputs: list[Tensor]


def maml_meta_gradient(model: nn.Module, tasks: Sequence[TaskTensors | Task], *, inner_lr: float,
                       inner_steps: int, first_order: bool, loss_fn: LossFn,
                       features: nn.Module | None = None) -> MetaGradient:
    """The MAML meta-gradient of the mean query loss over ``tasks`` w.r.t. the parameters.

    For each task: ``inner_steps`` gradient steps on the support loss from the current
    parameters (all of ``model``'s), then the query loss at the adapted parameters.
    Second order differentiates through the inner steps; ``first_order`` treats the
    inner gradients as constants, so the result is the query-loss gradient at the
    adapted parameters. ``features`` (ANIL): a module applied to the images before
    ``model`` with its parameters fixed in the inner loop and trained in the outer loop.
    Graphs are freed task by task.
    """
    named = list(model.named_parameters())
    if features is not None:
        named += [(f"features.{n}", p) for n, p in features.named_parameters()]
    totals = [torch.zeros_like(p) for _, p in named]
    losses, outputs = [], []
    for task in tasks:
        support_x, support_y, query_x, query_y = _task_tensors(task)
        if features is not None:
            support_x, query_x = features(support_x), features(query_x)
            if first_order:
                support_x = support_x.detach()
        params = dict(model.named_parameters())
        fast = inner_loop(model, params, support_x, support_y, lr=inner_lr, steps=inner_steps,
                          loss_fn=loss_fn, create_graph=not first_order)
        query_out = functional_call(model, fast, (query_x,))
        loss = loss_fn(query_out, query_y)
        grads = torch.autograd.grad(loss / len(tasks), [p for _, p in named], allow_unused=True)
        for total, grad in zip(totals, grads):
            if grad is not None:
                total.add_(grad)
        losses.append(float(loss.detach().item()))
        outputs.append(query_out.detach())
    return MetaGradient({n: g for (n, _), g in zip(named, totals)}, sum(losses) / len(losses), outputs)


def _task_tensors(task: TaskTensors | Task) -> TaskTensors:
    if isinstance(task, Task):
        return task.support_x, task.support_y, task.query_x, task.query_y
    return task


class MAML(Algorithm):
    """MAML / FOMAML / ANIL over ``backbone`` plus a ``Linear(out_features, n_way)`` head.

    Adaptation to a support set with ``c`` classes uses the head rule of
    :func:`~engine.algorithms.functional.resized_head`: the first ``c`` trained rows
    when ``c <= n_way``, otherwise the trained rows plus extra rows initialised to their
    mean; the inner loop then fits them. ``adapt(steps=0)`` gives the unadapted model.
    """

    def __init__(self, config: MAMLConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, use_batch_statistics(backbone), n_way=n_way, n_train_classes=n_train_classes)
        self.config: MAMLConfig = config
        self.head = nn.Linear(backbone.out_features, n_way)
        self.model = BackboneWithHead(self.backbone, self.head)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    # -- training ---------------------------------------------------------
    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """One Adam step on the MAML meta-gradient of a list of tasks."""
        if isinstance(batch, ClassBatch):
            raise TypeError("MAML trains on episodes (a list of Task), not on a ClassBatch")
        tasks = tasks_to(batch, self.device)
        self.train(True)
        if self.config.anil:
            model, features = self.head, self.backbone
            named = list(self.head.named_parameters())
            named += [(f"features.{n}", p) for n, p in self.backbone.named_parameters()]
        else:
            model, features = self.model, None
            named = list(self.model.named_parameters())
        result = maml_meta_gradient(model, tasks, inner_lr=self.config.inner_lr,
                                    inner_steps=self.config.inner_steps, first_order=self.config.first_order,
                                    loss_fn=F.cross_entropy, features=features)
        self.optimizer.zero_grad(set_to_none=True)
        for name, parameter in named:
            parameter.grad = result.grads[name]
        self.optimizer.step()
        accuracies = [accuracy(out, task.query_y) for out, task in zip(result.query_outputs, tasks)]
        return {"loss": result.loss, "accuracy": sum(accuracies) / len(accuracies),
                "lr": float(self.optimizer.param_groups[0]["lr"])}

    # -- adaptation -------------------------------------------------------
    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """``steps`` (default test_inner_steps) SGD steps at test_inner_lr on the support set, on copies."""
        n_classes = check_support(support_x, support_y)
        steps = self.config.test_inner_steps if steps is None else max(0, int(steps))
        support_x, support_y = support_x.to(self.device), support_y.to(self.device)
        weight, bias = resized_head(self.head.weight.detach(), self.head.bias.detach(), n_classes)
        lr = self.config.test_inner_lr
        if self.config.anil:
            with torch.no_grad():
                features = self.backbone(support_x)
            head = adapt_parameters(self.head, {"weight": weight, "bias": bias}, features, support_y, lr=lr,
                                    steps=steps, loss_fn=F.cross_entropy, progress=progress)
            params = {f"backbone.{n}": p.detach().clone() for n, p in self.backbone.named_parameters()}
            params.update({"head.weight": head["weight"], "head.bias": head["bias"]})
        else:
            params = {n: p.detach() for n, p in self.model.named_parameters()}
            params.update({"head.weight": weight, "head.bias": bias})
            params = adapt_parameters(self.model, params, support_x, support_y, lr=lr, steps=steps,
                                      loss_fn=F.cross_entropy, progress=progress)
        return FunctionalPredictor(self.model, params)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return functional_predictor_from_state(self.model, state, self.device)


def fit_regression(model: nn.Module, x: Tensor, y: Tensor, inner_lr: float, steps: int) -> list[Params]:
    """Adapt a regression model (e.g. the sinusoid MLP) with the same functional inner loop, MSE loss.

    x: [K, in_features], y: [K, out_features]. Returns ``steps + 1`` detached parameter
    dicts: the initial parameters, then those after each step (plot the fit after 0, 1, ... steps
    with ``torch.func.functional_call(model, params, (x_grid,))``). ``model`` is not modified.
    """
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    history = [params]
    for _ in range(steps):
        params = adapt_parameters(model, params, x, y, lr=inner_lr, steps=1, loss_fn=F.mse_loss)
        history.append(params)
    return history
