"""The "Inner loop" view: a tiny trained MAML run scrubbed step by step in the real window."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.scrubbing import sample_test_episode
from engine.training.checkpoint import load_algorithm
from engine.training.run_store import RunStore, default_runs_root
from studio.panels.scrubber_panel import ScrubberPanel
from studio.widgets.scrubbed_episode import short_class_name
from tests.studio.conftest import make_window

STEPS = 8


def _config(algorithm: str, steps: int) -> RunConfig:
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[algorithm]())
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 5, 1, 5, 1
    config.model.hidden_channels = 16
    config.train.steps, config.train.val_every, config.train.val_episodes = steps, 0, 5
    config.train.checkpoint_every, config.train.num_threads = steps, 1
    return config


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory) -> Path:
    """A MAML run (20 steps on the built-in glyphs) and a ProtoNet run (no inner loop), trained once."""
    from engine.training.trainer import Trainer
    from studio.datasets import load_data_cached

    root = tmp_path_factory.mktemp("scrub-runs")
    store = RunStore(root)
    for name, algorithm, steps in (("tiny maml", "maml", 20), ("tiny protonet", "protonet", 2)):
        config = _config(algorithm, steps)
        config.name = name
        summary = Trainer(config, run_dir=store.new_run_dir(name), data=load_data_cached(config.data)).run()
        assert summary.status == "finished", summary.message
    return root


@pytest.fixture
def panel(trained_runs: Path, qtbot: Any) -> ScrubberPanel:
    shutil.copytree(trained_runs, default_runs_root())
    window = make_window(qtbot)
    view = window.views["Inner loop"]
    window.center_tabs.setCurrentWidget(view)
    return view


def _run(qtbot: Any, panel: ScrubberPanel, steps: int = STEPS) -> Any:
    panel.steps_spin.setValue(steps)
    panel.shape_form.spin("n_query").setValue(2)
    panel.seed_spin.setValue(3)
    with qtbot.waitSignal(panel.scrubbed, timeout=120_000):
        assert panel.start() is not None
    return panel.output


def _independent_predictions(panel: ScrubberPanel, steps: list[int]) -> tuple[dict[int, torch.Tensor], Any]:
    """adapt(steps=k).predict(query) for each k on the same episode, drawn and adapted outside the panel."""
    from studio.datasets import load_data_cached

    algorithm, checkpoint = load_algorithm(panel.output.checkpoint)
    data = load_data_cached(checkpoint.config.data, split=checkpoint.split)  # decoded once per session
    spin = panel.shape_form.spin
    episode = sample_test_episode(checkpoint, n_way=spin("n_way").value(), n_shot=spin("n_shot").value(),
                                  n_query=spin("n_query").value(), seed=panel.seed_spin.value(), data=data)
    task = episode.task
    return {k: algorithm.adapt(task.support_x, task.support_y, steps=k).predict(task.query_x) for k in steps}, episode


def test_lists_only_runs_with_an_inner_loop_and_follows_the_runs_table(panel: ScrubberPanel) -> None:
    assert panel.run_picker.combo.count() == 1
    assert "tiny maml" in panel.run_picker.combo.currentText() and "MAML" in panel.run_picker.combo.currentText()
    assert panel.steps_spin.value() == 10  # 2 x 3 test steps, at least 10
    runs = panel.main_window.runs_panel
    protonet = next(r for r in runs.records if r.algorithm == "protonet")
    maml = next(r for r in runs.records if r.algorithm == "maml")
    runs.select_runs([protonet.run_dir])
    assert "Prototypical Networks" in panel.status_label.text() and "inner loop" in panel.status_label.text()
    panel.run_picker.combo.setCurrentIndex(-1)
    runs.select_runs([maml.run_dir])
    assert panel.run_picker.combo.currentData() == str(maml.run_dir)
    assert "tiny maml" in panel.status_label.text()


def test_step_zero_accuracy_and_scrubbed_predictions_match_adapt(panel: ScrubberPanel, qtbot: Any) -> None:
    output = _run(qtbot, panel)
    assert panel.plot.n_points() == STEPS + 1
    assert panel.slider.maximum() == STEPS
    assert output.trajectory.train_steps == 1 and output.trajectory.default_steps == 3

    shown: dict[int, list[str]] = {}
    predictions, episode = _independent_predictions(panel, [0, 3, STEPS])
    for step, expected in predictions.items():
        panel.slider.setValue(step)
        accuracy = (expected.argmax(1) == episode.task.query_y).float().mean().item()
        assert f"Step {step}: query accuracy <b>{accuracy:.1%}</b>" in panel.readout.text()
        assert panel.plot.markers[0].value() == step
        names = [short_class_name(n) for n in episode.class_names]
        tiles = panel.episode_view.tiles
        assert len(tiles) == len(episode.task.query_y) == 10
        for tile, row, label in zip(tiles, expected, episode.task.query_y):
            predicted = int(row.argmax())
            assert tile.predicted_name == names[predicted]
            assert tile.probability == pytest.approx(float(row[predicted]), abs=1e-6)
            assert tile.correct == (predicted == int(label))
            assert tile.text().startswith("✓" if predicted == int(label) else "✗")
        shown[step] = [tile.text() for tile in tiles]
    assert shown[0] != shown[STEPS], "scrubbing to another step must change the shown predictions"


def test_dragging_the_marker_scrubs_and_cancel_keeps_the_steps_done(panel: ScrubberPanel, qtbot: Any) -> None:
    _run(qtbot, panel, steps=4)
    panel.plot.marker_dragged.emit(2)
    assert panel.slider.value() == 2 and "step 2 / 4" in panel.step_label.text()
    panel.steps_spin.setValue(400)
    with qtbot.waitSignal(panel.scrubbed, timeout=120_000):
        panel.start()
        panel.cancel()  # before the first step is done: only step 0 is kept
    assert panel.output.trajectory.stopped and panel.output.trajectory.steps == 0
    assert panel.slider.maximum() == 0 and panel.plot.n_points() == 1
    assert "Stopped at step 0 of 400" in panel.status_label.text()
