"""The MAML memory estimate (engine/training/memory.py) on the CPU; the CUDA side is in test_gpu_path.py."""

from __future__ import annotations

import pytest
import torch

from engine.algorithms.registry import build_algorithm
from engine.config import FOMAMLConfig, MAMLConfig, ProtoNetConfig, RunConfig
from engine.errors import ConfigError
from engine.training import memory
from engine.training.memory import GIB, available_ram, estimate_maml_memory

torch.set_num_threads(1)


def maml_config(meta_batch: int = 8, first_order: bool = False) -> RunConfig:
    config = RunConfig(algorithm=FOMAMLConfig() if first_order else MAMLConfig())
    config.model.hidden_channels = 16
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 5, 1, 5, meta_batch
    return config


@pytest.fixture(scope="module")
def estimates() -> dict[str, memory.MemoryEstimate]:
    return {"loop": estimate_maml_memory(maml_config(), "cpu"),
            "vmap": estimate_maml_memory(maml_config(), "cpu", batched=True),
            "first-order": estimate_maml_memory(maml_config(first_order=True), "cpu")}


def test_estimate_on_cpu_is_positive_and_fits_a_tiny_run(estimates) -> None:
    loop = estimates["loop"]
    assert loop.fits and not loop.batched  # auto on the CPU runs the loop
    params = sum(p.numel() for p in build_algorithm(maml_config(), 5).model.parameters())
    assert loop.fixed_bytes == 4 * 4 * params  # weights, gradients, two Adam moments, float32
    assert loop.bytes_needed > loop.fixed_bytes + loop.first_task_bytes - 1
    assert loop.bytes_available > 0
    assert "second-order MAML needs ~" in loop.message and "meta-batch 8" in loop.message


def test_the_room_on_the_cpu_is_the_free_ram(monkeypatch) -> None:
    """Read once, through a stand-in: free RAM on a shared machine changes between two real reads."""
    monkeypatch.setattr(memory, "available_ram", lambda: 3 * GIB + 12345)
    assert estimate_maml_memory(maml_config(), "cpu").bytes_available == 3 * GIB + 12345
    assert available_ram() > 0  # the real reading (MemAvailable of /proc/meminfo here)


def test_batched_path_grows_with_the_meta_batch_and_the_loop_hardly(estimates) -> None:
    loop, vmap = estimates["loop"], estimates["vmap"]
    assert vmap.batched
    assert vmap.bytes_needed > loop.bytes_needed
    assert vmap.needed_for(16) - vmap.needed_for(8) == 8 * vmap.per_task_bytes
    assert loop.per_task_bytes < loop.first_task_bytes / 10  # only the task's images stay per task


def test_second_order_needs_at_least_first_order(estimates) -> None:
    assert estimates["loop"].bytes_needed >= estimates["first-order"].bytes_needed
    assert estimates["first-order"].message.startswith("first-order MAML")


def test_not_fitting_explains_and_offers_first_order_and_a_smaller_meta_batch(estimates, monkeypatch) -> None:
    vmap = estimates["vmap"]
    room = vmap.fixed_bytes + vmap.first_task_bytes + 2 * vmap.per_task_bytes + vmap.per_task_bytes // 2
    monkeypatch.setattr(memory, "available_bytes", lambda device: room)
    estimate = estimate_maml_memory(maml_config(), "cpu", batched=True)
    assert not estimate.fits and estimate.bytes_available == room
    assert "second-order MAML needs ~" in estimate.message and "but cpu has" in estimate.message
    assert "use first-order MAML (algorithm fomaml / --first-order true)" in estimate.message
    assert "lower task.meta_batch_size to 3" in estimate.message
    assert "task_batching to loop" in estimate.message


@pytest.mark.parametrize("name, method", [("meta_sgd", "Meta-SGD"), ("boil", "BOIL")])
def test_methods_built_on_maml_are_named_as_themselves(name, method, monkeypatch) -> None:
    from engine.algorithms.registry import ALGORITHM_CONFIGS

    config = maml_config()
    config.algorithm = ALGORITHM_CONFIGS[name]()
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1)  # nothing fits
    estimate = estimate_maml_memory(config, "cpu")
    assert estimate.message.startswith(f"second-order {method} ") and "MAML" not in estimate.message
    assert f"use first-order {method} (--first-order true)" in estimate.message


def test_not_even_one_task_fitting_suggests_smaller_episodes(monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024)
    estimate = estimate_maml_memory(maml_config(first_order=True), "cpu")
    assert not estimate.fits
    assert "lower task.n_query" in estimate.message and "first-order MAML (algorithm" not in estimate.message


def test_distributed_share_is_per_process(estimates) -> None:
    shared = estimate_maml_memory(maml_config(), "cpu", batched=True, world_size=4)
    assert shared.tasks_per_process == 2
    assert shared.bytes_needed < estimates["vmap"].bytes_needed
    assert "(2 per process)" in shared.message


def test_estimate_leaves_the_random_state_alone() -> None:
    before = torch.get_rng_state()
    estimate_maml_memory(maml_config(meta_batch=2), "cpu")
    assert torch.equal(before, torch.get_rng_state())


def test_only_maml_configs_and_valid_precisions() -> None:
    with pytest.raises(ConfigError, match="algorithm.name"):
        estimate_maml_memory(RunConfig(algorithm=ProtoNetConfig()), "cpu")
    config = maml_config()
    config.train.precision = "fp16"
    with pytest.raises(ConfigError, match="train.precision"):
        estimate_maml_memory(config, "cpu")


def test_gib_formatting() -> None:
    assert memory.gib(31.2 * GIB) == "31.2 GiB"
