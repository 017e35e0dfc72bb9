"""Adding an algorithm is one module plus one registry entry: a throwaway algorithm, registered here and
nowhere else, is offered and works in every view of the real window with no studio edit.

The throwaway is Reptile's implementation under a new name, title and config class (so it has an inner
loop): the form offers it with its own fields, the race offers it by its declared title, and a run trained
with it is inspected, scrubbed and adapted by the Episodes, Inner loop and Adapt views.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from PySide6.QtCore import Qt

from engine.algorithms import registry
from engine.algorithms.reptile import Reptile
from engine.config import ReptileConfig, RunConfig
from engine.training.run_store import RunStore, default_runs_root
from tests.studio.conftest import make_window

NAME = "throwaway-views"
torch.set_num_threads(1)


@dataclass
class ThrowawayConfig(ReptileConfig):
    name: ClassVar[str] = NAME
    title: ClassVar[str] = "Throwaway test algorithm"
    summary: ClassVar[str] = "Registered by a test only: Reptile under another name."

    inner_steps: int = 2
    test_inner_steps: int = 3


class Throwaway(Reptile):
    short_title = "Throwaway"


@pytest.fixture(scope="module")
def registered() -> Any:
    registry.register(ThrowawayConfig, Throwaway)
    yield NAME
    registry.unregister(NAME)


@pytest.fixture(scope="module")
def trained_run(registered: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run of the throwaway on the built-in glyphs (trained in this process, where it is registered)."""
    from engine.training.trainer import Trainer
    from studio.datasets import load_data_cached

    config = RunConfig(algorithm=ThrowawayConfig())
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 3, 1, 2, 1
    config.model.hidden_channels = 16
    config.train.steps, config.train.val_every, config.train.val_episodes = 4, 0, 2
    config.train.checkpoint_every, config.train.num_threads = 4, 1
    config.name = "throwaway run"
    store = RunStore(tmp_path_factory.mktemp("throwaway-runs"))
    summary = Trainer(config, run_dir=store.new_run_dir(config.name), data=load_data_cached(config.data)).run()
    assert summary.status == "finished", summary.message
    return store.root


@pytest.fixture
def window(trained_run: Path, qtbot: Any) -> Any:
    shutil.copytree(trained_run, default_runs_root())
    return make_window(qtbot)


def _run_dir(window: Any) -> Path:
    (record,) = [r for r in window.store.list_runs() if r.algorithm == NAME]
    return record.run_dir


def test_the_algorithm_form_offers_it_with_its_own_fields(window: Any) -> None:
    panel = window.algorithm_panel
    assert panel.algorithm_combo.findData(NAME) >= 0
    panel.set_algorithm(NAME)
    assert panel.summary_label.text().startswith(ThrowawayConfig.summary)
    assert panel.field("algorithm.test_inner_steps").value() == 3
    config = window.current_config()
    assert isinstance(config.algorithm, ThrowawayConfig)


def test_the_race_offers_it_by_its_declared_title(window: Any) -> None:
    box = window.views["Race"].checks[NAME]
    assert box.text() == "Throwaway"


def test_the_episodes_view_inspects_its_run(window: Any, qtbot: Any) -> None:
    view = window.views["Episodes"]
    window.center_tabs.setCurrentWidget(view)
    assert view.run_picker.select(_run_dir(window))
    view.shape_form.spin("n_way").setValue(3)
    view.shape_form.spin("episodes").setValue(4)
    with qtbot.waitSignal(view.inspected, timeout=120_000):
        qtbot.mouseClick(view.inspect_button, Qt.MouseButton.LeftButton)
    assert view.inspection.n_episodes == 4 and view.inspection.algorithm == NAME


def test_the_inner_loop_view_scrubs_its_run(window: Any, qtbot: Any) -> None:
    view = window.views["Inner loop"]
    window.center_tabs.setCurrentWidget(view)
    assert view.run_picker.select(_run_dir(window))
    assert "Throwaway test algorithm" in view.run_picker.combo.currentText()
    view.steps_spin.setValue(3)
    view.shape_form.spin("n_way").setValue(3)
    view.shape_form.spin("n_query").setValue(2)
    with qtbot.waitSignal(view.scrubbed, timeout=120_000):
        assert view.start() is not None
    assert view.plot.n_points() == 4 and view.slider.maximum() == 3


def test_the_adapt_view_adapts_its_checkpoint_and_predicts(window: Any, qtbot: Any, tiny_flat: Path) -> None:
    view = window.adapt_panel
    with qtbot.waitSignal(view.model_loaded, timeout=60_000):
        assert view.set_run(_run_dir(window))
    assert view.session.checkpoint.config.algorithm.name == NAME
    for name in ("class000", "class004"):
        view.add_files(view.add_class(name), sorted((tiny_flat / name).glob("*.png"))[:2])
    view.add_test_files(sorted((tiny_flat / "class000").glob("*.png"))[5:7])
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=60_000)
    assert view.is_current() and view.session.class_names() == ["class000", "class004"]
    assert len(view.session.predictions()) == 2
    assert all(len(tile.probabilities) == 2 for tile in view.test_zone.tiles)
