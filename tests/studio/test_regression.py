"""The Regression view: shipped models, support points (drawn, clicked, undone), the K spin box that always
counts them, the step slider, Play, retraining in a worker, and button texts that say what they do."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton

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
    assert len(panel.support_x) == 5 and panel.k_spin.text() == "K = 5 support points"
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
    assert panel.k_spin.text() == "K = 1 support point"
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


def test_the_k_spin_box_always_shows_the_number_of_support_points(qtbot, panel: RegressionPanel) -> None:
    def k_shown() -> int:
        n = len(panel.support_x)
        assert panel.k_spin.text() == f"K = {n} support point{'s' if n != 1 else ''}"
        return panel.k_spin.value()

    assert k_shown() == len(panel.support_x) == 5
    first_points = list(panel.support_x)
    panel.k_spin.setFocus()
    qtbot.keyClick(panel.k_spin, Qt.Key.Key_Up)              # raising K adds one random point
    assert k_shown() == len(panel.support_x) == 6 and panel.support_x[:5] == first_points
    qtbot.keyClick(panel.k_spin, Qt.Key.Key_Down)
    qtbot.keyClick(panel.k_spin, Qt.Key.Key_Down)            # lowering K removes the last points
    assert k_shown() == len(panel.support_x) == 4 and panel.support_x == first_points[:4]
    panel.k_spin.lineEdit().selectAll()
    qtbot.keyClicks(panel.k_spin, "9")
    qtbot.keyClick(panel.k_spin, Qt.Key.Key_Return)          # a typed K counts once it is entered
    assert k_shown() == len(panel.support_x) == 9 and panel.support_x[:4] == first_points[:4]
    wait_fit(qtbot, panel)
    assert len(panel.plots["maml"].points.data) == 9

    plot = panel.plots["maml"]
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=plot.pixel_of(-2.0, 0.0))
    assert k_shown() == 10                                   # a click adds a point: K follows
    qtbot.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)
    assert k_shown() == 9
    qtbot.mouseClick(panel.new_sine_button, Qt.MouseButton.LeftButton)
    assert k_shown() == 9                                    # a new sine keeps K
    qtbot.mouseClick(panel.clear_button, Qt.MouseButton.LeftButton)
    assert k_shown() == 0 and panel.support_x == [] and not panel.draw_button.isEnabled()
    qtbot.mouseClick(panel.new_sine_button, Qt.MouseButton.LeftButton)
    assert k_shown() == 5                                    # from no points, a new sine draws the paper's K
    wait_fit(qtbot, panel)


def _visible_button_texts(root) -> list[str]:
    return sorted(button.text() for button in root.findChildren(QAbstractButton)
                  if button.isVisible() and button.text())


def test_no_two_buttons_of_the_window_share_a_text_on_the_regression_and_adapt_tabs(qtbot) -> None:
    from tests.studio.conftest import make_window

    window = make_window(qtbot)
    tabs = window.center_tabs
    for title in ("Regression", "Adapt"):   # the Adapt tab without classes: no class card buttons
        page = next(tabs.widget(i) for i in range(tabs.count()) if tabs.tabText(i) == title)
        tabs.setCurrentWidget(page)
        qtbot.waitUntil(page.isVisible, timeout=10_000)
        texts = _visible_button_texts(window)
        assert "Train" in texts and len(texts) == len(set(texts)), f"{title}: {texts}"
        if title == "Regression":
            assert {"Retrain both models", "Clear points"} <= set(texts)
