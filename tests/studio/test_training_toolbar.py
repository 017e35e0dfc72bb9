"""The training toolbar keeps its shape (issue 22): Pause becoming Resume (and Stop becoming Force
stop) moves no button, and the progress text is elided in the middle to its space, in full in its
tooltip, at 1366x768 as at 1920x1080."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests.studio.conftest import TINY, set_fields

LONG = {**TINY, "train.steps": 100_000, "train.val_every": 0, "train.checkpoint_every": 100_000}


def _layout(panel) -> dict[str, tuple[int, int]]:
    """x and width of each toolbar widget, in the panel's coordinates, once layouts settled."""
    QApplication.sendPostedEvents()
    QApplication.processEvents()
    widgets = {"train": panel.train_button, "pause": panel.pause_button, "stop": panel.stop_button,
               "device": panel.device_panel, "progress": panel.progress}
    return {name: (widget.mapTo(panel, QPoint(0, 0)).x(), widget.width()) for name, widget in widgets.items()}


def test_pause_and_resume_clicks_move_no_toolbar_button(window, qtbot):
    panel = window.training_panel
    window.resize(1366, 768)
    set_fields(window, LONG)
    window.start_training()
    qtbot.waitUntil(lambda: panel.state == "running" and window.last_step >= 1, timeout=120_000)
    running = _layout(panel)
    QTest.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert panel.state == "paused" and panel.pause_button.text() == "Resume"
    assert _layout(panel) == running
    QTest.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert panel.state == "running" and panel.pause_button.text() == "Pause"
    assert _layout(panel) == running
    panel.can_force_stop = True
    QTest.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    assert panel.state == "stopping"
    panel._offer_force_stop()  # as the force-stop delay does if the run has not stopped by then
    if panel.state == "stopping":  # (the tiny run may have stopped already)
        assert panel.stop_button.text() == "Force stop"
        assert _layout(panel) == running
    qtbot.waitUntil(lambda: window.worker is None, timeout=60_000)


def _metrics(step: int) -> SimpleNamespace:
    return SimpleNamespace(step=step, total_steps=10_000_000, episodes_per_second=12_345.6,
                           elapsed_s=3 * 3600 + 309, eta_s=250 * 3600 + 59 * 60)


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_the_progress_text_never_runs_past_its_space(window, qtbot, size):
    panel = window.training_panel
    window.resize(*size)
    qtbot.waitUntil(lambda: window.width() == size[0])
    panel.set_state("running")
    panel.show_step(_metrics(1_234_567))
    panel.show_latest()
    label = panel.rate_label
    full = label.full_text()
    assert "12,345.6 episodes/s" in full and "left" in full
    QApplication.processEvents()
    shown_width = label.fontMetrics().horizontalAdvance(label.text())
    assert shown_width <= label.contentsRect().width()
    assert label.mapTo(window, QPoint(label.width(), 0)).x() <= window.width()  # inside the window
    if label.is_elided():
        assert "…" in label.text() and label.toolTip().startswith(full)
        assert label.text().startswith("12,345.6") and label.text().endswith("left")
    else:
        assert label.text() == full
    panel.set_state("idle")


def test_a_narrow_toolbar_elides_the_progress_text_in_the_middle(qtbot):
    from studio.panels.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 40)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_state("running")
    panel.show_step(_metrics(1_234_567))
    panel.show_latest()
    label = panel.rate_label
    qtbot.waitUntil(lambda: label.is_elided())
    assert label.fontMetrics().horizontalAdvance(label.text()) <= label.contentsRect().width()
    assert label.mapTo(panel, QPoint(label.width(), 0)).x() <= panel.width()
    shown = label.text()
    assert "…" in shown and shown.startswith("12,3") and shown.endswith("left")  # both ends kept
    assert label.toolTip().startswith(label.full_text())  # the full text
    panel.resize(1900, 40)
    qtbot.waitUntil(lambda: not label.is_elided())
    assert label.text() == label.full_text() and not label.toolTip().startswith(label.full_text())
