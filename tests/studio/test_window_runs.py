"""The run history: persisted across restarts, overlays, open, rename, delete, continue, evaluation."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.config import RunConfig
from engine.training.callbacks import Callback, StepMetrics
from engine.training.control import RunControl
from engine.training.run_store import RunStore, default_runs_root
from studio.panels.runs_panel import COLUMNS
from tests.studio.conftest import make_window

STATUS = COLUMNS.index("Status")


class _StopAt(Callback):
    def __init__(self, control: RunControl, step: int) -> None:
        self.control, self.step = control, step

    def on_step(self, metrics) -> None:
        if metrics.step >= self.step:
            self.control.stop()


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory) -> Path:
    """Two runs trained headless once per module: one finished (20 steps), one stopped at step 6."""
    from engine.training.trainer import Trainer
    from studio.datasets import load_data_cached

    root = tmp_path_factory.mktemp("runs")
    store = RunStore(root)
    config = RunConfig.from_dict({
        "task": {"n_query": 5, "meta_batch_size": 1}, "model": {"hidden_channels": 16},
        "train": {"steps": 20, "val_every": 10, "val_episodes": 5, "checkpoint_every": 5, "num_threads": 1}})
    data = load_data_cached(config.data)
    config.name = "finished run"
    Trainer(config, run_dir=store.new_run_dir("finished"), data=data).run()
    config.name = "stopped run"
    control = RunControl()
    Trainer(config, run_dir=store.new_run_dir("stopped"), data=data, control=control,
            callbacks=[_StopAt(control, 6)]).run()
    return root


@pytest.fixture
def runs_window(trained_runs, qtbot):
    target = default_runs_root()
    shutil.copytree(trained_runs, target)
    return make_window(qtbot)


def _record(window, name):
    return next(r for r in window.store.list_runs() if r.name == name)


def test_history_survives_a_restart(runs_window, qtbot):
    table = runs_window.runs_panel.table
    names = sorted(table.item(r, 0).text() for r in range(table.rowCount()))
    assert names == ["finished run", "stopped run"]
    statuses = {table.item(r, 0).text(): table.item(r, STATUS).text() for r in range(table.rowCount())}
    assert statuses == {"finished run": "finished", "stopped run": "stopped"}
    runs_window.runs_panel.rename(_record(runs_window, "stopped run"), "renamed run")
    runs_window.close()
    second = make_window(qtbot)
    table = second.runs_panel.table
    assert sorted(table.item(r, 0).text() for r in range(table.rowCount())) == ["finished run", "renamed run"]


def test_selecting_runs_overlays_their_curves(runs_window):
    panel = runs_window.runs_panel
    panel.select_runs([r.run_dir for r in runs_window.store.list_runs()])
    assert len(panel.selected_records()) == 2
    assert runs_window.plots.n_overlays == 2
    loss_items = [item for item in runs_window.plots.loss_plot.listDataItems() if item.name() == "finished run"]
    assert len(loss_items) == 1 and len(loss_items[0].getData()[0]) == 20
    panel.table.clearSelection()
    assert runs_window.plots.n_overlays == 0


def test_open_run_shows_its_curves_and_config(runs_window):
    record = _record(runs_window, "finished run")
    runs_window.algorithm_panel.field("task.n_query").set_value(9)
    runs_window.open_run(record)
    assert runs_window.plots.n_points == 20
    assert list(runs_window.plots.val_x.view) == [10.0, 20.0]
    assert runs_window.current_config().task.n_query == 5
    assert runs_window.current_config().model.hidden_channels == 16


def test_inline_rename_and_delete_with_confirmation(runs_window):
    panel = runs_window.runs_panel
    record = _record(runs_window, "finished run")
    panel.table.item(panel.row_of(record.run_dir), 0).setText("best protonet")
    assert runs_window.store.record(record.run_dir).name == "best protonet"

    panel.select_runs([record.run_dir])
    asked = []
    panel.confirm = lambda title, text: asked.append(text) or False
    panel.delete_selected()
    assert record.run_dir.is_dir() and "best protonet" in asked[0]
    panel.confirm = lambda title, text: True
    panel.select_runs([record.run_dir])
    panel.delete_selected()
    assert not record.run_dir.exists()
    assert [r.name for r in runs_window.store.list_runs()] == ["stopped run"]
    assert panel.table.rowCount() == 1


def test_continue_a_stopped_run(runs_window, qtbot):
    record = _record(runs_window, "stopped run")
    with qtbot.waitSignal(runs_window.training_ended, timeout=120_000) as ended:
        assert runs_window.resume_run(record) is not None
    assert ended.args == ["finished"]
    qtbot.waitUntil(lambda: runs_window.worker is None, timeout=60_000)
    assert runs_window.store.record(record.run_dir).steps_done == 20
    assert runs_window.plots.n_points == 20  # the old steps plus the new ones


def test_evaluation_view_shows_a_confusion_matrix_of_the_test_classes(runs_window, qtbot):
    record = _record(runs_window, "finished run")
    panel = runs_window.evaluation_panel
    panel.episodes_spin.setValue(8)
    with qtbot.waitSignal(panel.evaluated, timeout=120_000):
        assert runs_window.evaluate_run(record) is not None
    result = panel.output.result
    n_test = len(json.loads((record.run_dir / "split.json").read_text())["test"])
    assert result.class_names == sorted(result.class_names) and len(result.class_names) == n_test
    assert result.confusion.shape == (n_test, n_test)
    assert panel.confusion.image.image.shape == tuple(result.confusion.shape)
    assert np.isclose(panel.confusion.matrix.sum(axis=1)[result.confusion.sum(dim=1).numpy() > 0], 1.0).all()
    assert panel.class_table.rowCount() == n_test
    assert "Test accuracy" in panel.accuracy_label.text() and "±" in panel.accuracy_label.text()
    assert 0 < panel.gallery.count() <= 60
    confidences = [m.confidence for m in result.misclassified]
    assert confidences == sorted(confidences, reverse=True)
    assert runs_window.center_tabs.currentWidget() is panel


def test_the_runs_tables_evaluate_works_for_a_stopped_run_with_only_its_last_checkpoint(runs_window, qtbot):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    record = _record(runs_window, "stopped run")
    assert record.checkpoint("best").name == "last.pt"  # stopped before its first validation: no best.pt
    panel, evaluation = runs_window.runs_panel, runs_window.evaluation_panel
    evaluation.episodes_spin.setValue(4)
    panel.select_runs([record.run_dir])
    assert panel.evaluate_button.isEnabled()  # as the Evaluation tab's Evaluate is
    with qtbot.waitSignal(evaluation.evaluated, timeout=120_000):
        QTest.mouseClick(panel.evaluate_button, Qt.MouseButton.LeftButton)
    assert evaluation.output.run_dir == record.run_dir and evaluation.output.checkpoint_step == record.steps_done
    assert "Test accuracy" in evaluation.accuracy_label.text()
    assert f"checkpoint at step {record.steps_done}" in evaluation.details_label.text()


def test_a_running_runs_row_follows_its_progress(runs_window, qtbot):
    panel = runs_window.runs_panel
    now = [100.0]
    panel.live_updates.clock = lambda: now[0]
    run_dir = _record(runs_window, "stopped run").run_dir

    def cell(column):
        return panel.table.item(panel.row_of(run_dir), COLUMNS.index(column)).text()

    assert cell("Steps") == "6 / 20"  # run.json as of the refresh
    recorded_best = cell("Best val. acc.")
    metrics = StepMetrics(step=7, total_steps=20, loss=1.0, accuracy=0.5, lr=1e-3, episodes_per_second=1.0,
                          elapsed_s=65.0, eta_s=10.0)
    panel.show_progress(run_dir, metrics=metrics)
    assert (cell("Steps"), cell("Duration"), cell("Best val. acc.")) == ("7 / 20", "1m 05s", recorded_best)
    panel.show_progress(run_dir, metrics=replace(metrics, step=8))
    assert cell("Steps") == "7 / 20"  # held back: at most one update a second
    now[0] += 1.0
    qtbot.waitUntil(lambda: cell("Steps") == "8 / 20", timeout=3000)  # shown when the second is over
    panel.show_progress(run_dir, metrics=replace(metrics, step=9))
    panel.show_progress(run_dir, best_val_accuracy=0.75)  # a new best: at once, with the step held back
    assert (cell("Steps"), cell("Best val. acc.")) == ("9 / 20", "75.00%")
    now[0] += 1.0
    panel.show_progress(run_dir, metrics=replace(metrics, step=12_345, total_steps=100_000))
    steps = COLUMNS.index("Steps")
    assert panel.table.columnWidth(steps) > panel.table.fontMetrics().horizontalAdvance("12,345 / 100,000")  # not cut
    panel.show_progress(run_dir, metrics=replace(metrics, step=10))
    panel.refresh()  # the run's end: the record on disk wins, held-back progress is dropped
    qtbot.wait(1200)
    assert (cell("Steps"), cell("Best val. acc.")) == ("6 / 20", recorded_best)
