"""CUDA-graph replay of ProtoNet's step (``train.cuda_graphs``, engine/algorithms/graphs.py).

The CPU tests check the bookkeeping (one recording per episode shape, re-recording when the
weights move, the eager fallback, restored BatchNorm statistics) with a stand-in for
``torch.cuda.make_graphed_callables`` that runs the module eagerly; with it, a "graphed"
ProtoNet must train exactly like the eager one, which checks the wiring (flat inputs, classes
per task). The CUDA tests record real graphs and are skipped without a GPU.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from engine.algorithms import graphs, protonet
from engine.algorithms.graphs import MAX_SIGNATURES, GraphedLoss, cuda_graphs_usable
from engine.training.callbacks import Callback
from engine.training.trainer import Trainer

from .helpers import tiny_config
from .test_gpu_path import build, needs_cuda, tasks, weights


class EagerStandIn:
    """Replaces torch.cuda.make_graphed_callables: runs the warm-up passes like the real one (they move
    BatchNorm statistics) and returns the module itself, so "replays" are eager calls."""

    def __init__(self, fail: bool = False) -> None:
        self.recordings = 0
        self.fail = fail

    def __call__(self, module: nn.Module, sample_args: tuple[Tensor, ...], num_warmup_iters: int = 3,
                 allow_unused_input: bool = False, capture_error_mode: str = "global") -> nn.Module:
        for _ in range(num_warmup_iters):
            module(*sample_args)[0].backward()
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
        self.recordings += 1
        return module


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> EagerStandIn:
    fake = EagerStandIn()
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake)
    return fake


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten())


def mean_output(net: nn.Module):
    def fn(context: Any, x: Tensor) -> tuple[Tensor, Tensor]:
        out = net(x)
        return out.mean(), out.detach().abs().mean()
    return fn


def test_cuda_graphs_apply_only_to_cuda_devices() -> None:
    assert not cuda_graphs_usable(True, torch.device("cpu"))
    assert not cuda_graphs_usable(False, torch.device("cuda"))
    assert cuda_graphs_usable(True, torch.device("cuda")) == torch.cuda.is_available()


def test_one_recording_per_shape_and_restored_statistics(stand_in: EagerStandIn) -> None:
    net, reference = small_net(), small_net()
    graphed = GraphedLoss(net, mean_output(net))
    x = torch.randn(6, 1, 8, 8)
    loss, _ = graphed([x], context="a")
    reference(x)  # one eager forward: the warm-ups must not show in the statistics
    assert torch.equal(net[1].running_mean, reference[1].running_mean)
    assert int(net[1].num_batches_tracked) == 1
    graphed([torch.randn(6, 1, 8, 8)], context="a")
    assert stand_in.recordings == 1 and graphed.active
    graphed([torch.randn(3, 1, 8, 8)], context="a")      # another shape
    graphed([torch.randn(6, 1, 8, 8)], context="b")      # another context (e.g. precision)
    assert stand_in.recordings == 3
    assert loss.requires_grad


def test_moved_weights_are_recorded_again(stand_in: EagerStandIn) -> None:
    net = small_net()
    graphed = GraphedLoss(net, mean_output(net))
    x = torch.randn(6, 1, 8, 8)
    graphed([x])
    net[0].weight.data = net[0].weight.data.clone()   # what Algorithm.to / a layout change does
    graphed([x])
    assert stand_in.recordings == 2
    with torch.no_grad():
        net[0].weight.mul_(2.0)                       # in place (optimiser step, checkpoint load): kept
    graphed([x])
    assert stand_in.recordings == 2


def test_too_many_shapes_fall_back_to_eager_steps(stand_in: EagerStandIn) -> None:
    net = small_net()
    graphed = GraphedLoss(net, mean_output(net))
    for batch in range(1, MAX_SIGNATURES + 1):
        assert graphed([torch.randn(batch + 1, 1, 8, 8)]) is not None
    with pytest.warns(RuntimeWarning, match="different episode shapes"):
        assert graphed([torch.randn(20, 1, 8, 8)]) is None
    assert not graphed.active and graphed([torch.randn(2, 1, 8, 8)]) is None


def test_a_failed_recording_leaves_eager_steps_and_the_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", EagerStandIn(fail=True))
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    graphed = GraphedLoss(net, mean_output(net))
    with pytest.warns(RuntimeWarning, match="recording failed: RuntimeError: operation not permitted"):
        assert graphed([torch.randn(6, 1, 8, 8)]) is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert graphed.disabled_reason is not None and "more detail" not in graphed.disabled_reason


class StaleStandIn(EagerStandIn):
    """A broken recording: every replay computes on the recording's inputs, whatever it is given."""

    def __call__(self, module: nn.Module, sample_args: tuple[Tensor, ...], **options: Any) -> nn.Module:
        super().__call__(module, sample_args, **options)
        recorded = tuple(x.clone() for x in sample_args)
        forward = module.forward
        module.forward = lambda *inputs: forward(*recorded)
        return module


class RefusingStandIn(EagerStandIn):
    """Records, then every replay after the ``good`` first ones is refused (as a graph launch can be)."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    def __call__(self, module: nn.Module, sample_args: tuple[Tensor, ...], **options: Any) -> nn.Module:
        super().__call__(module, sample_args, **options)
        forward, replays = module.forward, []

        def replay(*inputs: Tensor) -> tuple[Tensor, ...]:
            replays.append(1)
            if len(replays) > self.good:
                raise RuntimeError("CUDA error: operation not permitted\nCUDA kernel errors might be ...")
            return forward(*inputs)
        module.forward = replay
        return module


@pytest.mark.parametrize("good", [0, graphs.CHECKED_REPLAYS + 1])  # a checked replay, then an unchecked one
def test_a_replay_that_fails_switches_to_eager_steps(monkeypatch: pytest.MonkeyPatch, good: int) -> None:
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", RefusingStandIn(good))
    eager = build("protonet")
    eager.configure_runtime()  # the same runtime but for the graphs (fused Adam on the CPU too)
    graphed = graphed_protonet(monkeypatch)
    with pytest.warns(RuntimeWarning, match="a replay failed: RuntimeError: CUDA error: operation not permitted"):
        for step in range(good + 3):
            batch = tasks(2, seed=step)
            assert graphed.meta_train_step(batch) == eager.meta_train_step(batch)  # the failed step ran eagerly
    assert graphed.graphs_note == "CUDA graphs off: a replay failed: RuntimeError: CUDA error: operation not permitted"
    ours, theirs = weights(graphed), weights(eager)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_checks_stop_after_the_first_replays(stand_in: EagerStandIn) -> None:
    net = small_net()
    calls = []
    fn = mean_output(net)
    graphed = GraphedLoss(net, lambda context, x: calls.append(1) or fn(context, x))
    for _ in range(5):
        graphed([torch.randn(6, 1, 8, 8)])
    # 2 warm-ups + 5 replays + one eager check for each of the first CHECKED_REPLAYS replays
    assert len(calls) == graphs.WARMUP_PASSES + 5 + graphs.CHECKED_REPLAYS


def test_a_replay_that_disagrees_with_eager_switches_to_eager_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", StaleStandIn())
    eager = build("protonet")
    eager.configure_runtime()  # the same runtime but for the graphs (fused Adam on the CPU too)
    graphed = graphed_protonet(monkeypatch)
    with pytest.warns(RuntimeWarning, match="a replay disagreed with the eager step"):
        for step in range(3):
            batch = tasks(2, seed=step)
            assert graphed.meta_train_step(batch) == eager.meta_train_step(batch)
    assert graphed.graphs_note.startswith("CUDA graphs off: a replay disagreed")
    ours, theirs = weights(graphed), weights(eager)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def graphed_protonet(monkeypatch: pytest.MonkeyPatch, seed: int = 0):
    """A ProtoNet that takes the CUDA-graph path on the CPU (with the eager stand-in)."""
    monkeypatch.setattr(protonet, "cuda_graphs_usable", lambda enabled, device: enabled)
    algorithm = build("protonet", seed=seed)
    algorithm.configure_runtime(cuda_graphs=True)
    return algorithm


@pytest.mark.parametrize("meta_batch", [1, 3])
def test_the_graph_path_trains_exactly_like_the_eager_one(stand_in: EagerStandIn, monkeypatch: pytest.MonkeyPatch,
                                                           meta_batch: int) -> None:
    eager = build("protonet")
    eager.configure_runtime(cuda_graphs=False)
    graphed = graphed_protonet(monkeypatch)
    for step in range(3):
        batch = tasks(meta_batch, seed=step, n_way=4 + step % 2)   # 4 then 5 classes: two recordings
        assert graphed.meta_train_step(batch) == eager.meta_train_step(batch)
    ours, theirs = weights(graphed), weights(eager)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)   # running statistics included
    assert stand_in.recordings == 2 and graphed.graphs_note == "CUDA graphs: 2 recorded"


def test_a_copy_records_its_own_graphs(stand_in: EagerStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    algorithm = graphed_protonet(monkeypatch)
    algorithm.meta_train_step(tasks(1))
    twin = copy.deepcopy(algorithm)          # e.g. exporting an adapted classifier
    assert twin._graphed.owner is twin.backbone and not twin._graphed.active
    twin.meta_train_step(tasks(1, seed=1))
    algorithm.meta_train_step(tasks(1, seed=1))
    assert stand_in.recordings == 2
    assert all(torch.equal(a, b) for a, b in zip(weights(twin).values(), weights(algorithm).values()))


def test_the_trainer_logs_how_steps_run(stand_in: EagerStandIn, monkeypatch: pytest.MonkeyPatch, tiny_flat) -> None:
    monkeypatch.setattr(protonet, "cuda_graphs_usable", lambda enabled, device: enabled)
    logged: list[tuple[str, str]] = []

    class Log(Callback):
        def on_log(self, message: str, level: str = "info") -> None:
            logged.append((message, level))

    Trainer(tiny_config(tiny_flat, steps=3), callbacks=[Log()]).run()
    assert ("CUDA graphs: 1 recorded", "info") in logged


def test_the_cpu_never_records() -> None:
    algorithm = build("protonet")
    algorithm.configure_runtime(cuda_graphs=True)
    algorithm.meta_train_step(tasks(1))
    assert algorithm.graphs_note is None


# -- real graphs -------------------------------------------------------------------------------------------------
@pytest.fixture
def exact_cuda():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def cuda_pair(channels_last: bool = False, precision: str = "fp32"):
    pair = []
    for use_graphs in (False, True):
        algorithm = build("protonet").to("cuda")
        algorithm.configure_runtime(precision=precision, channels_last=channels_last, cuda_graphs=use_graphs)
        pair.append(algorithm)
    return pair


def assert_close_weights(a, b, tolerance: float = 1e-5) -> None:
    ours, theirs = weights(a), weights(b)
    for key, value in theirs.items():
        gap = (ours[key].double() - value.double()).abs().max().item()
        assert gap <= tolerance * max(1.0, value.double().abs().max().item()), (key, gap)


@needs_cuda
@pytest.mark.parametrize("meta_batch,channels_last", [(1, False), (4, False), (2, True)])
def test_cuda_graphed_protonet_equals_eager(exact_cuda, meta_batch: int, channels_last: bool) -> None:
    eager, graphed = cuda_pair(channels_last)
    for step in range(4):
        batch = tasks(meta_batch, seed=step, n_shot=5, n_query=15)
        ours, theirs = graphed.meta_train_step(batch), eager.meta_train_step(batch)
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
        assert ours["accuracy"] == pytest.approx(theirs["accuracy"])
    assert graphed._graphed.active and graphed._graphed.captures == 1
    assert_close_weights(graphed, eager)


@needs_cuda
def test_cuda_graphs_record_again_after_a_move_and_a_new_shape(exact_cuda) -> None:
    eager, graphed = cuda_pair()
    for algorithm in (eager, graphed):
        algorithm.meta_train_step(tasks(2, seed=0))
        algorithm.to("cpu").to("cuda")                 # the weights' memory moves
        algorithm.meta_train_step(tasks(2, seed=1))
        algorithm.meta_train_step(tasks(2, seed=2, n_way=3))
    assert graphed._graphed.captures == 3
    assert_close_weights(graphed, eager)


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_graphs_under_mixed_precision(precision: str) -> None:
    eager, graphed = cuda_pair(precision=precision)
    for step in range(3):
        batch = tasks(2, seed=step)
        ours, theirs = graphed.meta_train_step(batch), eager.meta_train_step(batch)
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=2e-2)
    assert graphed._graphed.active


@needs_cuda
def test_cuda_graphs_fall_back_when_the_step_waits_for_the_gpu(exact_cuda) -> None:
    eager, graphed = cuda_pair()
    for algorithm in (eager, graphed):   # cumulative BatchNorm averages read a count back from the GPU
        for layer in algorithm.backbone.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.momentum = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(2):
            batch = tasks(1, seed=step)
            assert graphed.meta_train_step(batch)["loss"] == pytest.approx(eager.meta_train_step(batch)["loss"],
                                                                           rel=1e-5)
    assert graphed.graphs_note.startswith("CUDA graphs off: recording failed")
    assert any("train.cuda_graphs" in str(w.message) for w in caught)
    assert_close_weights(graphed, eager)

