"""The Regression view: shipped models, support points (drawn, clicked, undone), the step slider, Play,
and retraining in a worker."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from engine.regression import load_models
from studio.panels.regression_panel import ASSETS, GRID_POINTS, TEST_STEPS, RegressionPanel

torch.set_num_threads(1)


@pytest.fixture
def panel(qtbot) -> Iterator[RegressionPanel]:
    widget = RegressionPanel(None)
    qtbot.addWidget(widget)
    widget.resize(1300, 700)
    widget.show()
    qtbot.waitExposed(widget)
    wait_fit(qtbot, widget)
    yield widget
    widget.stop_playing()
    widget.cancel_training()
    for job in (widget._training, widget._fits):  # no worker may outlive the test
        assert job.wait(60_000)


def wait_fit(qtbot, panel: RegressionPanel) -> None:
    qtbot.waitUntil(lambda: not panel.is_fitting(), timeout=30_000)


def curve(panel: RegressionPanel, kind: str = "maml") -> np.ndarray:
    return np.array(panel.plots[kind].fit_curve.getData()[1], copy=True)


def test_panel_loads_the_shipped_models(panel: RegressionPanel) -> None:
    shipped = load_models(ASSETS)
    assert panel.models_source == "shipped models"
    for kind in ("maml", "pretrained"):
        assert panel.models[kind].steps_done == shipped[kind].steps_done
        assert torch.equal(panel.models[kind].params["layers.2.weight"], shipped[kind].params["layers.2.weight"])
        assert panel.trajectories[kind].shape == (TEST_STEPS + 1, GRID_POINTS)
        assert len(curve(panel, kind)) == GRID_POINTS
    assert f"{shipped['maml'].steps_done:,} steps" in panel.models_label.text()


def test_drawing_k_points_and_stepping_changes_the_curves(qtbot, panel: RegressionPanel) -> None:
    panel.k_spin.setValue(5)
    qtbot.mouseClick(panel.draw_button, Qt.MouseButton.LeftButton)
    wait_fit(qtbot, panel)
    assert len(panel.support_x) == 5 and panel.count_label.text() == "K = 5 support points"
    assert len(panel.plots["maml"].points.data) == 5
    panel.step_slider.setValue(0)
    before = {kind: curve(panel, kind) for kind in ("maml", "pretrained")}
    mse_before = panel.mse_at("maml")
    panel.step_slider.setValue(1)
    assert not np.allclose(curve(panel, "maml"), before["maml"])
    assert not np.allclose(curve(panel, "pretrained"), before["pretrained"])
    assert panel.mse_at("maml") != mse_before
    assert panel.plots["maml"].mse_text.textItem.toPlainText().startswith("step 1: MSE ")
    assert panel.step_label.text() == f"step 1 / {TEST_STEPS}"


def test_clicking_a_plot_adds_a_point_on_the_true_sine(qtbot, panel: RegressionPanel) -> None:
    panel.clear_points()
    wait_fit(qtbot, panel)
    assert panel.support_x == [] and not panel.undo_button.isEnabled()
    panel.step_slider.setValue(TEST_STEPS)
    unfitted = curve(panel)
    plot = panel.plots["pretrained"]
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=plot.pixel_of(1.5, 0.0))
    assert len(panel.support_x) == 1 and abs(panel.support_x[0] - 1.5) < 0.1
    wait_fit(qtbot, panel)
    xs, ys = panel.plots["maml"].points.getData()      # both plots show the point
    expected_y = panel.task.true_curve(torch.tensor(panel.support_x)).numpy()
    np.testing.assert_allclose(ys, expected_y, rtol=1e-5)
    assert not np.allclose(curve(panel), unfitted)      # 10 steps towards the new point
    assert panel.count_label.text() == "K = 1 support point"
    qtbot.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)
    assert panel.support_x == []


def test_play_animates_to_step_ten(qtbot, panel: RegressionPanel) -> None:
    panel.draw_points()
    wait_fit(qtbot, panel)
    panel.step_slider.setValue(0)
    seen: list[int] = []
    panel.step_slider.valueChanged.connect(seen.append)
    panel.play_timer.setInterval(20)     # the view uses 300 ms per step; the test need not wait 3 s
    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    assert panel.is_playing() and panel.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: not panel.is_playing(), timeout=20_000)
    assert seen == list(range(1, TEST_STEPS + 1))
    assert panel.play_button.text() == "Play"
    np.testing.assert_array_equal(curve(panel), panel.trajectories["maml"][TEST_STEPS])


def test_train_retrains_both_models_in_a_worker(qtbot, panel: RegressionPanel) -> None:
    panel.step_slider.setValue(TEST_STEPS)
    shipped_curve = curve(panel)
    panel.train_steps_spin.setValue(20)
    with qtbot.waitSignal(panel.models_changed, timeout=120_000) as blocker:
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        assert panel.is_training() and not panel.train_button.isEnabled()
    assert blocker.args[0].startswith("trained here")
    assert {m.steps_done for m in panel.models.values()} == {20}
    wait_fit(qtbot, panel)
    assert not np.allclose(curve(panel), shipped_curve)
    assert panel.train_button.isEnabled() and panel.progress.isHidden()


def test_cancelled_training_keeps_the_models(qtbot, panel: RegressionPanel) -> None:
    models = panel.models
    panel.start_training(steps=1_000_000)
    panel.cancel_training()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=60_000)
    assert panel.models is models and "cancelled" in panel.models_label.text()
