"""The Race view: a real tiny race in the window, one curve per algorithm, the table, reopening from disk."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.race import RACE_FILE, list_races, load_race

from .conftest import TINY, set_fields

RACE_FIELDS = {**TINY, "train.steps": 8, "train.val_every": 4, "train.val_episodes": 3}
ALGORITHMS = ["protonet", "maml", "simpleshot"]


def race_panel(window: Any) -> Any:
    panel = window.views["Race"]
    window.center_tabs.setCurrentWidget(panel)
    return panel


def run_race(qtbot: Any, window: Any, algorithms: list[str], timeout: int = 120_000) -> Any:
    set_fields(window, RACE_FIELDS)
    assert window.config_errors() == []
    panel = race_panel(window)
    panel.set_algorithms(algorithms)
    panel.test_episodes.setValue(5)
    with qtbot.waitSignal(panel.race_ended, timeout=timeout) as blocker:
        assert panel.start() is not None
        assert not panel.start_button.isEnabled() and panel.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.is_racing(), timeout=timeout)
    assert blocker.args == ["finished"], window.shown_errors
    return panel


def test_a_race_draws_one_curve_per_algorithm_and_fills_the_table(qtbot, window):
    panel = run_race(qtbot, window, ALGORITHMS)
    steps = RACE_FIELDS["train.steps"]
    assert list(panel.curves) == ALGORITHMS
    assert panel.metric() == "val"  # by default: validation accuracy on the same episodes
    for name in ALGORITHMS:
        assert list(panel.curves[name].xData) == [4, 8]
    panel.set_metric("accuracy")
    for name in ALGORITHMS:
        assert panel.n_points(name) == steps
        assert list(panel.curves[name].xData) == list(range(1, steps + 1))
    assert len({panel.curves[n].opts["pen"].color().name() for n in ALGORITHMS}) == 3  # distinct colours
    assert [panel.curves[n].name() for n in ALGORITHMS] == ["ProtoNet", "MAML", "SimpleShot"]
    legend = panel.legend.text()
    assert legend.index("ProtoNet") < legend.index("MAML") < legend.index("SimpleShot")
    # the seconds axis: each algorithm's own compute time, growing with every step
    panel.set_x_axis("seconds")
    for name in ALGORITHMS:
        seconds = list(panel.curves[name].xData)
        assert len(seconds) == steps and all(b > a for a, b in zip(seconds, seconds[1:]))
        assert seconds[-1] == panel.rows[name].train_seconds
    assert panel.table.rowCount() == 3
    for row in range(3):
        assert panel.table.item(row, 1).text() == "finished"
        assert "±" in panel.table.item(row, 3).text() and panel.table.item(row, 3).text().endswith("%")
        assert panel.table.item(row, 4).text().endswith(" s")
        assert panel.table.item(row, 5).text().endswith("MiB")
    assert "the same 5 seeded 5-way 1-shot test episodes" in panel.table_note.text()
    assert "torch.profiler memory events" in panel.table_note.toolTip()
    assert panel.saved_list.count() == 1
    assert not window.shown_errors


def test_a_saved_race_reopens_with_its_curves_and_table(qtbot, window):
    panel = run_race(qtbot, window, ["protonet", "simpleshot"])
    folder = panel.race_dir
    panel.set_metric("loss")
    before = {name: list(panel.curves[name].yData) for name in panel.curves}
    table = [panel.table.item(r, 3).text() for r in range(panel.table.rowCount())]
    assert [e.folder for e in list_races(window.store.root)] == [folder]
    listed = {r.algorithm: r.status for r in window.runs_panel.records if r.race_dir == folder}
    assert listed == {"protonet": "finished", "simpleshot": "finished"}  # the Runs table lists them, as they ended
    panel.open_race(folder.parent / "no-such-race")
    assert "race.json" in window.shown_errors[-1][1]
    panel._reset(["protonet", "simpleshot"], 1)  # a blank view, as after a restart
    assert panel.n_points("protonet") == 0
    panel.saved_list.setCurrentRow(0)
    saved = panel.open_selected_race()
    assert saved is not None and saved.status == "finished"
    assert {name: list(panel.curves[name].yData) for name in panel.curves} == before
    assert [panel.table.item(r, 3).text() for r in range(panel.table.rowCount())] == table
    # each algorithm's run folder opens like any run, without switching the algorithm form: the next Train
    # trains what the user chose, not the opened racer
    assert window.algorithm_panel.algorithm_name() == "protonet"
    panel.table.selectRow(1)
    assert panel.open_run_button.isEnabled()
    QTest.mouseClick(panel.open_run_button, Qt.MouseButton.LeftButton)
    assert window.center_tabs.currentWidget() is window.plots
    assert window.plots.n_points == RACE_FIELDS["train.steps"]
    assert window.algorithm_panel.algorithm_name() == "protonet"
    assert window.runs_panel.selected_records()[0].run_dir == folder / "simpleshot"  # selected in the Runs table
    assert window.plots.n_overlays == 0  # its own curves, not also a dashed copy of them
    assert "simpleshot" in window.evaluation_panel.run_picker.text()
    QTest.mouseClick(panel.load_settings_button, Qt.MouseButton.LeftButton)  # only when asked for
    assert window.algorithm_panel.algorithm_name() == "simpleshot"
    # a damaged race file is named when the race is opened
    (folder / RACE_FILE).write_text("{ torn", encoding="utf-8")
    panel.refresh_saved()
    panel.saved_list.setCurrentRow(0)
    assert panel.open_selected_race() is None
    assert str(folder / RACE_FILE) in window.shown_errors[-1][1]


def test_the_final_evaluation_reports_progress_and_a_trained_racer_no_longer_reads_racing(qtbot, window):
    set_fields(window, RACE_FIELDS)
    panel = race_panel(window)
    panel.set_algorithms(["protonet", "simpleshot"])
    panel.test_episodes.setValue(200)
    seen: list[tuple[str, int, int, str, list[str]]] = []

    def progress(name: str, done: int, total: int) -> None:  # runs after the panel's own slot
        statuses = [panel.table.item(r, 1).text() for r in range(panel.table.rowCount())]
        seen.append((name, done, total, panel.status_label.text(), statuses))

    with qtbot.waitSignal(panel.race_ended, timeout=120_000):
        assert panel.start() is not None
        panel.worker.evaluation_progress.connect(progress)
    qtbot.waitUntil(lambda: not panel.is_racing(), timeout=60_000)
    for name in ("protonet", "simpleshot"):
        done = [d for n, d, *_ in seen if n == name]
        assert done[0] == 0 and done[-1] == 200 and len(done) > 3 and done == sorted(done)
    name, done, total, label, statuses = next(s for s in seen if s[0] == "simpleshot" and 0 < s[1] < 200)
    assert label == f"Evaluating SimpleShot: episode {done} / 200"
    assert statuses == ["finished", f"evaluating {done} / 200"]  # ProtoNet done, SimpleShot under test
    assert all("racing" not in s for *_, statuses in seen for s in statuses)  # both trained before any test
    assert [panel.table.item(r, 1).text() for r in range(2)] == ["finished", "finished"]
    assert panel.status_label.text().startswith("Race finished")


def test_the_race_refuses_bad_selections_and_a_running_training(qtbot, window):
    set_fields(window, RACE_FIELDS)
    panel = race_panel(window)
    panel.set_algorithms(["protonet"])
    assert not panel.start_button.isEnabled()
    panel.set_algorithms(["protonet", "maml", "reptile", "matching", "simpleshot", "baseline", "tim"])
    assert not panel.start_button.isEnabled() and "now 7" in panel.start_button.toolTip()
    panel.set_algorithms(["protonet", "maml", "reptile", "matching", "simpleshot", "tim"])  # six may race
    assert panel.start_button.isEnabled()
    panel.set_algorithms(["protonet", "maml"])
    assert panel.start_button.isEnabled()
    window.worker = object()  # as while the main window trains
    try:
        assert panel.start() is None
    finally:
        window.worker = None
    assert window.shown_errors[-1][0] == "Cannot start the race" and "training run" in window.shown_errors[-1][1]


def test_stop_ends_the_race_with_every_algorithm_stopped(qtbot, window):
    set_fields(window, {**RACE_FIELDS, "train.steps": 5000})
    panel = race_panel(window)
    panel.set_algorithms(["protonet", "simpleshot"])
    panel.set_metric("accuracy")
    with qtbot.waitSignal(panel.race_ended, timeout=120_000) as blocker:
        panel.start()
        qtbot.waitUntil(lambda: panel.n_points("simpleshot") >= 2, timeout=120_000)
        panel.toggle_pause()
        assert panel.worker.paused and panel.pause_button.text() == "Resume"
        panel.toggle_pause()
        assert not panel.worker.paused and panel.pause_button.text() == "Pause"
        panel.stop()
    qtbot.waitUntil(lambda: not panel.is_racing(), timeout=60_000)
    assert blocker.args == ["stopped"]
    statuses = [panel.table.item(r, 1).text() for r in range(panel.table.rowCount())]
    assert statuses == ["stopped", "stopped"]
    saved = json.loads((panel.race_dir / RACE_FILE).read_text(encoding="utf-8"))
    assert saved["status"] == "stopped"
    assert load_race(panel.race_dir).curves["protonet"].step[-1] < 5000


def test_a_race_trains_in_the_child_process_and_can_be_force_stopped(qtbot, window):
    import os

    set_fields(window, {**RACE_FIELDS, "train.steps": 5000})
    panel = race_panel(window)
    panel.set_algorithms(["protonet", "simpleshot"])
    panel.set_metric("accuracy")
    with qtbot.waitSignal(panel.race_ended, timeout=120_000) as blocker:
        worker = panel.start()
        qtbot.waitUntil(lambda: panel.n_points("protonet") >= 2, timeout=120_000)
        assert worker.can_force_stop and worker.process.pid not in (None, os.getpid())
        assert worker.force_stop()
    qtbot.waitUntil(lambda: not panel.is_racing(), timeout=60_000)
    assert blocker.args == ["stopped"] and window.shown_errors == []  # asked for: no error dialog
    assert worker.process.exitcode is not None and worker.process.exitcode < 0
    assert "force-stopped" in panel.status_label.text()
    assert worker.result is None


def test_a_newly_registered_algorithm_appears_in_the_race_view_with_no_studio_edit(qtbot, window):
    from dataclasses import dataclass
    from typing import ClassVar

    from engine.algorithms import registry
    from engine.algorithms.protonet import ProtoNet
    from engine.config import ProtoNetConfig
    from studio.panels.race_panel import RacePanel

    @dataclass
    class ThrowawayConfig(ProtoNetConfig):
        name: ClassVar[str] = "throwaway-race"
        title: ClassVar[str] = "Throwaway networks"

    class Throwaway(ProtoNet):
        short_title = "Throwaway"

    registry.register(ThrowawayConfig, Throwaway)
    try:
        panel = RacePanel(window)
        qtbot.addWidget(panel)
        box = panel.checks["throwaway-race"]
        assert box.text() == "Throwaway" and box.toolTip().startswith("Throwaway networks: ")
        assert "shared stream of seeded episodes" in box.toolTip()
        panel._reset(["protonet", "throwaway-race"], 10)
        assert [panel.curves[n].name() for n in panel.curves] == ["ProtoNet", "Throwaway"]
        assert panel.table.item(1, 0).text() == "Throwaway"
    finally:
        registry.unregister("throwaway-race")
