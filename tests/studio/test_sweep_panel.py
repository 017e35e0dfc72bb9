"""The Sweep view: trials appear as they finish, pruned ones marked, Train best starts a run, a trial's run
opens on a double click, and a sweep a CLI process runs on the same storage shows up live."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.sweep import open_study

from .conftest import TINY, set_fields

FIELDS = {**TINY, "train.val_every": 2, "train.val_episodes": 4, "train.steps": 40}
REPO = Path(__file__).resolve().parents[2]


def sweep_panel(window: Any) -> Any:
    panel = window.views["Sweep"]
    window.center_tabs.setCurrentWidget(panel)
    return panel


def state_cell(panel: Any, number: int) -> Any:
    for row in range(panel.table.rowCount()):
        if panel.table.item(row, 0).text() == str(number):
            return panel.table.item(row, 1)
    return None


def test_trials_appear_as_they_finish_pruned_marked_and_train_best_starts_a_run(qtbot, window):
    set_fields(window, FIELDS)
    panel = sweep_panel(window)
    panel.space_form.tick("task.val_n_way", low=2, high=8, log=False)
    panel.trials.setValue(2)
    panel.steps.setValue(4)
    panel.pruner.setCurrentText("median")
    panel.startup.setValue(1)
    panel.study.setText("gui")
    study = open_study(panel.settings())
    study.enqueue_trial({"task.val_n_way": 2})  # 2-way validation beats 8-way: the second trial must be pruned
    study.enqueue_trial({"task.val_n_way": 8})
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.worker is not None and not panel.start_button.isEnabled() and panel.stop_button.isEnabled()
    assert not window.train_action.isEnabled()  # one training job at a time, and the reason names this tab
    assert "the Sweep tab is training" in window.training_panel.blocked_message
    qtbot.waitUntil(lambda: state_cell(panel, 0) is not None and state_cell(panel, 0).text() == "complete",
                    timeout=180_000)
    assert panel.worker is not None  # the finished trial showed while the sweep still ran
    qtbot.waitUntil(lambda: panel.worker is None, timeout=180_000)
    assert window.shown_errors == []
    qtbot.waitUntil(lambda: state_cell(panel, 1) is not None and state_cell(panel, 1).text().startswith("pruned"),
                    timeout=30_000)
    assert state_cell(panel, 1).text() == "pruned at step 2"
    assert state_cell(panel, 1).foreground().color().name() == "#8a8a8a"  # greyed
    (pruned,) = panel.plots.pruned_items
    assert list(pruned.xData) == [2]  # its curve ends where it was stopped
    assert list(panel.plots.curve_items[0].xData) == [2, 4]
    # the table sorts by a column's values when its header is clicked
    panel.table.sortItems(0, Qt.SortOrder.DescendingOrder)
    assert [panel.table.item(r, 0).text() for r in range(2)] == ["1", "0"]
    # double-click a trial: its run opens in the window
    run_dir = Path(panel.row_of(0).run_dir)
    row = next(r for r in range(2) if panel.table.item(r, 0).text() == "0")
    rect = panel.table.visualItemRect(panel.table.item(row, 1))
    QTest.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # as a user: press
    QTest.mouseDClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # then the double
    assert window.current_run_dir == run_dir and window.center_tabs.currentWidget() is window.plots
    # Train best: the best trial's values in the forms, the forms' steps, a run started
    window.center_tabs.setCurrentWidget(panel)
    assert panel.best_button.isEnabled()
    with qtbot.waitSignal(window.training_started, timeout=60_000):
        QTest.mouseClick(panel.best_button, Qt.MouseButton.LeftButton)
    assert window.worker is not None
    assert window.worker.config.task.val_n_way == 2 and window.worker.config.train.steps == FIELDS["train.steps"]
    window.worker.stop()
    qtbot.waitUntil(lambda: window.worker is None, timeout=120_000)


def test_a_sweep_run_from_the_cli_on_the_same_storage_shows_up_live(qtbot, window, tmp_path):
    panel = sweep_panel(window)
    panel.study.setText("from-cli")
    panel.poll()
    qtbot.waitUntil(lambda: panel.summary_label.text() == "No trials yet in this study.", timeout=30_000)
    command = [sys.executable, "-m", "engine", "sweep", "--dataset", "builtin:glyphs", "--image-size", "16",
               "--steps", "2", "--val-every", "2", "--val-episodes", "2", "--n-way", "3", "--n-query", "2",
               "--meta-batch-size", "1", "--hidden-channels", "8", "--runs-dir", str(window.store.root),
               "--study", "from-cli", "--trials", "1", "--param", "algorithm.lr=1e-4:1e-2:log", "--quiet"]
    with open(tmp_path / "cli.log", "w") as output:
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        qtbot.waitUntil(lambda: state_cell(panel, 0) is not None and state_cell(panel, 0).text() == "complete",
                        timeout=240_000)
    finally:
        assert process.wait(120) == 0, (tmp_path / "cli.log").read_text()
    assert panel.table.horizontalHeaderItem(4).text() == "algorithm.lr"
    assert "1 complete" in panel.summary_label.text()
