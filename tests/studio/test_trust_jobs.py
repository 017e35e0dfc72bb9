"""Issue 22, trust: no surprise stops (Esc), one training job at a time, a status that says what is true."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication

from studio.panels.runs_panel import COLUMNS
from tests.studio.conftest import TINY, set_fields
from tests.studio.test_race import RACE_FIELDS, race_panel

STATUS = COLUMNS.index("Status")
LONG = {**TINY, "train.steps": 100_000, "train.val_every": 0, "train.checkpoint_every": 100_000}
STOP_KEYS = "Ctrl+."


def _start_long_run(window, qtbot):
    set_fields(window, LONG)
    assert window.start_training() is not None
    qtbot.waitUntil(lambda: window.last_step >= 2, timeout=120_000)


def _status_cell(window) -> str:
    panel = window.runs_panel
    return panel.table.item(panel.row_of(window.current_run_dir), STATUS).text()


def test_esc_in_a_form_field_does_not_stop_the_run_and_the_stop_shortcut_does(window, qtbot):
    assert window.stop_action.shortcut() == QKeySequence(STOP_KEYS)
    assert QKeySequence(Qt.Key.Key_Escape) not in window.stop_action.shortcuts()
    assert STOP_KEYS in window.training_panel.stop_button.toolTip()
    assert "Esc)" not in window.training_panel.stop_button.toolTip()
    _start_long_run(window, qtbot)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    field = window.algorithm_panel.field("train.steps").widget
    field.setFocus()
    qtbot.keyClick(field, Qt.Key.Key_Escape)  # cancelling an edit
    qtbot.keyClick(window.runs_panel.table, Qt.Key.Key_Escape)
    qtbot.wait(800)
    assert window.worker is not None and window.training_panel.state == "running"
    with qtbot.waitSignal(window.training_ended, timeout=60_000) as ended:
        qtbot.keyClick(field, Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    assert ended.args == ["stopped"]
    qtbot.waitUntil(lambda: window.worker is None, timeout=60_000)
    record = window.store.list_runs()[0]
    assert record.status == "stopped" and record.last_checkpoint.is_file()  # the stop keeps the checkpoint


def test_a_paused_run_reads_paused_in_the_runs_table(window, qtbot):
    _start_long_run(window, qtbot)
    assert _status_cell(window) == "running"
    with qtbot.waitSignal(window.worker.held, timeout=60_000, check_params_cb=lambda held: held):
        window.toggle_pause()
    assert _status_cell(window) == "paused"
    window.runs_panel.refresh()  # re-read from disk: still what is true
    assert _status_cell(window) == "paused"
    window.toggle_pause()
    assert _status_cell(window) == "running"
    with qtbot.waitSignal(window.training_ended, timeout=60_000):
        window.stop_training()
    qtbot.waitUntil(lambda: window.worker is None, timeout=60_000)
    assert window.runs_panel.table.item(0, STATUS).text() == "stopped"


def test_train_is_disabled_with_a_reason_while_a_race_runs(window, qtbot):
    set_fields(window, {**RACE_FIELDS, "train.steps": 100_000, "train.val_every": 0})
    panel = race_panel(window)
    panel.set_algorithms(["protonet", "simpleshot"])
    panel.test_episodes.setValue(3)
    assert window.train_action.isEnabled() and window.training_panel.train_button.isEnabled()
    assert panel.start() is not None
    try:
        assert not window.training_panel.train_button.isEnabled()
        assert not window.train_action.isEnabled()
        assert "the Race tab is training" in window.training_panel.blocked_message
        assert window.training_panel.message_label.isVisibleTo(window)
        assert window.start_training() is None  # nor by a direct call (Ctrl+Enter, scripts)
        assert window.worker is None
    finally:
        with qtbot.waitSignal(panel.race_ended, timeout=120_000):
            panel.stop()
        qtbot.waitUntil(lambda: not panel.is_racing(), timeout=120_000)
    assert window.training_panel.train_button.isEnabled() and window.train_action.isEnabled()
    assert window.training_panel.blocked_message == ""


def test_start_race_is_disabled_with_a_reason_while_a_run_trains(window, qtbot):
    panel = race_panel(window)
    panel.set_algorithms(["protonet", "simpleshot"])
    assert panel.start_button.isEnabled()
    _start_long_run(window, qtbot)
    assert not panel.start_button.isEnabled()
    assert "training run" in panel.start_button.toolTip()
    assert "training run" in panel.blocked_label.text() and panel.blocked_label.isVisibleTo(panel)
    with qtbot.waitSignal(window.training_ended, timeout=60_000):
        window.stop_training()
    qtbot.waitUntil(lambda: window.worker is None, timeout=60_000)
    assert panel.start_button.isEnabled()
    assert not panel.blocked_label.isVisibleTo(panel)
