"""Issue 22: race runs are runs. A race's runs are listed in the Runs table under their race, evaluated
(each to its own accuracy), inspected in the Episodes and Inner loop views, used in Adapt and deleted
only with their race."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from engine.config import RunConfig
from engine.race import Race, RaceConfig, list_races, new_race_dir
from engine.training.run_store import RunStore, default_runs_root
from studio.panels.runs_panel import COLUMNS, RACE_ROLE, RUN_ROLE
from tests.studio.conftest import make_window

RACERS = ["protonet", "maml"]
RACE_NAME = "tiny race"


@pytest.fixture(scope="module")
def raced_runs(tmp_path_factory) -> Path:
    """A runs root holding one solo run and one finished race of ProtoNet and MAML, trained headless once."""
    from engine.training.trainer import Trainer
    from studio.datasets import load_data_cached

    root = tmp_path_factory.mktemp("raced")
    config = RunConfig.from_dict({
        "task": {"n_way": 5, "n_shot": 1, "n_query": 5, "meta_batch_size": 1}, "model": {"hidden_channels": 16},
        "train": {"steps": 6, "val_every": 3, "val_episodes": 3, "checkpoint_every": 3, "num_threads": 1}})
    data = load_data_cached(config.data)
    config.name = "solo run"
    Trainer(config, run_dir=RunStore(root).new_run_dir("solo"), data=data).run()
    race = RaceConfig.from_run_config(config, RACERS, test_episodes=3, name=RACE_NAME)
    result = Race(race, race_dir=new_race_dir(root, RACE_NAME), data=data).run()
    assert result.status == "finished", result.message
    return root


@pytest.fixture
def window(raced_runs, qtbot):
    shutil.copytree(raced_runs, default_runs_root())
    return make_window(qtbot)


def _race_runs(window) -> dict[str, Any]:
    return {r.algorithm: r for r in window.store.list_runs() if r.race_dir is not None}


def _rows(panel) -> list[tuple[str | None, str | None]]:
    """(race folder, run folder) of each row of the Runs table, top to bottom."""
    return [(panel.table.item(r, 0).data(RACE_ROLE), panel.table.item(r, 0).data(RUN_ROLE))
            for r in range(panel.table.rowCount())]


def _click_row(qtbot, panel, row: int, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    rect = panel.table.visualRect(panel.table.model().index(row, COLUMNS.index("Status")))
    QTest.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def _click_header(panel, column: str) -> None:
    header = panel.table.horizontalHeader()
    x = header.sectionViewportPosition(COLUMNS.index(column)) + 5
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, 5))


def _direct_accuracy(record, episodes: int, n_way: int, n_shot: int, n_query: int) -> float:
    """The accuracy the engine gives the run's checkpoint on the view's episodes (seed 0)."""
    from engine.evaluation import evaluate
    from engine.training.checkpoint import load_algorithm
    from studio.datasets import load_data_cached

    algorithm, checkpoint = load_algorithm(record.checkpoint(), device="cpu")
    data = load_data_cached(checkpoint.config.data, split=checkpoint.split)
    return evaluate(algorithm, data, episodes=episodes, n_way=n_way, n_shot=n_shot, n_query=n_query, seed=0).accuracy


def test_a_races_runs_are_listed_under_their_race_and_each_evaluates_to_its_own_accuracy(window, qtbot):
    panel, evaluation = window.runs_panel, window.evaluation_panel
    runs = _race_runs(window)
    race = str(next(iter(runs.values())).race_dir)
    assert sorted(runs) == sorted(RACERS)
    rows = _rows(panel)
    header_row = rows.index((race, None))
    assert panel.table.item(header_row, 0).text() == f"Race: {RACE_NAME}"
    assert panel.table.item(header_row, COLUMNS.index("Status")).text() == "finished"
    for row in (header_row + 1, header_row + 2):  # a racer's row names what tells it apart, the race in full
        record = panel.record_for(_rows(panel)[row][1])
        name_cell = panel.table.item(row, 0)
        assert record.name.endswith(f": {name_cell.text()}") and RACE_NAME not in name_cell.text(), name_cell.text()
        assert name_cell.toolTip().startswith(record.name)
    assert {run for _, run in rows[header_row + 1: header_row + 3]} == {str(r.run_dir) for r in runs.values()}
    for column in ("Best val. acc.", "Name", "Steps"):  # whatever the sort, the race's runs stay under its row
        for _ in range(2):
            _click_header(panel, column)
            rows = _rows(panel)
            header_row = rows.index((race, None))
            assert {run for _, run in rows[header_row + 1: header_row + 3]} == {str(r.run_dir) for r in runs.values()}
    _click_row(qtbot, panel, header_row)  # the race's row selects its runs: their curves overlaid
    assert {r.algorithm for r in panel.selected_records()} == set(RACERS) and window.plots.n_overlays == 2

    evaluation.episodes_spin.setValue(4)
    accuracies = {}
    for algorithm in RACERS:
        record = runs[algorithm]
        _click_row(qtbot, panel, panel.row_of(record.run_dir))
        assert panel.selected_records() == [record] and panel.evaluate_button.isEnabled()
        assert record.name in evaluation.run_picker.text()
        with qtbot.waitSignal(evaluation.evaluated, timeout=120_000):
            QTest.mouseClick(panel.evaluate_button, Qt.MouseButton.LeftButton)
        assert evaluation.output.run_dir == record.run_dir
        shape = evaluation.shape_form.shape()
        accuracies[algorithm] = evaluation.output.result.accuracy
        assert accuracies[algorithm] == pytest.approx(
            _direct_accuracy(record, 4, shape.n_way, shape.n_shot, shape.n_query), abs=1e-9)
        assert f"{accuracies[algorithm]:.2%}" in evaluation.accuracy_label.text()
    _click_row(qtbot, panel, panel.row_of(runs["protonet"].run_dir))  # each keeps its own result
    assert f"{accuracies['protonet']:.2%}" in evaluation.accuracy_label.text()
    assert evaluation.output.run_dir == runs["protonet"].run_dir
    assert not window.shown_errors


def test_the_episodes_and_inner_loop_views_offer_race_runs(window, qtbot):
    runs = _race_runs(window)
    inspector, scrubber = window.views["Episodes"], window.views["Inner loop"]
    inspector.run_picker.refresh()
    scrubber.run_picker.refresh()
    offered = {inspector.run_picker.combo.itemData(i) for i in range(inspector.run_picker.combo.count())}
    assert {str(r.run_dir) for r in runs.values()} <= offered
    inner = [scrubber.run_picker.combo.itemData(i) for i in range(scrubber.run_picker.combo.count())]
    assert inner == [str(runs["maml"].run_dir)]  # ProtoNet has no inner loop
    window.center_tabs.setCurrentWidget(scrubber)
    _click_row(qtbot, window.runs_panel, window.runs_panel.row_of(runs["maml"].run_dir))
    assert scrubber.run_picker.record().run_dir == runs["maml"].run_dir
    scrubber.steps_spin.setValue(3)
    with qtbot.waitSignal(scrubber.scrubbed, timeout=120_000):
        QTest.mouseClick(scrubber.run_button, Qt.MouseButton.LeftButton)
    assert scrubber.slider.maximum() == 3
    assert "No run with an inner loop" not in scrubber.status_label.text()


def test_adapt_uses_a_race_run_opened_from_the_runs_table(window, qtbot):
    record = _race_runs(window)["maml"]
    panel = window.runs_panel
    _click_row(qtbot, panel, panel.row_of(record.run_dir))
    with qtbot.waitSignal(window.adapt_panel.model_loaded, timeout=60_000) as loaded:
        QTest.mouseClick(panel.open_button, Qt.MouseButton.LeftButton)
    assert Path(loaded.args[0]) == record.checkpoint()
    assert window.adapt_panel.session.model_path == record.checkpoint()
    assert window.plots.n_points == 6


def test_a_race_run_is_deleted_only_with_its_race(window, qtbot):
    panel = window.runs_panel
    record = _race_runs(window)["protonet"]
    race = record.race_dir
    asked = []
    panel.confirm = lambda title, text: asked.append(text) or False
    _click_row(qtbot, panel, panel.row_of(record.run_dir))
    QTest.keyClick(panel.table, Qt.Key.Key_Delete)
    assert race.is_dir() and f"Race: {RACE_NAME} (2 runs)" in asked[0] and "as a whole" in asked[0]
    panel.confirm = lambda title, text: True
    _click_row(qtbot, panel, panel.row_of(record.run_dir))
    QTest.keyClick(panel.table, Qt.Key.Key_Delete)
    assert not race.exists() and list_races(window.store.root) == []
    assert [r.name for r in window.store.list_runs()] == ["solo run"]
    assert [run for _, run in _rows(panel)] == [str(window.store.list_runs()[0].run_dir)]
    assert window.views["Race"].saved_list.count() == 0  # the Race view forgets it too
    assert not window.shown_errors


def test_a_race_without_a_name_is_headed_by_its_algorithms_once(raced_runs, qtbot):
    """The row of a race that was given no name reads "Race: ProtoNet vs MAML", not "Race: race protonet vs
    maml", the default name older versions stored for a race without a name)."""
    import json

    shutil.copytree(raced_runs, default_runs_root())
    race_file = next(default_runs_root().glob("races/*/race.json"))
    raw = json.loads(race_file.read_text(encoding="utf-8"))
    raw["name"] = "race protonet vs maml"  # as an older version stored a race started without a name
    race_file.write_text(json.dumps(raw), encoding="utf-8")
    window = make_window(qtbot)
    panel = window.runs_panel
    header = next(panel.table.item(r, 0) for r in range(panel.table.rowCount())
                  if panel.table.item(r, 0).data(RACE_ROLE) is not None)
    assert header.text() == "Race: ProtoNet vs MAML"
    for record in _race_runs(window).values():  # a racer's long name, cut in its cell, is whole in its tooltip
        assert panel.table.item(panel.row_of(record.run_dir), 0).toolTip().startswith(record.name + "\n")
