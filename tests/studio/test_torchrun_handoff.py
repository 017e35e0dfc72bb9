"""The studio hands a run off as a ready torchrun command (issue #5)."""

from __future__ import annotations

import json
import shlex

import pytest

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from engine.config import RunConfig

from .conftest import set_fields


@pytest.fixture
def window(qtbot):
    """The window without loading a data set: the hand-off needs only the config."""
    from studio.main_window import MainWindow

    win = MainWindow(restore_settings=False, load_data=False)
    qtbot.addWidget(win)
    return win


def test_handoff_saves_the_config_and_copies_a_command_that_names_it(qtbot, window, tmp_path):
    set_fields(window, {"task.meta_batch_size": 4, "task.n_way": 7})
    dialog = window.handoff_dialog()
    qtbot.addWidget(dialog)
    dialog.nproc.setValue(4)
    target = tmp_path / "cluster" / "run.json"
    dialog.config_path.setText(str(target))
    assert dialog.save_button.isEnabled()
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    saved = RunConfig.from_dict(json.loads(target.read_text()))
    assert saved.to_dict() == window.current_config().to_dict() and saved.task.n_way == 7
    command = QGuiApplication.clipboard().text()
    parts = shlex.split(command)
    assert parts[:3] == ["torchrun", "--standalone", "--nproc-per-node=4"]
    assert parts[-5:] == ["-m", "engine", "train", "--config", str(target)]


def test_handoff_refuses_a_split_the_trainer_would_refuse(qtbot, window, tmp_path):
    set_fields(window, {"task.meta_batch_size": 4})
    dialog = window.handoff_dialog()
    qtbot.addWidget(dialog)
    dialog.nproc.setValue(3)
    assert not dialog.save_button.isEnabled()
    assert "task.meta_batch_size (4)" in dialog.message.text() and dialog.command.toPlainText() == ""
    dialog.nproc.setValue(2)
    dialog.nnodes.setValue(2)
    assert not dialog.save_button.isEnabled() and "Rendezvous endpoint" in dialog.message.text()
    dialog.endpoint.setText("node0:29500")
    assert dialog.save_button.isEnabled()
    assert "--nnodes=2" in dialog.command.toPlainText() and "--rdzv-endpoint=node0:29500" in dialog.command.toPlainText()
