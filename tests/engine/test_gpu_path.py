"""The GPU path: mixed precision, channels-last, pinned transfers, MAML's batched (vmap) inner loop.

The CPU tests run everywhere; the CUDA ones are skipped without a GPU.
``python -m tests.engine.test_gpu_path --timing`` prints loop-vs-vmap timings on CUDA.
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from engine.algorithms.base import Algorithm
from engine.algorithms import maml as maml_module
from engine.algorithms.maml import maml_meta_gradient
from engine.algorithms.registry import ALGORITHMS, build_algorithm
from engine.config import ALGORITHM_CONFIGS, RunConfig, resolve_channels_last
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError
from engine.training.trainer import Trainer

from .helpers import tiny_config

torch.set_num_threads(1)
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def build(name: str, hidden: int = 16, seed: int = 0, **options: Any) -> Algorithm:
    torch.manual_seed(seed)
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[name](**options))
    config.model.hidden_channels = hidden
    if config.algorithm.name in ("baseline", "baseline++", "simpleshot"):
        config.algorithm.batch_size = 16
    return build_algorithm(config, 10)


def tasks(n: int, seed: int = 0, n_way: int = 5, n_shot: int = 1, n_query: int = 3, size: int = 28,
          channels: int = 1) -> list[Task]:
    g = torch.Generator().manual_seed(seed)
    shape = (channels, size, size)
    return [Task(torch.randn(n_way * n_shot, *shape, generator=g), torch.arange(n_way).repeat_interleave(n_shot),
                 torch.randn(n_way * n_query, *shape, generator=g), torch.arange(n_way).repeat_interleave(n_query))
            for _ in range(n)]


def batch_for(algorithm: Algorithm, seed: int = 0) -> list[Task] | ClassBatch:
    if algorithm.batch_kind == "classes":
        g = torch.Generator().manual_seed(seed)
        return ClassBatch(torch.randn(16, 1, 28, 28, generator=g), torch.randint(10, (16,), generator=g))
    return tasks(2, seed)


def weights(algorithm: Algorithm) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v.detach().clone() for m, module in algorithm.modules().items()
            for k, v in module.state_dict().items()}


def max_gradient_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest |a - b| over all gradients, relative to the largest gradient entry."""
    scale = max(g.abs().max().item() for g in b.values())
    return max((a[k] - b[k]).abs().max().item() for k in b) / scale


# -- precision and memory format on the CPU ------------------------------------------------------------------------
def test_fp16_on_the_cpu_is_refused_naming_the_field(tiny_flat) -> None:
    algorithm = build("protonet")
    with pytest.raises(ConfigError, match=r"train\.precision"):
        algorithm.configure_runtime(precision="fp16")
    with pytest.raises(ConfigError, match=r"train\.precision"):
        algorithm.configure_runtime(precision="fp8")
    with pytest.raises(ConfigError, match=r"train\.task_batching"):
        algorithm.configure_runtime(task_batching="sometimes")
    config = tiny_config(tiny_flat, steps=2)
    config.train.precision = "fp16"
    summary = Trainer(config).run()
    assert summary.status == "failed" and "train.precision" in summary.message


def test_precision_fields_are_validated() -> None:
    raw = RunConfig().to_dict()
    raw["train"]["precision"] = "fp64"
    with pytest.raises(ConfigError, match=r"train\.precision"):
        RunConfig.from_dict(raw)
    raw["train"].update(precision="bf16", channels_last="true", task_batching="vmap")
    train = RunConfig.from_dict(raw).train
    assert (train.precision, train.channels_last, train.task_batching) == ("bf16", "on", "vmap")


@pytest.mark.parametrize("name", ["protonet", "maml", "reptile", "baseline"])
def test_bf16_autocast_on_the_cpu_trains_float32_weights(name: str) -> None:
    algorithm = build(name)
    algorithm.configure_runtime(precision="bf16")
    before = weights(algorithm)
    metrics = algorithm.meta_train_step(batch_for(algorithm))
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("loss", "accuracy"))
    after = weights(algorithm)
    assert all(v.dtype == before[k].dtype for k, v in after.items())  # master weights keep their dtype
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert algorithm.scaler is None and "scaler" not in algorithm.state_dict()


def test_bf16_actually_runs_the_convolutions_in_bfloat16() -> None:
    algorithm = build("protonet")
    algorithm.configure_runtime(precision="bf16")
    seen: list[torch.dtype] = []
    conv = algorithm.backbone.blocks[0][0]
    handle = conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    algorithm.meta_train_step(tasks(2))
    handle.remove()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)


@pytest.mark.parametrize("name", ["protonet", "maml"])
def test_channels_last_computes_the_same_step(name: str) -> None:
    plain, fast = build(name), build(name)
    fast.configure_runtime(channels_last=True)
    conv = fast.backbone.blocks[1][0].weight  # (the first has one input channel: both layouts at once)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    prepared = fast.prepare_batch(tasks(2))
    assert prepared[0].query_x.is_contiguous(memory_format=torch.channels_last)
    a, b = plain.meta_train_step(tasks(2)), fast.meta_train_step(tasks(2))
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


@pytest.mark.parametrize("name", ["protonet", "maml"])
def test_channels_last_reaches_every_layer_with_one_channel_images(name: str) -> None:
    """One-channel images are NCHW and channels-last at once; unless their strides say channels-last,
    the first convolution's output (and with it the whole backbone) falls back to NCHW."""
    algorithm = build(name)
    algorithm.configure_runtime(channels_last=True)
    pool_inputs: list[torch.Tensor] = []
    pools = [module for module in algorithm.backbone.modules() if isinstance(module, torch.nn.MaxPool2d)]
    handles = [pool.register_forward_hook(lambda module, inputs, output: pool_inputs.append(inputs[0]))
               for pool in pools]
    batch = tasks(2)
    assert batch[0].query_x.shape[1] == 1
    algorithm.meta_train_step(batch)
    for handle in handles:
        handle.remove()
    big = [x for x in pool_inputs if x.shape[-1] > 1]
    assert big and all(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() for x in big)


def test_maml_gradients_take_the_layout_of_channels_last_weights() -> None:
    """The fused CUDA Adam refuses a gradient whose strides differ from its parameter's (found on an H100:
    MAML's meta-gradients come back NCHW while channels-last conv weights are not)."""
    for batching in ("loop", "vmap"):
        algorithm = build("maml")
        algorithm.configure_runtime(channels_last=True, task_batching=batching)
        algorithm.meta_train_step(tasks(2))
        for parameter in algorithm.model.parameters():
            assert parameter.grad.stride() == parameter.stride(), batching


def test_channels_last_setting_reads_old_bool_configs_and_auto() -> None:
    raw = RunConfig().to_dict()
    assert raw["train"]["channels_last"] == "auto" and resolve_channels_last("auto", torch.device("cpu"))
    for old, new in ((True, "on"), (False, "off"), ("false", "off")):
        raw["train"]["channels_last"] = old
        assert RunConfig.from_dict(raw).train.channels_last == new
    assert not resolve_channels_last("off", torch.device("cpu"))
    cuda = torch.device("cuda")  # (no GPU needed: only the rule runs)
    assert not resolve_channels_last("auto", cuda, 28) and resolve_channels_last("auto", cuda, 84)
    assert resolve_channels_last("on", cuda, 28) and resolve_channels_last("auto", torch.device("cpu"), 28)
    raw["train"]["channels_last"] = "sideways"
    with pytest.raises(ConfigError, match=r"train\.channels_last"):
        RunConfig.from_dict(raw)


def test_prepare_batch_on_the_cpu_copies_nothing() -> None:
    algorithm = build("protonet")
    batch = tasks(1)
    prepared = algorithm.prepare_batch(batch)
    assert prepared[0].support_x is batch[0].support_x and prepared[0].query_y is batch[0].query_y


# -- MAML: the batched inner loop -----------------------------------------------------------------------------------
VARIANTS = [("maml", {}), ("fomaml", {}), ("maml", {"anil": True}), ("fomaml", {"anil": True}),
            ("maml", {"inner_steps": 2})]


@pytest.mark.parametrize("name,options", VARIANTS)
def test_vmap_meta_gradient_equals_the_loop(name: str, options: dict[str, Any]) -> None:
    algorithm = build(name, **options)
    batch = tasks(3, n_query=4)
    loop = algorithm.meta_gradient(batch, batched=False)
    vmap = algorithm.meta_gradient(batch, batched=True)
    assert loop.grads.keys() == vmap.grads.keys()
    assert max_gradient_gap(vmap.grads, loop.grads) < 1e-5
    assert vmap.loss == pytest.approx(loop.loss, abs=1e-5)
    for a, b in zip(vmap.query_outputs, loop.query_outputs):
        assert torch.allclose(a, b, atol=1e-5)


def test_vmap_meta_gradient_matches_for_regression_models_in_float64() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    g = torch.Generator().manual_seed(0)
    batch = [tuple(torch.randn(n, 1, generator=g, dtype=torch.float64) for n in (5, 5, 7, 7)) for _ in range(3)]
    kwargs = dict(inner_lr=0.1, inner_steps=2, first_order=False, loss_fn=F.mse_loss)
    loop = maml_meta_gradient(model, batch, **kwargs)
    vmap = maml_meta_gradient(model, batch, batched=True, **kwargs)
    assert max_gradient_gap(vmap.grads, loop.grads) < 1e-12


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_vmap_in_chunks_gives_the_whole_meta_gradient(chunk: int) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    g = torch.Generator().manual_seed(1)
    batch = [tuple(torch.randn(n, 1, generator=g, dtype=torch.float64) for n in (5, 5, 7, 7)) for _ in range(5)]
    kwargs = dict(inner_lr=0.1, inner_steps=2, first_order=False, loss_fn=F.mse_loss, loss_scale=3.0)
    whole = maml_meta_gradient(model, batch, batched=True, **kwargs)
    chunked = maml_meta_gradient(model, batch, batched=True, chunk_size=chunk, **kwargs)
    assert max_gradient_gap(chunked.grads, whole.grads) < 1e-12
    assert torch.allclose(chunked.losses, whole.losses, atol=1e-12) and chunked.losses.shape == (5,)
    assert len(chunked.query_outputs) == 5


def test_vmap_chunk_setting_reaches_maml() -> None:
    algorithm = build("maml")
    algorithm.configure_runtime(task_batching="vmap", vmap_chunk=3)
    assert algorithm.task_chunk(tasks(4)) == 3 and algorithm.task_chunk(tasks(2)) == 2
    algorithm.configure_runtime(task_batching="vmap")
    assert algorithm.task_chunk(tasks(4)) == 4
    with pytest.raises(ConfigError, match=r"train\.vmap_chunk"):
        algorithm.configure_runtime(vmap_chunk=-1)


def test_task_batching_modes_choose_the_path() -> None:
    algorithm = build("maml")
    batch = tasks(2)
    assert not algorithm.uses_batched_tasks(batch)          # auto on the CPU: the loop
    algorithm.configure_runtime(task_batching="vmap")
    assert algorithm.uses_batched_tasks(batch)
    assert not algorithm.uses_batched_tasks(batch[:1])       # one task: nothing to batch
    assert not algorithm.uses_batched_tasks(batch[:1] + tasks(1, n_query=4))  # shapes differ: loop
    algorithm.configure_runtime(task_batching="loop")
    assert not algorithm.uses_batched_tasks(batch)


def test_forced_vmap_training_step_runs_the_batched_path(monkeypatch) -> None:

    algorithm = build("maml")
    algorithm.configure_runtime(task_batching="vmap")
    calls: list[bool] = []
    original = maml_module.maml_meta_gradient
    monkeypatch.setattr(maml_module, "maml_meta_gradient",
                        lambda *a, **k: calls.append(k["batched"]) or original(*a, **k))
    before = weights(algorithm)
    metrics = algorithm.meta_train_step(tasks(2))
    assert calls == [True] and torch.isfinite(torch.tensor(metrics["loss"]))
    assert any(not torch.equal(before[k], v) for k, v in weights(algorithm).items())


def test_auto_batching_benchmarks_once_per_shape_off_the_cpu(monkeypatch) -> None:
    algorithm = build("maml")
    timings = {0: 2.0, 2: 1.0}
    runs: list[int] = []
    monkeypatch.setattr(algorithm, "_time_meta_gradient", lambda batch, chunk: runs.append(chunk)
                        or (timings[chunk], 1.0))
    algorithm.device = torch.device("meta")  # pretend to be an accelerator; only the decision runs
    batch = tasks(2)
    assert algorithm.uses_batched_tasks(batch) and algorithm.uses_batched_tasks(batch)
    assert runs == [0, 2]  # benchmarked once, remembered
    timings[2] = 3.0
    assert not algorithm.uses_batched_tasks(tasks(2, n_query=4))  # a new shape: benchmarked again


def test_auto_batching_leaves_out_paths_over_the_memory_budget(monkeypatch) -> None:
    """The whole meta-batch in one vmap call is fastest but would take most of the device: a quarter
    of it per call is measured too and wins; when nothing batched fits, the loop runs."""
    algorithm = build("maml")
    algorithm.device = torch.device("meta")
    monkeypatch.setattr(maml_module, "_device_memory", lambda device: 100.0)
    cost = {0: (4.0, 10.0), 8: (1.0, 90.0), 2: (2.0, 30.0)}   # chunk -> (seconds, peak bytes)
    runs: list[int] = []
    monkeypatch.setattr(algorithm, "_time_meta_gradient", lambda batch, chunk: runs.append(chunk) or cost[chunk])
    assert algorithm.task_chunk(tasks(8)) == 2 and runs == [0, 8, 2]
    cost[2] = (2.0, 60.0)
    assert algorithm.task_chunk(tasks(8, n_query=4)) == 0


# -- CUDA -----------------------------------------------------------------------------------------------------------
ALL = sorted(ALGORITHMS)


@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("name", ALL)
def test_cuda_mixed_precision_trains_every_algorithm(name: str, precision: str) -> None:
    algorithm = build(name).to("cuda")
    algorithm.configure_runtime(precision=precision, channels_last=True)
    before = weights(algorithm)
    for seed in range(3):
        metrics = algorithm.meta_train_step(batch_for(algorithm, seed))
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("loss", "accuracy"))
    assert any(not torch.equal(before[k], v) for k, v in weights(algorithm).items())
    assert ("scaler" in algorithm.state_dict()) == (precision == "fp16")


@needs_cuda
@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_cuda_fp16_resume_restores_the_loss_scale(name: str) -> None:
    torch.backends.cudnn.deterministic = True
    original = build(name).to("cuda")
    original.configure_runtime(precision="fp16", task_batching="loop")  # one path on both sides
    for seed in range(2):
        original.meta_train_step(batch_for(original, seed))
    state = copy.deepcopy(original.state_dict())
    assert state["scaler"]["scale"] == original.scaler.get_scale()
    clone = build(name, seed=9).to("cuda")
    clone.load_state_dict(state)
    clone.configure_runtime(precision="fp16", task_batching="loop")  # the trainer's order after load_algorithm
    assert clone.scaler.get_scale() == original.scaler.get_scale()
    batch = batch_for(original, 5)
    assert original.meta_train_step(batch)["loss"] == pytest.approx(clone.meta_train_step(batch)["loss"], abs=1e-5)
    for key, value in weights(original).items():
        assert torch.allclose(weights(clone)[key], value, atol=1e-5), key


@needs_cuda
@pytest.mark.parametrize("name,options", VARIANTS)
def test_cuda_vmap_meta_gradient_equals_the_loop(name: str, options: dict[str, Any]) -> None:
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    algorithm = build(name, **options).to("cuda")
    batch = algorithm.prepare_batch(tasks(4, n_query=5))
    loop = algorithm.meta_gradient(batch, batched=False)
    vmap = algorithm.meta_gradient(batch, batched=True)
    assert max_gradient_gap(vmap.grads, loop.grads) < 1e-4


@needs_cuda
def test_cuda_auto_batching_picks_a_path_by_measuring() -> None:
    algorithm = build("maml").to("cuda")
    algorithm.configure_runtime()
    batch = tasks(4)
    algorithm.meta_train_step(batch)
    assert set(algorithm.batching_timings) == {0, 4}       # the loop and all 4 tasks per vmap call
    assert all(t > 0 for t in algorithm.batching_timings.values())
    assert all(0 < peak < float("inf") for peak in algorithm.batching_peaks.values())
    assert len(algorithm._batching_choice) == 1


@needs_cuda
@pytest.mark.parametrize("name", ["protonet", "maml"])
def test_cuda_adam_steps_fused_and_back_on_the_cpu(name: str) -> None:
    algorithm = build(name).to("cuda")
    algorithm.configure_runtime()
    groups = [g for optimizer in algorithm.optimizers().values() for g in optimizer.param_groups]
    assert groups and all(g["fused"] is True for g in groups)
    before = weights(algorithm)
    algorithm.meta_train_step(tasks(2))
    assert any(not torch.equal(before[k], v) for k, v in weights(algorithm).items())
    algorithm.to("cpu").configure_runtime()
    assert all(g["fused"] is None for g in groups)
    algorithm.meta_train_step(tasks(2))


@needs_cuda
def test_cuda_prepare_batch_moves_pinned_copies() -> None:
    algorithm = build("protonet").to("cuda")
    algorithm.configure_runtime(channels_last=True)
    prepared = algorithm.prepare_batch(tasks(2))
    assert prepared[0].support_x.device.type == "cuda" and prepared[0].query_y.device.type == "cuda"
    assert prepared[0].query_x.is_contiguous(memory_format=torch.channels_last)
    torch.cuda.synchronize()
    assert torch.equal(prepared[0].query_x.cpu(), tasks(2)[0].query_x)


@needs_cuda
@pytest.mark.parametrize("name", ["protonet", "maml", "baseline"])
def test_cuda_trainer_with_bf16_and_channels_last(name: str, tiny_flat, tmp_path) -> None:
    config = tiny_config(tiny_flat, name, steps=4)
    config.train.device, config.train.precision, config.train.channels_last = "cuda", "bf16", "on"
    summary = Trainer(config, run_dir=tmp_path / "run").run()
    assert summary.status == "finished", summary.message


@needs_cuda
def test_cuda_memory_check_fails_early_and_offers_first_order(tiny_flat, tmp_path, monkeypatch) -> None:
    from engine.training import memory

    config = tiny_config(tiny_flat, "maml", steps=2)
    config.train.device = "cuda"
    estimate = memory.estimate_maml_memory(config, "cuda")
    assert estimate.fits and estimate.bytes_needed > estimate.fixed_bytes > 0
    monkeypatch.setattr(memory, "available_bytes", lambda device: estimate.fixed_bytes)
    summary = Trainer(config, run_dir=tmp_path / "run").run()
    assert summary.status == "failed"
    assert "second-order MAML needs ~" in summary.message
    assert "first-order MAML (algorithm fomaml / --first-order true)" in summary.message


# -- timings (not a test) -------------------------------------------------------------------------------------------
def timing_report(meta_batches: tuple[int, ...] = (16, 32), repeats: int = 10) -> None:
    """Loop vs vmap meta-gradient + Adam step on CUDA: 5-way 1-shot 15-query 28x28 Conv-4 (64 filters)."""
    for first_order in (False, True):
        for meta_batch in meta_batches:
            row = []
            for mode in ("loop", "vmap", "auto"):
                algorithm = build("fomaml" if first_order else "maml", hidden=64).to("cuda")
                algorithm.configure_runtime(task_batching=mode)
                batch = algorithm.prepare_batch(tasks(meta_batch, n_query=15))
                algorithm.meta_train_step(batch)
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                started = time.perf_counter()
                for _ in range(repeats):
                    algorithm.meta_train_step(batch)
                torch.cuda.synchronize()
                rate = meta_batch * repeats / (time.perf_counter() - started)
                row.append(f"{mode} {rate:7.0f} tasks/s {torch.cuda.max_memory_allocated() / 2**20:6.0f} MiB")
            order = "first" if first_order else "second"
            print(f"{order}-order mb{meta_batch}: " + " | ".join(row), flush=True)


def precision_report(repeats: int = 10) -> None:
    """ProtoNet, ResNet-12 on 84x84 RGB, 5-way 5-shot 15-query, meta-batch 4: fp32 / bf16 / fp16, +- channels-last."""
    for precision in ("fp32", "bf16", "fp16"):
        for channels_last in (False, True):
            torch.manual_seed(0)
            config = RunConfig(algorithm=ALGORITHM_CONFIGS["protonet"]())
            config.model.backbone, config.data.channels, config.data.image_size = "resnet12", 3, 84
            algorithm = build_algorithm(config, 10).to("cuda")
            algorithm.configure_runtime(precision=precision, channels_last=channels_last)
            batch = tasks(4, n_shot=5, n_query=15, size=84, channels=3)
            algorithm.meta_train_step(batch)
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(repeats):
                algorithm.meta_train_step(batch)
            torch.cuda.synchronize()
            rate = 4 * repeats / (time.perf_counter() - started)
            print(f"protonet resnet12 84px {precision} channels_last={channels_last}: {rate:6.1f} tasks/s", flush=True)


if __name__ == "__main__" and "--timing" in sys.argv:
    timing_report()
    precision_report()
