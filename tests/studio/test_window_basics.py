"""The window without training: launch, data set selection (drop), validation of the form, presets."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from engine.config import ALGORITHM_CONFIGS, BUILTIN_GLYPHS, RunConfig
from tests.conftest import write_dataset
from tests.studio.conftest import wait_data
from studio.widgets.config_form import field_label


def test_launch_selects_builtin_glyphs_and_allows_training(window):
    assert window.dataset_panel.root() == BUILTIN_GLYPHS
    assert window.dataset_panel.root_combo.currentData() == BUILTIN_GLYPHS
    assert len(window.dataset_panel.index.classes) == 624
    counts = window.dataset_panel.split_counts()
    assert counts == {"train": 374, "val": 125, "test": 125}
    assert window.dataset_panel.counts_table.item(0, 0).text() == "374"
    assert window.dataset_panel.thumb_grid.count() > 0
    assert window.training_panel.train_button.isEnabled()
    assert window.training_panel.blocked_message == ""
    assert window.current_config().data.root == BUILTIN_GLYPHS


def test_algorithm_list_and_generated_form(window):
    panel = window.algorithm_panel
    assert [panel.algorithm_combo.itemData(i) for i in range(panel.algorithm_combo.count())] == list(ALGORITHM_CONFIGS)
    assert isinstance(panel.field("task.n_shot").widget, QSpinBox)
    assert panel.field("task.n_shot").widget.minimum() == 1
    assert isinstance(panel.field("algorithm.lr").widget, QLineEdit)
    assert isinstance(panel.field("model.backbone").widget, QComboBox)
    assert "filters per conv block" in panel.field("model.hidden_channels").widget.toolTip()
    graphs = panel.field("train.cuda_graphs").widget  # a GPU option: a check box, ticked by default
    assert isinstance(graphs, QCheckBox) and graphs.isChecked() and "CUDA graphs" in graphs.toolTip()
    assert field_label(panel.field("train.cuda_graphs").spec) == "CUDA graphs"
    panel.set_algorithm("maml")
    assert panel.summary_label.text().startswith(ALGORITHM_CONFIGS["maml"].summary) and "Finn et al. 2017" in panel.summary_label.text()
    assert isinstance(panel.field("algorithm.first_order").widget, QCheckBox)
    assert isinstance(panel.field("algorithm.inner_lr").widget, QLineEdit)
    assert window.current_config().algorithm.name == "maml"
    window.dataset_panel.split_form.editor("train_ratio")  # ratios use spin boxes
    assert isinstance(window.dataset_panel.split_form.editor("train_ratio").widget, QDoubleSpinBox)


def test_invalid_shot_typed_in_blocks_train_with_message(window, qtbot):
    editor = window.algorithm_panel.field("task.n_shot")
    line = editor.widget.lineEdit()
    line.selectAll()
    QTest.keyClicks(line, "0")
    assert editor.widget.property("invalid") is True
    assert "border" in editor.widget.styleSheet()
    assert not editor.error_label.isHidden()
    assert "task.n_shot" in editor.error_label.text()
    assert not window.training_panel.train_button.isEnabled()
    assert "task.n_shot" in window.training_panel.message_label.text()
    assert not window.training_panel.message_label.isHidden()
    assert window.start_training() is None and window.worker is None
    line.selectAll()
    QTest.keyClicks(line, "2")
    assert window.training_panel.train_button.isEnabled()
    assert window.training_panel.message_label.isHidden()


def test_negative_learning_rate_blocks_train(window):
    editor = window.algorithm_panel.field("algorithm.lr")
    editor.widget.setText("")
    QTest.keyClicks(editor.widget, "-1e-3")
    assert "algorithm.lr" in window.training_panel.message_label.text()
    assert not window.training_panel.train_button.isEnabled()
    assert not window.train_action.isEnabled()
    editor.widget.setText("3e-4")
    assert window.training_panel.train_button.isEnabled()
    assert window.current_config().algorithm.lr == 3e-4


def test_cross_field_rule_blocks_train(window):
    window.dataset_panel.split_form.editor("train_ratio").set_value(0.7)
    window.dataset_panel.split_form.editor("val_ratio").set_value(0.3)
    assert not window.training_panel.train_button.isEnabled()
    assert "data.train_ratio" in window.training_panel.blocked_message


def _drop(widget, folder: Path) -> bool:
    """Simulate dragging ``folder`` onto ``widget``; returns whether the drag was accepted.

    QApplication filters a Drop that follows no real drag, so the drop event is handed
    to the widget's event() directly after a DragEnter sent the usual way.
    """
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    buttons, modifiers = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, buttons, modifiers)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, buttons, modifiers)
    widget.event(drop)
    return enter.isAccepted() and drop.isAccepted()


def test_dropping_a_folder_loads_it_and_lists_skipped_files(window, qtbot, tmp_path):
    root = write_dataset(tmp_path / "photos", n_classes=8, n_images=6)
    (root / "class000" / "notes.txt").write_text("not an image")
    (root / "class001" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert _drop(window.dataset_panel, root)
    assert window.dataset_panel.root() == str(root)
    wait_data(qtbot, window)
    panel = window.dataset_panel
    assert len(panel.index.classes) == 8
    assert "8</b> classes" in panel.summary_label.text()
    reasons = {panel.skipped_table.item(r, 0).text(): panel.skipped_table.item(r, 1).text()
               for r in range(panel.skipped_table.rowCount())}
    assert any("notes.txt" in name for name in reasons)
    assert any("broken.png" in name for name in reasons)
    assert sum(panel.split_counts().values()) == 8
    assert window.current_config().data.root == str(root)


def test_dropping_a_file_is_refused(window, tmp_path):
    file = tmp_path / "a.png"
    file.write_bytes(b"x")
    assert not _drop(window.dataset_panel, file)
    assert window.dataset_panel.root() == BUILTIN_GLYPHS


def test_group_split_counts_follow_the_chosen_groups(window, qtbot, tmp_path):
    root = write_dataset(tmp_path / "nested", n_classes=12, n_images=4, groups=4)
    window.dataset_panel.set_root(root)
    wait_data(qtbot, window)
    panel = window.dataset_panel
    panel.split_form.editor("split_mode").set_value("group")
    assert not panel.groups_table.isHidden()
    for group, part in (("group00", "train"), ("group01", "train"), ("group02", "val"), ("group03", "test")):
        panel.set_group_part(group, part)
    assert panel.split_counts() == {"train": 6, "val": 3, "test": 3}
    assert panel.counts_table.item(1, 0).text() == "3"
    config = window.current_config()
    assert config.data.val_groups == ["group02"] and config.data.test_groups == ["group03"]
    panel.set_group_part("group02", "test")  # no validation group left
    assert "data.val_groups" in window.training_panel.blocked_message


def test_preset_round_trip_and_bad_preset_message(window, tmp_path):
    window.algorithm_panel.set_algorithm("reptile")
    window.algorithm_panel.field("task.n_way").set_value(7)
    path = window.save_preset(tmp_path / "preset.json")
    assert RunConfig.from_dict(json.loads(path.read_text())).task.n_way == 7
    window.algorithm_panel.set_algorithm("protonet")
    window.algorithm_panel.field("task.n_way").set_value(5)
    assert window.load_preset(path)
    assert window.algorithm_panel.algorithm_name() == "reptile"
    assert window.current_config().task.n_way == 7

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": {"n_shot": 0}}))
    assert not window.load_preset(bad)
    title, message = window.shown_errors[-1]
    assert str(bad) in message and "task.n_shot" in message
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert not window.load_preset(broken)
    assert str(broken) in window.shown_errors[-1][1]


def test_shortcuts_and_devices(window):
    train_keys = {s.toString() for s in window.train_action.shortcuts()}
    assert {"Ctrl+Return", "Ctrl+Enter"} <= train_keys
    assert window.stop_action.shortcut() == QKeySequence("Ctrl+.")  # not Esc (issue 22)
    assert window.open_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Open)
    devices = [d.key for d in window.device_panel.devices]
    assert devices[-1] == "cpu"
    assert window.device_panel.device() == devices[0]


def test_adapt_tab_present_only_with_its_module(window):
    import importlib.util

    has_module = importlib.util.find_spec("studio.panels.adapt_panel") is not None
    titles = [window.center_tabs.tabText(i) for i in range(window.center_tabs.count())]
    assert ("Adapt" in titles) == has_module
    assert titles[:2] == ["Training curves", "Evaluation"]


def test_error_dialog_shows_the_message_and_returns(qtbot, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from studio.main_window import MainWindow

    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append((box.windowTitle(), box.text())) or 0)
    win = MainWindow(load_data=False)
    qtbot.addWidget(win)
    win.show_error("Training failed", "task.n_way: 20 classes requested but only 5 validation classes")
    assert shown == [("Training failed", "task.n_way: 20 classes requested but only 5 validation classes")]
    assert win.isEnabled()


def test_settings_persist_across_restarts(qtbot):
    from tests.studio.conftest import make_window

    first = make_window(qtbot)
    first.algorithm_panel.set_algorithm("matching")
    first.algorithm_panel.field("task.n_way").set_value(10)
    first.log_dock.hide()  # window state: which docks show (geometry too, not checkable offscreen)
    first.close()
    from studio import settings as st

    assert not st.settings().value(st.KEY_GEOMETRY).isEmpty()
    second = make_window(qtbot)
    assert second.algorithm_panel.algorithm_name() == "matching"
    assert second.current_config().task.n_way == 10
    assert second.log_dock.isHidden() and not second.runs_dock.isHidden()
