"""CUDA-graph replay of a training step's forward and backward (``train.cuda_graphs``).

A few-shot step on a GPU is small: Conv-4 on 100 images of 28x28 is a few hundred
microseconds of GPU work, but its eager forward and backward launch ~150 kernels, each
costing the host several microseconds of Python, dispatcher and driver time. The step is
bound by those launches, not by the GPU. :class:`GraphedLoss` records the forward and
backward ONCE per input signature with ``torch.cuda.make_graphed_callables`` and then
replays each as a single graph launch. The maths are the same kernels on the same
tensors; only who launches them changes.

What stays eager (outside the graph): ``zero_grad``, the loss scaling, ``backward``'s
hand-off into ``.grad``, the all-reduce over ranks and the optimiser step, so learning-rate
schedules, the fp16 GradScaler and torch.distributed work unchanged.

Rules a graphed callable must follow, enforced here:

* Static shapes: a graph is recorded per signature (shapes, dtypes, strides, devices of the
  inputs; each task's number of classes); a run with more than ``MAX_SIGNATURES`` different
  signatures goes back to eager steps for good.
* Static parameters: the graph reads the weights' and buffers' memory. When any of them
  moved (``Algorithm.to``, channels-last conversion), the recorded graphs are dropped and
  recorded again. Loading a checkpoint copies in place and keeps them.
* No host synchronisation inside the step (``.item()``, data-dependent shapes). A capture
  that fails for any reason, or a forward replay whose launch is refused, switches this run
  to eager steps with a warning naming the cause; it never fails the run.

The warm-up passes that ``make_graphed_callables`` runs before recording would move
BatchNorm running statistics; they are restored, so a graphed run equals an eager one.

Trust, but check: the first ``CHECKED_REPLAYS`` replays of every recording (on the recording's
own inputs, then on fresh ones) are compared with the eager step on the same inputs, outputs and
parameter gradients. Any disagreement beyond rounding switches the run to eager steps, with the
numbers in the warning; that step itself runs eagerly. It costs one extra eager forward and
backward per check, a handful per run.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

MAX_SIGNATURES = 4
WARMUP_PASSES = 2
LOSS_TOLERANCE = 1e-2       # a checked replay's loss against the eager step's (relative; the extras, such as
GRADIENT_TOLERANCE = 1e-2   # an accuracy, may flip on rounding) and its gradients (relative norm of the difference)
CHECKED_REPLAYS = 2         # replays of each recording checked against the eager step

StepFn = Callable[..., tuple[Tensor, ...]]
"""``fn(context, *inputs) -> (loss, *extras)``."""


def cuda_graphs_usable(enabled: bool, device: torch.device) -> bool:
    """Whether ``train.cuda_graphs`` applies on ``device`` (CUDA only; ignored elsewhere)."""
    return bool(enabled) and device.type == "cuda" and torch.cuda.is_available()


def _capture_options() -> dict[str, Any]:
    """Recording errors only for this thread's work (the studio's GUI thread may use the GPU meanwhile),
    where this PyTorch has the option."""
    parameters = inspect.signature(torch.cuda.make_graphed_callables).parameters
    return {"capture_error_mode": "thread_local"} if "capture_error_mode" in parameters else {}


class _Bound(nn.Module):
    """``fn(*inputs)`` as a module whose parameters are ``owner``'s: ``make_graphed_callables``
    replaces THIS module's forward, so each signature gets a fresh one and ``owner`` stays eager."""

    def __init__(self, owner: nn.Module, fn: StepFn, context: Any) -> None:
        super().__init__()
        self.owner = owner
        self._fn = fn
        self._context = context

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return self._fn(self._context, *inputs)


def signature(inputs: Sequence[Tensor], context: Any = None) -> tuple[Any, ...]:
    """What a recorded graph is valid for: each input's shape, strides, dtype and device, and ``context``."""
    return (context, *((tuple(x.shape), x.stride(), x.dtype, x.device) for x in inputs))


class GraphedLoss:
    """Replays ``fn``'s forward and backward as CUDA graphs.

    Args:
        owner: the module whose parameters ``fn`` uses (e.g. the backbone).
        fn: ``fn(context, *inputs) -> (loss, *extras)``: ``loss`` a 0-d tensor to differentiate,
            ``extras`` tensors without gradient (e.g. an accuracy). It must be free of host
            synchronisation and of Python decisions that depend on tensor values.

    Call it with the inputs (CUDA tensors) and a hashable ``context`` holding everything else
    the recording depends on (it is handed to ``fn`` and keys the graphs); it returns ``fn``'s
    outputs (the loss differentiable with respect to ``owner``'s parameters) or None when this
    step must run eagerly.
    """

    def __init__(self, owner: nn.Module, fn: StepFn) -> None:
        self.owner = owner
        self.fn = fn
        self.disabled_reason: str | None = None
        self.captures = 0
        self._graphs: dict[tuple[Any, ...], nn.Module] = {}
        self._unchecked: dict[tuple[Any, ...], int] = {}
        self._memory: tuple[int, ...] = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> "GraphedLoss":
        """A copy (of an algorithm, say) records its own graphs for its own weights when first called."""
        twin = GraphedLoss(copy.deepcopy(self.owner, memo), copy.deepcopy(self.fn, memo))
        twin.disabled_reason = self.disabled_reason
        return twin

    @property
    def active(self) -> bool:
        """True once a graph has been recorded and none failed."""
        return self.disabled_reason is None and bool(self._graphs)

    @property
    def note(self) -> str | None:
        """How steps run, for the run log: "CUDA graphs: N recorded", "CUDA graphs off: why", or None
        while nothing was recorded yet."""
        if self.disabled_reason:
            return f"CUDA graphs off: {self.disabled_reason}"
        return f"CUDA graphs: {self.captures} recorded" if self.active else None

    def __call__(self, inputs: Sequence[Tensor], context: Any = None) -> tuple[Tensor, ...] | None:
        if self.disabled_reason is not None or torch.is_autocast_enabled():
            return None
        self._forget_if_weights_moved()
        key = signature(inputs, context)
        graphed = self._graphs.get(key)
        if graphed is None:
            if len(self._graphs) >= MAX_SIGNATURES:
                self.disable(f"more than {MAX_SIGNATURES} different episode shapes")
                return None
            graphed = self._record(inputs, context)
            if graphed is None:
                return None
            self._graphs[key], self._unchecked[key] = graphed, CHECKED_REPLAYS
        if not self._unchecked.get(key):
            return self._replay(graphed, inputs)
        return self._checked_replay(key, graphed, inputs, context)

    def _replay(self, graphed: nn.Module, inputs: Sequence[Tensor]) -> tuple[Tensor, ...] | None:
        """The recorded forward graph on ``inputs``; None (and eager steps from now on) if its launch is
        refused, which happens as a whole, so nothing of the step has run. (The backward graph replays
        inside ``backward()``; a failure there fails the step like any other CUDA error.)"""
        try:
            return graphed.forward(*inputs)
        except RuntimeError as error:
            self.disable(f"a replay failed: {_first_line(error)}")
            return None

    def _checked_replay(self, key: tuple[Any, ...], graphed: nn.Module, inputs: Sequence[Tensor],
                        context: Any) -> tuple[Tensor, ...] | None:
        """A replay checked against the eager step (the first ``CHECKED_REPLAYS`` of each recording: the
        recording's own inputs, then fresh ones); on disagreement, None and eager steps from now on."""
        self._unchecked[key] -= 1
        before = self._buffers()
        outputs = self._replay(graphed, inputs)
        if outputs is None:
            self._restore(before)
            return None
        disagreement = self._disagreement(outputs, inputs, context)
        if disagreement:
            self._restore(before)   # the caller runs this step eagerly
            self.disable(f"a replay disagreed with the eager step ({disagreement})")
            return None
        return outputs

    def disable(self, reason: str) -> None:
        """Eager steps from now on (drops the recorded graphs)."""
        self.disabled_reason = reason
        self._graphs.clear()
        self._unchecked.clear()
        warnings.warn(f"train.cuda_graphs: training steps run eagerly from here on ({reason})",
                      RuntimeWarning, stacklevel=3)

    def _weights_memory(self) -> tuple[int, ...]:
        return tuple(t.data_ptr() for t in (*self.owner.parameters(), *self.owner.buffers()))

    def _forget_if_weights_moved(self) -> None:
        memory = self._weights_memory()
        if memory != self._memory:
            self._graphs.clear()  # their memory pools go with them
            self._unchecked.clear()
            self._memory = memory

    def _disagreement(self, outputs: tuple[Tensor, ...], inputs: Sequence[Tensor], context: Any) -> str:
        """Check a replay against the eager step on the same inputs: the loss within ``LOSS_TOLERANCE`` and
        its parameter gradients within ``GRADIENT_TOLERANCE`` (relative; the kernels are the same, so only
        rounding, from non-deterministic kernels or TF32, may differ; a broken replay is off by O(1)).
        Returns what disagrees, or "" when they agree. Running statistics are left as the replay set them."""
        params = [p for p in self.owner.parameters() if p.requires_grad]
        after_replay = self._buffers()
        graphed_grads = torch.autograd.grad(outputs[0], params, retain_graph=True, allow_unused=True)
        eager = self.fn(context, *inputs)
        eager_grads = torch.autograd.grad(eager[0], params, allow_unused=True)
        self._restore(after_replay)
        ours, theirs = float(outputs[0].detach()), float(eager[0].detach())
        if abs(ours - theirs) > LOSS_TOLERANCE * max(abs(theirs), 1e-3):
            return f"loss {ours:.6g} against {theirs:.6g}"
        gap = _relative_gap(graphed_grads, eager_grads)
        return f"gradients {gap:.2e} apart (relative)" if gap > GRADIENT_TOLERANCE else ""

    def _buffers(self) -> list[Tensor]:
        return [b.detach().clone() for b in self.owner.buffers()]

    def _record(self, inputs: Sequence[Tensor], context: Any) -> nn.Module | None:
        buffers = self._buffers()
        try:
            graphed = torch.cuda.make_graphed_callables(
                _Bound(self.owner, self.fn, context), tuple(x.detach() for x in inputs),
                num_warmup_iters=WARMUP_PASSES, allow_unused_input=True, **_capture_options())
        except Exception as error:  # noqa: BLE001 -- any capture failure means: run eagerly
            self._restore(buffers)
            self.disable(f"recording failed: {_first_line(error)}")
            return None
        self._restore(buffers)
        self.captures += 1
        return graphed

    def _restore(self, saved: list[Tensor]) -> None:
        """Put the buffers (running statistics) back, in place, without bumping their autograd version:
        a step's graph may hold them, and batch-statistics backward does not read them."""
        with torch.no_grad():
            for buffer, value in zip(self.owner.buffers(), saved):
                buffer.data.copy_(value)


def _first_line(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters of it), for a one-line warning."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


def _relative_gap(ours: Sequence[Tensor | None], theirs: Sequence[Tensor | None]) -> float:
    """||ours - theirs|| / ||theirs|| over all gradients (None = zero)."""
    difference = reference = 0.0
    for a, b in zip(ours, theirs):
        a = torch.zeros(()) if a is None else a.detach().double()
        b = torch.zeros(()) if b is None else b.detach().double()
        difference += float((a.cpu() - b.cpu()).pow(2).sum())
        reference += float(b.cpu().pow(2).sum())
    return (difference ** 0.5) / max(reference ** 0.5, 1e-30)
