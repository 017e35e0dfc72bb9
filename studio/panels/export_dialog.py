"""The Adapt panel's "Export..." dialog: the current classifier as ONNX, pt2 or TorchScript, with the parity
figure of engine.export (the written file loaded back and run on the support and a few query images).

The dialog exports the snapshot it was opened with (``AdaptSession.export_snapshot``, a CPU copy), in a worker
thread (:func:`studio.jobs.thread.run_in_worker`): the ONNX exporter takes seconds. :func:`ask_export_file` is
the file dialog (looked up at call time, so a test replaces it with ``monkeypatch.setattr``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (QButtonGroup, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QRadioButton, QVBoxLayout, QWidget)

from engine.api import EXPORT_FORMATS, PARITY_TOLERANCE, ExportReport, export_source
from studio.jobs.thread import WorkerHandle, run_in_worker
from studio.settings import settings

KEY_EXPORT_FOLDER = "adapt/last_export_folder"
FORMAT_NOTES = {
    "onnx": "onnxruntime on any platform; the bridge to TensorFlow, TF.js, Core ML and phones",
    "pt2": "torch.export.load in PyTorch 2.x; runs without this package's code",
    "torchscript": "torch.jit.load; TorchScript is deprecated in PyTorch, kept for older deployments",
}


def ask_export_file(parent: QWidget, fmt: str, current: str) -> Path | None:
    """Where to write a ``fmt`` file (a save dialog starting at ``current``); None when cancelled."""
    title, suffix = EXPORT_FORMATS[fmt]
    path, _ = QFileDialog.getSaveFileName(parent, f"Export as {title}", current, f"{title} (*{suffix})")
    return Path(path) if path else None


class ExportDialog(QDialog):
    """Choose a format and a file, export, read the parity figure. ``source``: an ``ExportSource``."""

    def __init__(self, source: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.report: ExportReport | None = None
        self._job: WorkerHandle | None = None
        self.setWindowTitle("Export the classifier")
        self.setMinimumWidth(620)
        self._build()
        self._format_changed()

    def _build(self) -> None:
        prep = self.source.preprocessing
        names = ", ".join(self.source.class_names)
        intro = QLabel(f"Input: [B, {prep.channels}, {prep.image_size}, {prep.image_size}] float32 images, "
                       f"(x/255 - {prep.mean:g}) / {prep.std:g}. Output: the probabilities of {names}. "
                       "Class names and preprocessing are stored in the file.")
        intro.setWordWrap(True)
        self.format_buttons = QButtonGroup(self)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        for index, (fmt, (title, suffix)) in enumerate(EXPORT_FORMATS.items()):
            radio = QRadioButton(f"{title}  ({suffix})")
            radio.setObjectName(f"format_{fmt}")
            radio.setChecked(index == 0)
            radio.setToolTip(FORMAT_NOTES[fmt])
            self.format_buttons.addButton(radio, index)
            note = QLabel(FORMAT_NOTES[fmt])
            note.setStyleSheet("color: #555; margin-left: 22px;")
            layout.addWidget(radio)
            layout.addWidget(note)
        self.format_buttons.idToggled.connect(lambda _id, checked: checked and self._format_changed())
        self.path_edit = QLineEdit(str(_start_folder() / "classifier"))
        self.browse_button = QPushButton("Browse...")
        self.browse_button.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(QLabel("File:"))
        row.addWidget(self.path_edit, 1)
        row.addWidget(self.browse_button)
        layout.addLayout(row)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setVisible(False)
        self.result_label = QLabel("")
        self.result_label.setObjectName("export_result")
        self.result_label.setWordWrap(True)
        self.result_label.setMinimumHeight(self.fontMetrics().lineSpacing() * 3 + 4)  # the dialog keeps its size
        layout.addWidget(self.busy)
        layout.addWidget(self.result_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = buttons.addButton("Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start_export)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    # ------------------------------------------------------------------------------- choices
    def chosen_format(self) -> str:
        return list(EXPORT_FORMATS)[self.format_buttons.checkedId()]

    def _format_changed(self) -> None:
        """Keep the file name's suffix that of the chosen format."""
        path = self.path_edit.text().strip()
        suffixes = sorted((suffix for _, suffix in EXPORT_FORMATS.values()), key=len, reverse=True)
        stem = next((path[:-len(s)] for s in suffixes if path.lower().endswith(s)), path)
        self.path_edit.setText(stem + EXPORT_FORMATS[self.chosen_format()][1])

    def _browse(self) -> None:
        path = ask_export_file(self, self.chosen_format(), self.path_edit.text())
        if path is not None:
            self.path_edit.setText(str(path))
            self._format_changed()

    # ------------------------------------------------------------------------------- export
    def start_export(self) -> None:
        """Export in a worker thread; the result line shows the parity figure, or the error."""
        if self._job is not None and self._job.is_running():
            return
        text = self.path_edit.text().strip()
        if not text:
            self._show("Choose a file to write.", "error")
            return
        path, fmt, source = Path(text).expanduser(), self.chosen_format(), self.source
        self.export_button.setEnabled(False)
        self.busy.setVisible(True)
        self._show(f"Exporting as {EXPORT_FORMATS[fmt][0]} and checking it against PyTorch...", "info")
        self._job = run_in_worker(lambda progress, should_stop: export_source(source, path, fmt),
                                  on_result=self._exported, on_error=self._failed)

    def _exported(self, report: ExportReport) -> None:
        self.report = report
        self._finish()
        settings().setValue(KEY_EXPORT_FOLDER, str(report.path.parent))
        self._show(f"Exported to {report.path}.\nParity: the file gives the probabilities PyTorch gives to within "
                   f"{report.parity:.1e} (largest absolute difference on {report.n_images} images; the limit is "
                   f"{PARITY_TOLERANCE:g}).", "ok")

    def _failed(self, message: str) -> None:
        self._finish()
        self._show(f"Cannot export: {message}", "error")

    def _finish(self) -> None:
        self.busy.setVisible(False)
        self.export_button.setEnabled(True)

    def _show(self, text: str, level: str) -> None:
        colour = {"error": "#b00020", "ok": "#1b5e20"}.get(level, "#333")
        self.result_label.setStyleSheet(f"color: {colour};")
        self.result_label.setText(text)

    def is_busy(self) -> bool:
        return self._job is not None and self._job.is_running()


def _start_folder() -> Path:
    folder = str(settings().value(KEY_EXPORT_FOLDER, "") or "")
    return Path(folder) if folder and Path(folder).is_dir() else Path.home()
