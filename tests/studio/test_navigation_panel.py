"""The Navigation view: the shipped policies, clicking a goal (and refusing one outside the square), the
step slider and Play, and Train in a worker with live progress."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from engine.rl.store import load_policies
from studio.panels.navigation_panel import ADAPT_STEPS, ASSETS, NavigationPanel

torch.set_num_threads(1)


@pytest.fixture
def panel(qtbot) -> Iterator[NavigationPanel]:
    widget = NavigationPanel(None)
    qtbot.addWidget(widget)
    widget.resize(1400, 720)
    widget.show()
    qtbot.waitExposed(widget)
    wait_adapted(qtbot, widget)
    yield widget
    widget.stop_playing()
    widget.cancel_training()
    for job in (widget._training, widget._adapt):   # no worker may outlive the test
        assert job.wait_all(60_000)


def wait_adapted(qtbot, panel: NavigationPanel) -> None:
    qtbot.waitUntil(lambda: panel.result is not None and not panel.is_adapting(), timeout=60_000)


def drawn_path(panel: NavigationPanel, kind: str, step: int) -> np.ndarray:
    x, y = panel.planes[kind].paths[step].getData()
    return np.stack([x, y], axis=1) if x is not None and len(x) else np.zeros((0, 2))


def test_the_shipped_policies_are_adapted_to_the_default_goal(panel: NavigationPanel) -> None:
    shipped = load_policies(ASSETS)
    assert set(panel.policies) == {"maml", "reptile", "pretrained"}
    assert panel.policies["maml"].iterations_done == shipped["maml"].iterations_done
    assert panel.result.paths["maml"].shape == (ADAPT_STEPS + 1, 101, 2)
    assert "shipped policies" in panel.policies_label.text()


def test_clicking_a_plane_sets_the_goal_and_the_paths_change(qtbot, panel: NavigationPanel) -> None:
    panel.step_slider.setValue(1)
    before = drawn_path(panel, "maml", 1)
    plane = panel.planes["reptile"]
    with qtbot.waitSignal(panel.adapted, timeout=60_000):
        qtbot.mouseClick(plane.viewport(), Qt.MouseButton.LeftButton, pos=plane.pixel_of(-0.4, 0.3))
    assert panel.goal == pytest.approx((-0.4, 0.3), abs=0.02)
    assert panel.result.goal == panel.goal
    goal_x, goal_y = panel.planes["maml"].goal.getData()              # every plane shows the goal
    assert (goal_x[0], goal_y[0]) == pytest.approx(panel.goal)
    after = drawn_path(panel, "maml", 1)
    assert after.shape == before.shape and not np.allclose(after, before)
    end = after[-1]
    assert np.linalg.norm(end - np.array(panel.goal)) < np.linalg.norm(before[-1] - np.array(panel.goal))
    assert panel.goal_label.text() == f"Goal ({panel.goal[0]:+.2f}, {panel.goal[1]:+.2f})"


def test_a_click_outside_the_square_is_refused_with_a_clear_message(qtbot, panel: NavigationPanel) -> None:
    goal, result = panel.goal, panel.result
    plane = panel.planes["maml"]
    qtbot.mouseClick(plane.viewport(), Qt.MouseButton.LeftButton, pos=plane.pixel_of(0.62, 0.0))
    text = panel.message_label.text()
    assert text.startswith("goal: (0.6") and "outside the task family's square [-0.5, 0.5]^2" in text
    assert panel.goal == goal and panel.result is result and not panel.is_adapting()
    with qtbot.waitSignal(panel.adapted, timeout=60_000):
        assert panel.set_goal(0.1, 0.1)
    assert panel.message_label.text() == ""


def test_the_slider_shows_the_paths_up_to_its_step(panel: NavigationPanel) -> None:
    panel.step_slider.setValue(0)
    assert len(drawn_path(panel, "maml", 0)) == 101 and len(drawn_path(panel, "maml", 1)) == 0
    panel.step_slider.setValue(2)
    for step in range(3):
        np.testing.assert_allclose(drawn_path(panel, "pretrained", step), panel.result.paths["pretrained"][step],
                                   rtol=1e-6)
    assert len(drawn_path(panel, "maml", 3)) == 0
    x, y = panel.planes["maml"].episodes.getData()       # the current step's 20 episodes, thin
    np.testing.assert_allclose(np.stack([x, y], 1), panel.result.episodes["maml"][2].reshape(-1, 2), rtol=1e-6)
    assert panel.step_label.text() == f"step 2 / {ADAPT_STEPS}"
    assert f"return {panel.result.returns['maml'][2]:.1f} after 2 steps" in panel.planes["maml"].getPlotItem().titleLabel.text


def test_play_steps_through_zero_to_three(qtbot, panel: NavigationPanel) -> None:
    panel.step_slider.setValue(2)
    seen: list[int] = []
    panel.step_slider.valueChanged.connect(seen.append)
    panel.play_timer.setInterval(20)     # the view uses 600 ms per step; the test need not wait
    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    assert panel.is_playing() and panel.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: not panel.is_playing(), timeout=20_000)
    assert seen == [0, 1, 2, 3] and panel.play_button.text() == "Play"
    np.testing.assert_allclose(drawn_path(panel, "maml", 3), panel.result.paths["maml"][3], rtol=1e-6)


def test_train_emits_progress_draws_the_curve_and_replaces_the_policy(qtbot, panel: NavigationPanel) -> None:
    panel.algorithm_combo.setCurrentIndex(panel.algorithm_combo.findData("pretrained"))
    panel.iters_spin.setValue(3)
    progress: list[tuple[int, int]] = []
    old_path = panel.result.paths["pretrained"].copy()
    panel.training_progress.connect(lambda done, total: progress.append((done, total)))
    with qtbot.waitSignal(panel.policies_changed, timeout=300_000) as changed:
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        assert panel.is_training() and not panel.train_button.isEnabled() and panel.progress.isVisible()
    assert changed.args[0].startswith("pre-trained trained here")
    assert progress and progress[-1] == (3, 3)
    assert panel.policies["pretrained"].iterations_done == 3
    x, _y = panel.training_curve.before.getData()
    assert list(x) == [1, 2, 3]
    wait_adapted(qtbot, panel)
    assert not np.allclose(panel.result.paths["pretrained"], old_path)
    assert panel.train_button.isEnabled() and panel.progress.isHidden()


def test_cancelled_training_keeps_the_policies(qtbot, panel: NavigationPanel) -> None:
    policies = panel.policies
    panel.start_training(100_000)
    panel.cancel_training()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=120_000)
    assert panel.policies is policies and "cancelled" in panel.policies_label.text()


def test_a_corrupt_policy_file_is_named_and_the_policies_shown_are_kept(tmp_path, panel: NavigationPanel) -> None:
    for kind in ("maml", "reptile", "pretrained"):
        (tmp_path / f"navigation_{kind}.pt").write_bytes((ASSETS / f"navigation_{kind}.pt").read_bytes())
    corrupt = tmp_path / "navigation_reptile.pt"
    corrupt.write_bytes(corrupt.read_bytes()[:500])
    policies = panel.policies
    assert not panel.load_shipped_policies(tmp_path)
    assert f"{corrupt}: not a navigation policy file" in panel.policies_label.text()
    assert panel.policies is policies
