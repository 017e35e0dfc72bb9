"""Helpers shared by the algorithms: distances, heads, mode switches, the functional inner loop."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.data.types import ClassBatch, Task
from engine.errors import DatasetError
from engine.models.batchnorm import batch_statistics, episode_statistics, supports_episode_groups

LossFn = Callable[[Tensor, Tensor], Tensor]
TaskScores = Callable[[Task, Tensor, Tensor, int], Tensor]
"""``scores(task, support_features, query_features, n_way)`` -> [Q, n_way] scores of one episode's queries."""
EpisodeLoss = Callable[[Tensor, Tensor, int], Tensor]
"""``loss(scores, query_y, n_way)`` -> 0-d loss of one episode."""
Params = dict[str, Tensor]
InnerRates = Union[float, Mapping[str, Union[float, Tensor]]]
"""The inner loop's step sizes: one learning rate for every parameter (MAML), or one per parameter name, a
number (BOIL: the body's) or a tensor of the parameter's shape (Meta-SGD's learned rates); the parameters a
mapping leaves out stay fixed in the inner loop (BOIL's head)."""


# -- modes and devices -------------------------------------------------------
@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block and restore each submodule's previous mode."""
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in saved:
            module.training = mode


def use_batch_statistics(module: nn.Module) -> nn.Module:
    """Make every BatchNorm layer normalise with the current batch's statistics, in train and eval mode.

    This is the behaviour of Finn et al.'s MAML code (and Nichol et al.'s Reptile):
    no running averages are kept, so ``functional_call`` needs only parameters and
    predictions are transductive (a query batch is normalised with its own statistics).
    The running-stat buffers are removed from the module's state dict.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.track_running_stats = False
            layer.running_mean = None
            layer.running_var = None
            layer.num_batches_tracked = None
    return module


def check_support(support_x: Tensor, support_y: Tensor) -> int:
    """Validate a support set ([S, ...] images, [S] labels 0..n-1, every class present); return n.

    Raises DatasetError describing the problem.
    """
    if support_y.ndim != 1 or support_y.numel() == 0 or support_x.shape[0] != support_y.shape[0]:
        raise DatasetError(f"support set: {support_x.shape[0]} images but labels of shape "
                           f"{tuple(support_y.shape)}; need one label per image and at least one image")
    if int(support_y.min().item()) < 0:
        raise DatasetError("support set: labels must be 0..n-1 (got a negative label)")
    counts = torch.bincount(support_y.cpu())
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise DatasetError(f"support set: labels must be 0..n-1 with every class present; "
                           f"class {missing[0]} has no image")
    return int(counts.numel())


def tasks_to(tasks: Sequence[Task], device: torch.device) -> list[Task]:
    """The tasks with their images and labels on ``device`` (tensors already there are not copied)."""
    return [task.to(device) for task in tasks]


# -- geometry ---------------------------------------------------------------
def squared_euclidean(a: Tensor, b: Tensor) -> Tensor:
    """[N, D], [M, D] -> [N, M] squared Euclidean distances (matrix form, clamped at 0)."""
    distances = a.pow(2).sum(1, keepdim=True) - 2.0 * a @ b.t() + b.pow(2).sum(1).unsqueeze(0)
    return distances.clamp_min(0.0)


def class_means(features: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """[S, D] features, [S] labels in 0..n-1 -> [n, D] per-class mean (one matmul)."""
    classes = torch.arange(n_classes, device=labels.device)
    one_hot = (labels.unsqueeze(1) == classes).to(features.dtype)      # [S, n]; F.one_hot would wait for the GPU
    return (one_hot.t() @ features) / one_hot.sum(0).unsqueeze(1)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows of [N, n] scores whose argmax equals [N] labels."""
    return float(correct_fraction(logits, labels).item())


def correct_fraction(logits: Tensor, labels: Tensor) -> Tensor:
    """0-d float tensor on the scores' device: the fraction of rows of [N, n] scores whose argmax
    equals [N] labels. No device-to-host read (a training step reads all its metrics at once)."""
    return (logits.argmax(1) == labels).float().mean()


def full_precision(tensor: Tensor) -> Tensor:
    """``tensor`` in float32 when it is half or bfloat16 (mixed precision), otherwise unchanged (float64 stays)."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def episode_ways(task: Task) -> int:
    """A task's number of classes, read without waiting for the GPU (``Task.n_way`` reads the labels'
    maximum back from the device; sampled episodes carry ``class_ids``)."""
    return int(task.class_ids.numel()) or task.n_way


def mean_of(values: Sequence[Tensor]) -> Tensor:
    """The mean of 0-d tensors (the tensor itself for one)."""
    return values[0] if len(values) == 1 else torch.stack(list(values)).mean()


def step_metrics(loss: Tensor, accuracies: Sequence[Tensor], lr: float) -> dict[str, float]:
    """A training step's metrics from a 0-d loss and per-task 0-d accuracies, read from the device
    with ONE transfer (each ``.item()`` would stall the host until the GPU catches up)."""
    accuracy_value = mean_of(accuracies)
    loss_value, accuracy_value = torch.stack([loss.detach().float(), accuracy_value.float()]).tolist()
    return {"loss": loss_value, "accuracy": accuracy_value, "lr": float(lr)}


def split_rows(features: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    """Split [sum(sizes), ...] into consecutive blocks of ``sizes`` rows."""
    return list(torch.split(features, list(sizes)))


def embed_tasks(backbone: nn.Module, tasks: Sequence[Task], *, one_forward: bool | None = None
                ) -> list[tuple[Tensor, Tensor]]:
    """Embed every task's support and query images, each episode with its own BatchNorm statistics.

    A task's features never depend on the other tasks, so a meta-batch split across
    processes computes what one process computes. one_forward: True = ONE backbone
    forward for the meta-batch with per-episode statistics
    (:class:`~engine.models.batchnorm.EpisodeBatchNorm2d` groups), False = one forward
    per episode, None = the rule: one forward per episode on the CPU (measured 1.4-1.9x
    faster there than one grouped forward, Conv-4 at 4 x 100 images of 28x28), one
    grouped forward on accelerators (fewer kernel launches). The grouped forward needs
    equal episode shapes and group-aware BatchNorm layers; otherwise episodes run one by one.
    Returns per task (support features [S, D], query features [Q, D]).
    """
    episodes = [torch.cat([task.support_x, task.query_x]) for task in tasks]
    if one_forward is None:
        one_forward = episodes[0].device.type != "cpu"
    one_forward = (one_forward and len(episodes) > 1 and len({tuple(x.shape) for x in episodes}) == 1
                   and supports_episode_groups(backbone))
    if one_forward:
        with batch_statistics(backbone, groups=len(episodes)):
            features = backbone(torch.cat(episodes))
        blocks = list(features.unflatten(0, (len(episodes), episodes[0].shape[0])))
    elif len(episodes) == 1:
        blocks = [backbone(episodes[0])]
    else:
        with episode_statistics(backbone):  # one running-statistics update, as in the grouped forward
            blocks = [backbone(x) for x in episodes]
    return [(block[: task.support_x.shape[0]], block[task.support_x.shape[0]:])
            for task, block in zip(tasks, blocks)]


# -- the episodic training step --------------------------------------------------
def cross_entropy_loss(scores: Tensor, query_y: Tensor, n_way: int) -> Tensor:
    """The default :data:`EpisodeLoss`: cross-entropy of logits (``n_way`` is not needed)."""
    return F.cross_entropy(scores, query_y)


def training_episodes(algorithm: Algorithm, batch: list[Task] | ClassBatch, title: str) -> list[Task]:
    """The tasks of an episodic algorithm's training batch, on its device, with the algorithm in train mode.

    Raises TypeError naming ``title`` ("ProtoNet trains") when given a ClassBatch."""
    if isinstance(batch, ClassBatch):
        raise TypeError(f"{title} on episodes (a list of Task), not on a ClassBatch")
    tasks = algorithm.prepare_batch(batch)
    algorithm.train(True)
    return tasks


def episode_losses(tasks: Sequence[Task], embedded: Sequence[tuple[Tensor, Tensor]], ways: Sequence[int],
                   scores: TaskScores, loss: EpisodeLoss = cross_entropy_loss) -> tuple[Tensor, list[Tensor]]:
    """(mean over tasks of the query loss, per-task 0-d query accuracies) of one meta-batch, from each task's
    (support, query) features and number of classes. No host synchronisation."""
    losses, accuracies = [], []
    for task, n_way, (support, query) in zip(tasks, ways, embedded):
        task_scores = scores(task, support, query, n_way)
        losses.append(loss(task_scores, task.query_y, n_way))
        accuracies.append(correct_fraction(task_scores.detach(), task.query_y))
    return mean_of(losses), accuracies


def episodic_metric_step(algorithm: Algorithm, batch: list[Task] | ClassBatch, *, title: str,
                         optimizer: torch.optim.Optimizer, scores: TaskScores,
                         loss: EpisodeLoss = cross_entropy_loss,
                         scoring: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
                         ) -> dict[str, float]:
    """One training step of a metric algorithm: embed every episode (:func:`embed_tasks`, under
    autocast), score each episode's queries with ``scores`` inside ``scoring()``, step ``optimizer``
    on the mean query ``loss``; returns :func:`step_metrics`. ``title`` as in :func:`training_episodes`."""
    tasks = training_episodes(algorithm, batch, title)
    with algorithm.autocast():
        embedded = embed_tasks(algorithm.backbone, tasks)
    with scoring():
        mean_loss, accuracies = episode_losses(tasks, embedded, [episode_ways(task) for task in tasks], scores, loss)
    algorithm.backward_and_step(mean_loss, optimizer)
    return step_metrics(mean_loss, accuracies, optimizer.param_groups[0]["lr"])


# -- heads --------------------------------------------------------------------
class CosineHead(nn.Module):
    """Cosine-similarity classifier (Baseline++): [B, D] -> [B, n] = scale * cos(x, w_j)."""

    def __init__(self, in_features: int, n_classes: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


class BackboneWithHead(nn.Module):
    """``head(backbone(x))``: [B, C, H, W] -> [B, n]; parameter names ``backbone.*`` and ``head.*``."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


def resized_head(weight: Tensor, bias: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """Fit a trained linear head ([n_way, D], [n_way]) to ``n_classes`` outputs (MAML and Reptile).

    Rule: with ``n_classes <= n_way`` keep the first ``n_classes`` rows; with more
    classes keep all trained rows and give every extra class the mean of the trained
    rows (so its logit starts at the average logit, like a zero-initialised head,
    and the inner loop fits it). Returns fresh tensors.
    """
    n_way = weight.shape[0]
    if n_classes <= n_way:
        return weight[:n_classes].clone(), bias[:n_classes].clone()
    extra = n_classes - n_way
    weight = torch.cat([weight, weight.mean(0, keepdim=True).expand(extra, -1)])
    bias = torch.cat([bias, bias.mean().expand(extra)])
    return weight.clone(), bias.clone()


# -- the functional inner loop -------------------------------------------------
def adapted_names(params: Iterable[str], lr: InnerRates, adapt_names: Iterable[str] | None = None) -> list[str]:
    """The parameter names an inner loop updates: ``adapt_names`` if given, else those ``lr`` gives a rate
    (all of ``params`` for a single rate), in ``params`` order."""
    if adapt_names is not None:
        return list(adapt_names)
    if isinstance(lr, Mapping):
        return [n for n in params if n in lr]
    return list(params)


def rate_of(lr: InnerRates, name: str) -> float | Tensor:
    """The step size of parameter ``name`` under ``lr`` (see :data:`InnerRates`)."""
    return lr[name] if isinstance(lr, Mapping) else lr


def inner_loop(model: nn.Module, params: Params, x: Tensor, y: Tensor, *, lr: InnerRates, steps: int,
               loss_fn: LossFn, create_graph: bool, adapt_names: Iterable[str] | None = None) -> Params:
    """``steps`` of plain gradient descent on ``loss_fn(model(x), y)`` through ``functional_call``.

    params: name -> tensor for ``model`` (the adapted ones must require grad).
    lr: one rate, or rates per name (:data:`InnerRates`; a tensor rate multiplies its gradient elementwise
    and stays differentiable, so its meta-gradient exists). adapt_names: names updated (None = those
    ``lr`` covers); the others stay fixed.
    create_graph: keep the graph of the gradients (second-order MAML); with False the
    step ``p - lr * g`` uses a gradient ``g`` that is a constant.
    Returns the new parameter dict; the input dict is not modified.
    """
    names = adapted_names(params, lr, adapt_names)
    for _ in range(steps):
        loss = loss_fn(functional_call(model, params, (x,)), y)
        grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph)
        params = {**params, **{n: params[n] - rate_of(lr, n) * g for n, g in zip(names, grads)}}
    return params


def iter_adapted_parameters(model: nn.Module, params: Params, x: Tensor, y: Tensor, *, lr: InnerRates, steps: int,
                            loss_fn: LossFn, adapt_names: Sequence[str] | None = None,
                            progress: ProgressCallback | None = None) -> Iterator[Params]:
    """The test-time inner loop, one state at a time: yields ``steps + 1`` detached parameter dicts.

    The first is a copy of ``params`` (no update yet), then the parameters after 1, 2, ...,
    ``steps`` plain gradient steps (no graph kept). Calls ``progress(done, steps)`` after
    each step. The input tensors are never modified; each yielded dict is a fresh set of
    tensors that later steps do not touch. Gradients are enabled only while a step is
    computed, never across a ``yield`` (the caller's grad mode is left alone).
    """
    names = adapted_names(params, lr, adapt_names)
    params = {n: p.detach().clone() for n, p in params.items()}
    yield params
    for step in range(steps):
        with torch.enable_grad():
            live = {n: (p.detach().requires_grad_() if n in names else p) for n, p in params.items()}
            live = inner_loop(model, live, x, y, lr=lr, steps=1, loss_fn=loss_fn, create_graph=False,
                              adapt_names=names)
        params = {n: p.detach() for n, p in live.items()}
        if progress is not None:
            progress(step + 1, steps)
        yield params


def adapt_parameters(model: nn.Module, params: Params, x: Tensor, y: Tensor, *, lr: float, steps: int,
                     loss_fn: LossFn, adapt_names: Sequence[str] | None = None,
                     progress: ProgressCallback | None = None) -> Params:
    """Test-time inner loop keeping no graph; returns detached copies (``steps == 0``: the input values).

    The last state of :func:`iter_adapted_parameters` (the one inner loop). Calls
    ``progress(done, steps)`` after each step. The input tensors are never modified.
    """
    return last(iter_adapted_parameters(model, params, x, y, lr=lr, steps=steps, loss_fn=loss_fn,
                                        adapt_names=adapt_names, progress=progress))


def last(items: Iterable[Any]) -> Any:
    """The last item of a non-empty iterable (runs it to the end)."""
    sentinel = object()
    final: Any = sentinel
    for final in items:
        pass
    if final is sentinel:
        raise ValueError("last() of an empty iterable")
    return final


class FunctionalPredictor(Predictor):
    """Predicts with ``model`` evaluated at given parameters (MAML fast weights, Reptile adapted weights).

    BatchNorm of ``model`` uses batch statistics (see :func:`use_batch_statistics`), as
    during training, so a query batch is normalised with its own statistics.
    """

    def __init__(self, model: BackboneWithHead, params: Params) -> None:
        self.model = model
        self.params = params
        self.n_classes = int(params["head.weight"].shape[0])

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities."""
        device = self.params["head.weight"].device
        with torch.no_grad():
            logits = functional_call(self.model, self.params, (query_x.to(device),))
        return logits.softmax(1).to(query_x.device)

    def embed(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D] adapted backbone features."""
        backbone_params = {n[len("backbone."):]: p for n, p in self.params.items() if n.startswith("backbone.")}
        device = self.params["head.weight"].device
        with torch.no_grad():
            return functional_call(self.model.backbone, backbone_params, (x.to(device),)).to(x.device)

    def state(self) -> dict[str, Any]:
        return {"params": {n: p.detach().cpu() for n, p in self.params.items()}}


def functional_predictor_from_state(model: BackboneWithHead, state: dict[str, Any],
                                    device: torch.device) -> FunctionalPredictor:
    """Rebuild a :class:`FunctionalPredictor` saved with ``state()``."""
    params = {n: p.to(device) for n, p in state["params"].items()}
    return FunctionalPredictor(model, params)
