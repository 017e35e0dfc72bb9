"""MAML (Finn et al. 2017): second-order, first-order (FOMAML) and ANIL variants.

The inner loop is functional: parameters live in a dict, each step is
``theta_i' = theta_i - inner_lr * grad`` computed with ``torch.autograd.grad``
(``create_graph=True`` for second order) and the model is evaluated with
``torch.func.functional_call``. :func:`maml_meta_gradient` works on any small
``nn.Module`` and loss (classification or sinusoid regression), and is what
:class:`MAML` calls for its outer step.

Batched tasks: with ``train.task_batching`` "vmap" (or "auto" on a GPU, after a
short benchmark) all tasks of a meta-batch run as one ``torch.func.vmap`` over a
function that adapts with ``torch.func.grad``: one kernel per layer for the whole
meta-batch instead of one per task, at the cost of holding every task's graph at
once (memory grows with the meta-batch; see :mod:`engine.training.memory`). It
gives the loop's meta-gradients (tested to 1e-5 on CPU and CUDA).

Mixed precision: bf16 autocasts every forward pass; fp16 keeps the inner loop in
float32 (support sets are small; inner gradients then can neither underflow nor
overflow) and autocasts the query side, whose loss the GradScaler scales.

BatchNorm: as in Finn et al.'s code, every BatchNorm layer uses the statistics of
the batch it sees, in the inner loop, the outer loop and at adaptation/prediction
time (no running averages; see ``use_batch_statistics``). Support and query
batches are normalised separately, and a query batch with its own statistics
(transductive), exactly as during training, so evaluation matches training.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.functional import (
    BackboneWithHead, FunctionalPredictor, InnerRates, LossFn, Params, adapted_names, check_support,
    correct_fraction, functional_predictor_from_state, inner_loop, iter_adapted_parameters, last, rate_of,
    resized_head, step_metrics, training_episodes, use_batch_statistics,
)
from engine.config import MAMLConfig
from engine.data.types import ClassBatch, Task
from engine.models.batchnorm import batch_statistics

TaskTensors = tuple[Tensor, Tensor, Tensor, Tensor]
"""(support_x, support_y, query_x, query_y) of one task."""
ContextFactory = Callable[[], ContextManager[Any]]
BENCHMARK_REPEATS = 3
MEMORY_SHARE = 0.5
"""``task_batching="auto"`` picks a vmap path only if its measured peak stays within this share of the
device's memory (the rest is left to the allocator's fragmentation, other programs and the evaluation)."""


@dataclass
class MetaGradient:
    """Result of :func:`maml_meta_gradient`.

    grads: parameter name -> d(mean query loss)/d(parameter); parameters of the
        ``features`` module are named ``"features." + name``.
    losses: [T] detached query losses of the tasks (after adaptation), on their device.
    query_outputs: per task, the detached [Q, ...] model outputs on the query set.
    """

    grads: dict[str, Tensor]
    losses: Tensor
    query_outputs: list[Tensor]

    @property
    def loss(self) -> float:
        """Mean query loss over the tasks (reads it from the device)."""
        return float(self.losses.mean().item())


def maml_meta_gradient(model: nn.Module, tasks: Sequence[TaskTensors | Task], *, inner_lr: InnerRates,
                       inner_steps: int, first_order: bool, loss_fn: LossFn,
                       features: nn.Module | None = None, batched: bool = False, chunk_size: int = 0,
                       loss_scale: float = 1.0,
                       inner_context: ContextFactory = contextlib.nullcontext,
                       query_context: ContextFactory = contextlib.nullcontext) -> MetaGradient:
    """The MAML meta-gradient of the mean query loss over ``tasks`` w.r.t. the parameters.

    For each task: ``inner_steps`` gradient steps on the support loss from the current
    parameters (all of ``model``'s), then the query loss at the adapted parameters.
    Second order differentiates through the inner steps; ``first_order`` treats the
    inner gradients as constants, so the result is the query-loss gradient at the
    adapted parameters. ``features`` (ANIL): a module applied to the images before
    ``model`` with its parameters fixed in the inner loop and trained in the outer loop.
    inner_lr: one rate for every parameter of ``model``, or rates per name (:data:`InnerRates`: the
    parameters it leaves out stay fixed in the inner loop, as BOIL's head); tensor rates that require
    grad (Meta-SGD) get meta-gradients too, named ``"inner_lr." + name``.

    batched: run the tasks through ``torch.func.vmap`` (all tasks must have the same
    shapes; see :func:`batched_query_losses`), ``chunk_size`` tasks per call (0 = all at
    once); each chunk's graph is freed before the next, so memory grows with the chunk,
    not the meta-batch. Otherwise task by task, freeing each task's graph before the next
    (memory of one task). All give the same result.
    loss_scale: the returned gradients are those of ``loss_scale * meta-loss`` (fp16
    loss scaling; ``loss`` is unscaled). inner_context / query_context: context
    factories for the support-side and query-side forward passes (mixed precision).
    """
    named = meta_parameters(model, features) + rate_parameters(inner_lr)
    if batched:
        return _chunked_meta_gradient(model, tasks, named, chunk_size or len(tasks), loss_scale=loss_scale,
                                      inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
                                      loss_fn=loss_fn, features=features, inner_context=inner_context,
                                      query_context=query_context)
    totals = [torch.zeros_like(p) for _, p in named]
    losses_list, outputs_list = [], []
    for task in tasks:
        support_x, support_y, query_x, query_y = _task_tensors(task)
        with inner_context():
            if features is not None:
                support_x = features(support_x)
                if first_order:
                    support_x = support_x.detach()
            params = dict(model.named_parameters())
            fast = inner_loop(model, params, support_x, support_y, lr=inner_lr, steps=inner_steps,
                              loss_fn=_upcast_loss(loss_fn), create_graph=not first_order)
        with query_context():
            if features is not None:
                query_x = features(query_x)
            query_out = functional_call(model, fast, (query_x,))
        loss = _upcast_loss(loss_fn)(query_out, query_y)
        grads = torch.autograd.grad(loss * (loss_scale / len(tasks)), [p for _, p in named], allow_unused=True)
        for total, grad in zip(totals, grads):
            if grad is not None:
                total.add_(grad)
        losses_list.append(loss.detach())
        outputs_list.append(query_out.detach())
    return MetaGradient({n: g for (n, _), g in zip(named, totals)}, torch.stack(losses_list), outputs_list)


def _chunked_meta_gradient(model: nn.Module, tasks: Sequence[TaskTensors | Task],
                           named: list[tuple[str, nn.Parameter]], chunk_size: int, *, loss_scale: float,
                           **batched_args: Any) -> MetaGradient:
    """The batched path, ``chunk_size`` tasks per vmap call, each chunk differentiated (and its graph
    freed) before the next: peak memory of one chunk, the same sum as one call over all tasks."""
    totals: list[Tensor | None] = [None] * len(named)
    losses_list, outputs_list = [], []
    for start in range(0, len(tasks), chunk_size):
        losses, outputs = batched_query_losses(model, tasks[start:start + chunk_size], **batched_args)
        grads = torch.autograd.grad(losses.sum() * (loss_scale / len(tasks)), [p for _, p in named],
                                    allow_unused=True)
        totals = [total if grad is None else grad if total is None else total.add_(grad)
                  for total, grad in zip(totals, grads)]
        losses_list.append(losses.detach())
        outputs_list.extend(outputs.detach().unbind(0))
    grads_by_name = {n: torch.zeros_like(p) if total is None else total for (n, p), total in zip(named, totals)}
    return MetaGradient(grads_by_name, torch.cat(losses_list), outputs_list)


def meta_parameters(model: nn.Module, features: nn.Module | None = None) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of ``model`` then of ``features`` (named ``"features." + name``)."""
    named = list(model.named_parameters())
    if features is not None:
        named += [(f"features.{n}", p) for n, p in features.named_parameters()]
    return named


def rate_parameters(inner_lr: InnerRates) -> list[tuple[str, Tensor]]:
    """(``"inner_lr." + name``, rate) of the learned rates in ``inner_lr``: tensors that require grad."""
    if isinstance(inner_lr, float | int):
        return []
    return [(f"inner_lr.{n}", r) for n, r in inner_lr.items() if isinstance(r, Tensor) and r.requires_grad]


def batched_query_losses(model: nn.Module, tasks: Sequence[TaskTensors | Task], *, inner_lr: InnerRates,
                         inner_steps: int, first_order: bool, loss_fn: LossFn, features: nn.Module | None = None,
                         inner_context: ContextFactory = contextlib.nullcontext,
                         query_context: ContextFactory = contextlib.nullcontext) -> tuple[Tensor, Tensor]:
    """Post-adaptation query losses of all tasks in one vectorised pass: ([T] losses, [T, Q, ...] outputs).

    ``torch.func.vmap`` maps over the tasks (stacked to [T, S, ...] / [T, Q, ...]) a
    function that adapts with ``torch.func.grad`` and evaluates the query set with
    ``functional_call``; every task's fast weights live in one batched tensor, so the
    convolutions of all tasks run as one kernel. The result stays differentiable by
    ordinary autograd w.r.t. the parameters (second order through the inner steps;
    first order: the inner gradients are taken at detached weights). BatchNorm layers
    switch to their explicit form (:mod:`engine.models.batchnorm`): per task, batch
    statistics, exactly as in the loop. Raises RuntimeError when shapes differ.
    """
    stacked = [torch.stack(parts) for parts in zip(*(_task_tensors(t) for t in tasks))]
    params = dict(model.named_parameters())
    feature_params = dict(features.named_parameters()) if features is not None else {}
    names = adapted_names(params, inner_lr)
    loss = _upcast_loss(loss_fn)

    def support_loss(adapted: Params, fixed: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss(functional_call(model, {**fixed, **adapted}, (x,)), y)

    def one_task(weights: Params, f_weights: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor
                 ) -> tuple[Tensor, Tensor]:
        with inner_context():
            if features is not None:
                sx = functional_call(features, f_weights, (sx,))
                if first_order:
                    sx = sx.detach()
            fast = weights
            for _ in range(inner_steps):
                at = {n: w.detach() for n, w in fast.items()} if first_order else fast
                grads = torch.func.grad(support_loss)({n: at[n] for n in names}, at, sx, sy)
                fast = {**fast, **{n: fast[n] - rate_of(inner_lr, n) * grads[n] for n in names}}
        with query_context():
            if features is not None:
                qx = functional_call(features, f_weights, (qx,))
            out = functional_call(model, fast, (qx,))
        return loss(out, qy), out

    with batch_statistics(model, explicit=True), \
            (batch_statistics(features, explicit=True) if features is not None else contextlib.nullcontext()):
        return torch.func.vmap(one_task, in_dims=(None, None, 0, 0, 0, 0))(params, feature_params, *stacked)


def _upcast_loss(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` computed in float32 when the outputs are half / bfloat16 (mixed precision)."""
    def wrapped(output: Tensor, target: Tensor) -> Tensor:
        if output.dtype in (torch.float16, torch.bfloat16):
            output = output.float()
        return loss_fn(output, target)
    return wrapped


def _task_tensors(task: TaskTensors | Task) -> TaskTensors:
    if isinstance(task, Task):
        return task.support_x, task.support_y, task.query_x, task.query_y
    return task


def same_shapes(tasks: Sequence[TaskTensors | Task]) -> bool:
    """True when every task has the same support/query shapes (needed by the batched path)."""
    return len({tuple(tuple(t.shape) for t in _task_tensors(task)) for task in tasks}) == 1


class MAML(Algorithm):
    """MAML / FOMAML / ANIL over ``backbone`` plus a ``Linear(out_features, n_way)`` head.

    Adaptation to a support set with ``c`` classes uses the head rule of
    :func:`~engine.algorithms.functional.resized_head`: the first ``c`` trained rows
    when ``c <= n_way``, otherwise the trained rows plus extra rows initialised to their
    mean; the inner loop then fits them. ``adapt(steps=0)`` gives the unadapted model.
    """
    short_title = "MAML"
    kind = "optimisation"
    paper = "Finn et al. 2017, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks"
    recipe = {"algorithm.lr": 1e-3, "algorithm.inner_lr": 0.4, "algorithm.inner_steps": 1,
              "algorithm.test_inner_lr": 0.4, "algorithm.test_inner_steps": 3}  # the paper's Omniglot 5-way
    inner_loop = True
    meta_gradient_memory = True

    def __init__(self, config: MAMLConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, use_batch_statistics(backbone), n_way=n_way, n_train_classes=n_train_classes)
        self.config: MAMLConfig = config
        self.head = nn.Linear(backbone.out_features, n_way)
        self.model = BackboneWithHead(self.backbone, self.head)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self._batching_choice: dict[tuple[Any, ...], int] = {}
        self.batching_timings: dict[int, float] = {}
        self.batching_peaks: dict[int, float] = {}

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"meta": self.optimizer}

    # -- training ---------------------------------------------------------
    def meta_train_step(self, batch: list[Task] | ClassBatch) -> dict[str, float]:
        """One Adam step on the MAML meta-gradient of a list of tasks."""
        tasks = training_episodes(self, batch, "MAML trains")
        chunk = self.task_chunk(tasks)
        result = self.meta_gradient(tasks, batched=chunk > 0, chunk_size=chunk, loss_scale=self.loss_scale)
        self.optimizer.zero_grad(set_to_none=True)
        for name, parameter in self._named_meta_parameters():
            parameter.grad = _like(parameter, result.grads[name])
        self.optimizer_step(self.optimizer)
        accuracies = [correct_fraction(out, task.query_y) for out, task in zip(result.query_outputs, tasks)]
        return step_metrics(result.losses.mean(), accuracies, self.optimizer.param_groups[0]["lr"])

    def _model_and_features(self) -> tuple[nn.Module, nn.Module | None]:
        return (self.head, self.backbone) if self.config.anil else (self.model, None)

    def _named_meta_parameters(self) -> list[tuple[str, Tensor]]:
        return meta_parameters(*self._model_and_features()) + rate_parameters(self.inner_rates())

    def inner_rates(self) -> InnerRates:
        """The training inner loop's step sizes (:data:`InnerRates`): MAML's one ``inner_lr`` (subclasses:
        rates per parameter name of ``self.model``, the names left out stay fixed)."""
        return self.config.inner_lr

    def test_rates(self, n_classes: int) -> InnerRates:
        """The adaptation inner loop's step sizes for ``n_classes`` classes (detached): ``test_inner_lr``."""
        return self.config.test_inner_lr

    def meta_gradient(self, tasks: Sequence[Task], *, batched: bool, chunk_size: int = 0,
                      loss_scale: float = 1.0) -> MetaGradient:
        """The meta-gradient of ``tasks`` (on the device) at the current weights; changes nothing.

        Mixed precision: bf16 runs everything under autocast; fp16 keeps the inner loop
        (support forward and inner gradients, small next to the query side) in float32, so
        inner gradients can neither underflow nor overflow, and runs the query side under
        autocast with the outer loss scaled by the GradScaler.
        """
        model, features = self._model_and_features()
        inner_context = contextlib.nullcontext if self.precision == "fp16" else self.autocast
        return maml_meta_gradient(model, tasks, inner_lr=self.inner_rates(), inner_steps=self.config.inner_steps,
                                  first_order=self.config.first_order, loss_fn=F.cross_entropy, features=features,
                                  batched=batched, chunk_size=chunk_size, loss_scale=loss_scale,
                                  inner_context=inner_context,
                                  query_context=self.autocast)

    def uses_batched_tasks(self, tasks: Sequence[Task]) -> bool:
        """Whether this meta-batch runs through the vmap path (see :meth:`task_chunk`)."""
        return self.task_chunk(tasks) > 0

    def task_chunk(self, tasks: Sequence[Task]) -> int:
        """How this meta-batch runs: 0 = task by task (the loop), k > 0 = ``torch.func.vmap`` over k tasks
        per call (``train.task_batching``, ``train.vmap_chunk``).

        "loop" / "vmap" force a path (vmap needs equal task shapes and falls back to the loop
        otherwise; its chunk is ``vmap_chunk``, 0 = the whole meta-batch). "auto": the loop on
        the CPU (a static rule: there vmap measured 2-2.7x slower, Conv-4 5-way 1-shot 15-query
        at meta-batch 4 and 16); on an accelerator a one-off micro-benchmark at the first
        meta-batch of each shape (on an H100, vmap measured 5.8x faster than the loop at
        meta-batch 16 and 12.8x at 32, second order). Each candidate computes the meta-gradient
        (no step is taken) ``BENCHMARK_REPEATS`` times after a warm-up, with its peak memory
        read on CUDA; the fastest whose peak stays within ``MEMORY_SHARE`` of the device's
        memory wins, remembered per (device, shapes, variant). When the whole meta-batch
        does not fit, a quarter of it per call is tried too. A vmap path that fails
        (unsupported operation, out of memory) counts as slower.
        """
        whole = self.vmap_chunk if 0 < self.vmap_chunk < len(tasks) else len(tasks)
        if self.task_batching == "loop" or len(tasks) < 2 or not same_shapes(tasks):
            return 0
        if self.task_batching == "vmap":
            return whole
        if self.device.type == "cpu":
            return 0
        key = (str(self.device), tuple(tuple(t.shape) for t in _task_tensors(tasks[0])), len(tasks),
               self.precision, self.channels_last, whole)
        if key not in self._batching_choice:
            self._batching_choice[key] = self._benchmark_batching(tasks, whole)
        return self._batching_choice[key]

    def _benchmark_batching(self, tasks: Sequence[Task], whole: int) -> int:
        self.batching_timings, self.batching_peaks = {}, {}
        budget = MEMORY_SHARE * _device_memory(self.device)
        for chunk in (0, whole):
            self._measure_path(tasks, chunk)
        if whole >= 8 and self.batching_peaks[whole] > budget:  # trade some speed for memory
            self._measure_path(tasks, whole // 4)
        fitting = [c for c in self.batching_timings if c == 0 or self.batching_peaks[c] <= budget]
        return min(fitting, key=lambda c: self.batching_timings[c])

    def _measure_path(self, tasks: Sequence[Task], chunk: int) -> None:
        try:
            self.batching_timings[chunk], self.batching_peaks[chunk] = self._time_meta_gradient(tasks, chunk)
        except (RuntimeError, torch.cuda.OutOfMemoryError):
            self.batching_timings[chunk], self.batching_peaks[chunk] = float("inf"), float("inf")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _time_meta_gradient(self, tasks: Sequence[Task], chunk: int) -> tuple[float, float]:
        """(seconds per meta-gradient, peak bytes allocated on CUDA, else 0) on path ``chunk``."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.meta_gradient(tasks, batched=chunk > 0, chunk_size=chunk)  # warm-up (kernel selection, allocator)
        _synchronize(self.device)
        started = time.perf_counter()
        for _ in range(BENCHMARK_REPEATS):
            self.meta_gradient(tasks, batched=chunk > 0, chunk_size=chunk)
        _synchronize(self.device)
        seconds = (time.perf_counter() - started) / BENCHMARK_REPEATS
        peak = float(torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else 0.0
        return seconds, peak

    # -- adaptation -------------------------------------------------------
    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """``steps`` (default test_inner_steps) SGD steps at test_inner_lr on the support set, on copies.

        The last predictor of :meth:`iter_adapt` (one inner loop for both).
        """
        return last(self.iter_adapt(support_x, support_y, steps=steps, progress=progress))

    def iter_adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
                   progress: ProgressCallback | None = None) -> Iterator[FunctionalPredictor]:
        """The predictors after 0, 1, ..., ``steps`` inner steps (``steps + 1`` of them, lazily).

        support_x: [S, C, H, W]; support_y: [S] in 0..n-1. Step 0 is the meta-learned
        initialisation (with the head rule of ``resized_head``); each next predictor is one
        SGD step at test_inner_lr further (ANIL: on the head only, over fixed support features).
        The k-th predictor equals ``adapt(support_x, support_y, steps=k)``. ``progress(done, steps)``
        is called after each step; the algorithm's weights are never modified.
        """
        n_classes = check_support(support_x, support_y)
        steps = self.config.test_inner_steps if steps is None else max(0, int(steps))
        support_x, support_y = support_x.to(self.device), support_y.to(self.device)
        weight, bias = resized_head(self.head.weight.detach(), self.head.bias.detach(), n_classes)
        lr = self.test_rates(n_classes)
        if self.config.anil:
            with torch.no_grad():
                features = self.backbone(support_x)
            backbone = {f"backbone.{n}": p.detach().clone() for n, p in self.backbone.named_parameters()}
            for head in iter_adapted_parameters(self.head, {"weight": weight, "bias": bias}, features, support_y,
                                                lr=lr, steps=steps, loss_fn=F.cross_entropy, progress=progress):
                yield FunctionalPredictor(self.model, {**backbone, "head.weight": head["weight"],
                                                       "head.bias": head["bias"]})
            return
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        params.update({"head.weight": weight, "head.bias": bias})
        for adapted in iter_adapted_parameters(self.model, params, support_x, support_y, lr=lr, steps=steps,
                                               loss_fn=F.cross_entropy, progress=progress):
            yield FunctionalPredictor(self.model, adapted)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return functional_predictor_from_state(self.model, state, self.device)


def _like(parameter: Tensor, grad: Tensor) -> Tensor:
    """``grad`` in ``parameter``'s memory layout (a channels-last conv weight gets a channels-last gradient:
    the fused CUDA Adam requires matching strides, and ``.backward()`` would have produced them)."""
    if grad.stride() == parameter.stride():
        return grad
    return torch.empty_like(parameter).copy_(grad)


def _device_memory(device: torch.device) -> float:
    """Total memory of a CUDA device in bytes (infinite elsewhere: no budget applies)."""
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    return float("inf")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def fit_regression(model: nn.Module, x: Tensor, y: Tensor, inner_lr: float, steps: int) -> list[Params]:
    """Adapt a regression model (e.g. the sinusoid MLP) with the same functional inner loop, MSE loss.

    x: [K, in_features], y: [K, out_features]. Returns ``steps + 1`` detached parameter
    dicts: the initial parameters, then those after each step (plot the fit after 0, 1, ... steps
    with ``torch.func.functional_call(model, params, (x_grid,))``). ``model`` is not modified.
    """
    params = {n: p.detach() for n, p in model.named_parameters()}
    return list(iter_adapted_parameters(model, params, x, y, lr=inner_lr, steps=steps, loss_fn=F.mse_loss))


class FirstOrderMAML(MAML):
    """MAML registered as "fomaml": the same implementation, its config defaults to ``first_order``."""

    short_title = "FOMAML"
    recipe = {**MAML.recipe, "algorithm.first_order": True}
