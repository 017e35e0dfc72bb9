"""Issue 22, trust: the Evaluation view only ever shows the result of the run whose name is above it."""

from __future__ import annotations

import os

from tests.studio.conftest import make_window
from tests.studio.test_window_runs import _record, runs_window, trained_runs  # noqa: F401 (fixtures)


def _shown(panel):
    return (panel.accuracy_label.text(), panel.details_label.text(), panel.class_table.rowCount(),
            panel.gallery.count(), panel.confusion.matrix.shape)


def _evaluate_finished_run(window, qtbot, episodes: int):
    """Select the "finished run" in the Runs table and evaluate it over ``episodes`` episodes; returns it."""
    window.evaluation_panel.episodes_spin.setValue(episodes)
    finished = _record(window, "finished run")
    window.runs_panel.select_runs([finished.run_dir])
    with qtbot.waitSignal(window.evaluation_panel.evaluated, timeout=120_000):
        assert window.evaluate_run(finished) is not None
    return finished


def test_selecting_another_run_never_shows_the_previous_runs_evaluation(runs_window, qtbot):
    window = runs_window
    panel, runs = window.evaluation_panel, window.runs_panel
    panel.episodes_spin.setValue(8)
    finished, stopped = _record(window, "finished run"), _record(window, "stopped run")
    runs.select_runs([finished.run_dir])
    with qtbot.waitSignal(panel.evaluated, timeout=120_000):
        assert window.evaluate_run(finished) is not None
    evaluated = _shown(panel)
    assert "Test accuracy" in evaluated[0] and evaluated[2] > 0

    runs.select_runs([stopped.run_dir])  # another run: its name above, and none of the first run's numbers
    assert "stopped run" in panel.run_picker.text()
    assert "not evaluated yet" in panel.accuracy_label.text().lower()
    assert "Test accuracy" not in panel.accuracy_label.text()
    assert "checkpoint at step" not in panel.details_label.text()
    assert panel.class_table.rowCount() == 0 and panel.gallery.count() == 0
    assert panel.confusion.matrix.size == 0
    assert panel.output is None

    runs.select_runs([finished.run_dir])  # back: the run's own evaluation is shown again
    assert "finished run" in panel.run_picker.text()
    assert _shown(panel) == evaluated
    assert panel.output is not None and panel.output.run_dir == finished.run_dir


def test_the_other_checkpoint_is_not_shown_as_evaluated(runs_window, qtbot):
    window = runs_window
    panel = window.evaluation_panel
    _evaluate_finished_run(window, qtbot, 4)
    assert "Test accuracy" in panel.accuracy_label.text()
    panel.checkpoint_combo.setCurrentIndex(panel.checkpoint_combo.findData("last"))
    assert "not evaluated yet" in panel.accuracy_label.text().lower()
    assert panel.class_table.rowCount() == 0
    panel.checkpoint_combo.setCurrentIndex(panel.checkpoint_combo.findData("best"))
    assert "Test accuracy" in panel.accuracy_label.text()


def test_a_stored_evaluation_is_shown_after_a_restart_only_while_it_is_current(runs_window, qtbot):
    window = runs_window
    panel = window.evaluation_panel
    finished = _evaluate_finished_run(window, qtbot, 6)
    evaluated = _shown(panel)
    assert "Test accuracy" in evaluated[0] and "over 6 episodes" in evaluated[1]
    window.close()

    second = make_window(qtbot)  # a new window on the same runs: the run's stored evaluation, as it was
    panel = second.evaluation_panel
    assert panel.episodes_spin.value() != 6  # the form starts at its default
    second.runs_panel.select_runs([finished.run_dir])
    assert "finished run" in panel.run_picker.text()
    assert _shown(panel) == evaluated
    assert panel.episodes_spin.value() == 6  # the form shows the shape of the result shown

    panel.episodes_spin.setValue(7)  # another episode shape: not this result
    assert panel.accuracy_label.text() == "Not evaluated yet with this episode shape"
    assert "6 episodes" in panel.details_label.text() and panel.class_table.rowCount() == 0
    panel.episodes_spin.setValue(6)
    assert _shown(panel) == evaluated

    best = finished.checkpoint("best")  # the checkpoint file changes (a resumed run saved a new best)
    info = best.stat()
    os.utime(best, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    second.runs_panel.select_runs([])
    second.runs_panel.select_runs([finished.run_dir])
    assert panel.accuracy_label.text() == "Not evaluated yet"
    assert "another version of best.pt" in panel.details_label.text()
    assert panel.output is None and panel.class_table.rowCount() == 0
