"""Hand a run off to ``torchrun``: save its config and give a ready command line.

The studio trains in one process; a multi-GPU machine or a cluster runs the same
config with ``torchrun ... -m engine train --config FILE`` (see
:mod:`engine.training.distributed`). This dialog writes the current config to a
JSON file (atomically), shows the command for the chosen processes and nodes,
refuses splits the trainer would refuse (naming the field), and copies the
command to the clipboard.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from engine.api import ConfigError, RunConfig, atomic_write_json, handoff_problems, torchrun_command

THIS_PYTHON = f"{sys.executable} -m torch.distributed.run"


def default_handoff_path(runs_root: Path, config: RunConfig) -> Path:
    """``<runs root>/handoff/<name>-<YYYYmmdd-HHMMSS>.json``."""
    name = (config.name or config.algorithm.name).replace("/", "_").replace(" ", "_")
    return runs_root / "handoff" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"


class TorchrunDialog(QDialog):
    """Choose processes per node, nodes and rendezvous; save the config; copy the command."""

    def __init__(self, config: RunConfig, runs_root: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Hand off as a torchrun command")
        self.config = config
        self.saved_path: Path | None = None
        self.nproc = QSpinBox(minimum=1, maximum=1024, value=2)
        self.nnodes = QSpinBox(minimum=1, maximum=4096, value=1)
        self.endpoint = QLineEdit(placeholderText="host:port of one node, e.g. node0:29500")
        self.this_python = QCheckBox("Use this Python (python -m torch.distributed.run) instead of torchrun")
        self.config_path = QLineEdit(str(default_handoff_path(runs_root, config)))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.config_path, 1)
        path_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Processes per node", self.nproc)
        form.addRow("Nodes", self.nnodes)
        form.addRow("Rendezvous endpoint", self.endpoint)
        form.addRow("Config file", path_row)
        form.addRow("", self.this_python)
        self.command = QPlainTextEdit(readOnly=True)
        self.command.setMaximumHeight(90)
        self.message = QLabel(wordWrap=True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        hint = QLabel(f"Device: {config.train.device} "
                      f"({'nccl, one GPU per process' if config.train.device.startswith('cuda') else 'gloo'}). "
                      "Each process takes an equal share of every meta-batch; only rank 0 writes the run folder. "
                      "The data set path must exist on every node.", wordWrap=True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.save_button = self.buttons.addButton("Save config and copy command",
                                                  QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.rejected.connect(self.reject)
        self.save_button.clicked.connect(self.save_and_copy)
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addLayout(form)
        layout.addWidget(QLabel("Command"))
        layout.addWidget(self.command)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        for spin in (self.nproc, self.nnodes):
            spin.valueChanged.connect(self.refresh)
        for edit in (self.endpoint, self.config_path):
            edit.textChanged.connect(self.refresh)
        self.this_python.toggled.connect(self.refresh)
        self.resize(720, 380)
        self.refresh()

    def problems(self) -> list[str]:
        """What stops this hand-off, each naming its field (empty when it can go)."""
        problems = handoff_problems(self.config, self.nproc.value() * self.nnodes.value())
        if self.nnodes.value() > 1 and not self.endpoint.text().strip():
            problems.append("Rendezvous endpoint: several nodes need a host:port reachable from every node")
        if not self.config_path.text().strip():
            problems.append("Config file: choose where to save the config")
        return problems

    def command_line(self) -> str:
        launcher = THIS_PYTHON if self.this_python.isChecked() else "torchrun"
        return torchrun_command(self.config_path.text().strip(), self.nproc.value(), self.nnodes.value(),
                                self.endpoint.text().strip() or None, launcher=launcher)

    def refresh(self) -> None:
        self.endpoint.setEnabled(self.nnodes.value() > 1)
        problems = self.problems()
        self.save_button.setEnabled(not problems)
        self.message.setStyleSheet("color: #b00020;" if problems else "")
        self.message.setText("\n".join(problems) if problems else
                             f"{self.nproc.value() * self.nnodes.value()} processes in all; "
                             "run the command on every node.")
        self.command.setPlainText("" if problems else self.command_line())

    def save_and_copy(self) -> Path | None:
        """Write the config (atomically) and put the command on the clipboard; the saved path, or None."""
        if self.problems():
            return None
        path = Path(self.config_path.text().strip()).expanduser()
        try:
            atomic_write_json(path, self.config.to_dict())
        except (OSError, ConfigError) as error:
            self.message.setStyleSheet("color: #b00020;")
            self.message.setText(f"{path}: {getattr(error, 'strerror', None) or error}")
            return None
        self.saved_path = path
        QGuiApplication.clipboard().setText(self.command_line())
        self.message.setStyleSheet("")
        self.message.setText(f"Saved {path}; the command is on the clipboard.")
        return path

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the run config", self.config_path.text(),
                                              "JSON config (*.json)")
        if path:
            self.config_path.setText(path)
