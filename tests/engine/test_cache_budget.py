"""A data set bigger than the image cache: training still works, gives the same results, and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import engine.data.store as store_module
from engine.data.folder import scan_folder
from engine.data.preprocess import Preprocessing
from engine.data.store import load_store
from engine.training import run_store as rs
from engine.training.callbacks import Callback
from engine.training.trainer import Trainer

from .helpers import tiny_config

IMAGE_SIZE = 96  # 160 images x 96 x 96 x 1 byte = 1.4 MiB decoded: more than a 1 MiB cache holds


class Recorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.logs: list[tuple[str, str]] = []
        self.failed: list[str] = []

    def on_step(self, m: Any) -> None:
        self.losses.append(m.loss)

    def on_log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))

    def on_failed(self, message: str, summary: Any) -> None:
        self.failed.append(message)


def _train(root: Path, run_dir: Path, budget_mb: int) -> tuple[Recorder, Trainer]:
    config = tiny_config(root, steps=6)
    config.data.image_size, config.data.cache_budget_mb = IMAGE_SIZE, budget_mb
    config.model.hidden_channels = 8
    config.train.val_every, config.train.val_episodes, config.train.checkpoint_every = 3, 2, 3
    config.train.num_threads = 1  # 2 busy cores: one thread each is much faster than two
    recorder = Recorder()
    trainer = Trainer(config, run_dir=run_dir, callbacks=[recorder])
    summary = trainer.run()
    assert summary.status == "finished", recorder.failed
    return recorder, trainer


def test_training_with_a_cache_smaller_than_the_data_set_works_identically_and_warns(
        tiny_flat: Path, tmp_path: Path) -> None:
    small, small_trainer = _train(tiny_flat, tmp_path / "small", budget_mb=1)
    large, large_trainer = _train(tiny_flat, tmp_path / "large", budget_mb=512)
    store = small_trainer.data.store
    assert 0 < store.n_cached < len(store) == 160  # some images are decoded on demand...
    assert large_trainer.data.store.n_cached == len(store)
    assert small.losses == pytest.approx(large.losses, rel=1e-6, abs=1e-7)  # ...and give the same training
    warnings = [message for level, message in small.logs if level == "warning"]
    assert any("data.cache_budget_mb=1" in w and "decoded from disk" in w for w in warnings), warnings
    assert not any("cache_budget_mb" in message for _, message in large.logs)
    assert rs.RunStore(tmp_path).record(tmp_path / "small").status == "finished"


def test_the_cache_never_takes_more_than_half_the_free_memory(tiny_flat: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    per_image = IMAGE_SIZE * IMAGE_SIZE
    monkeypatch.setattr(store_module, "_available_memory_bytes", lambda: 20 * per_image)
    index = scan_folder(tiny_flat)
    store = load_store(index, Preprocessing(image_size=IMAGE_SIZE), budget_mb=4096)
    assert store.n_cached == 10
    reference = load_store(index, Preprocessing(image_size=IMAGE_SIZE), budget_mb=0)
    everything = torch.arange(len(store))
    assert torch.equal(store.get(everything), reference.get(everything))


def test_a_cache_that_cannot_be_allocated_shrinks_instead_of_failing(tiny_flat: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real_empty = torch.empty

    def empty(*size: Any, **kwargs: Any) -> torch.Tensor:
        shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
        if kwargs.get("dtype") == torch.uint8 and len(shape) == 4 and shape[0] > 40:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1474560 bytes")
        return real_empty(*size, **kwargs)

    monkeypatch.setattr(store_module.torch, "empty", empty)
    store = load_store(scan_folder(tiny_flat), Preprocessing(image_size=IMAGE_SIZE), budget_mb=4096)
    monkeypatch.undo()
    assert 0 < store.n_cached <= 40 and len(store) == 160
    assert store.get(torch.arange(160)).shape == (160, 1, IMAGE_SIZE, IMAGE_SIZE)
