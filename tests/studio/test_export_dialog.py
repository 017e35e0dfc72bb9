"""The Adapt panel's Export dialog: three formats, the export in a worker thread, the parity figure shown."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from studio.panels import export_dialog
from tests.studio.test_adapt_panel import images_of, make_classes, panel, protonet_ckpt, protonet_run, wait_idle  # noqa: F401


def ready_panel(panel, qtbot, protonet_ckpt, tiny_flat):  # noqa: F811
    assert panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2)
    queries = images_of(tiny_flat, "class000", 5, 8)
    panel.add_test_files(queries)
    wait_idle(qtbot, panel)
    qtbot.waitUntil(lambda: len(panel.session.predictions()) == 3, timeout=30_000)
    return queries


def open_dialog(panel, qtbot):  # noqa: F811
    QTest.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.findChild(export_dialog.ExportDialog) is not None, timeout=10_000)
    dialog = panel.findChild(export_dialog.ExportDialog)
    qtbot.waitUntil(dialog.isVisible, timeout=10_000)
    return dialog


def test_export_as_onnx_shows_the_parity_figure_and_the_file_predicts_as_the_panel(panel, qtbot, protonet_ckpt,  # noqa: F811
                                                                                   tiny_flat, tmp_path: Path):
    queries = ready_panel(panel, qtbot, protonet_ckpt, tiny_flat)
    dialog = open_dialog(panel, qtbot)
    assert [b.text().split("  ")[0] for b in dialog.format_buttons.buttons()] == [
        "ONNX", "pt2 (torch.export program)", "TorchScript (legacy)"]
    assert dialog.chosen_format() == "onnx"
    dialog.path_edit.clear()
    QTest.keyClicks(dialog.path_edit, str(tmp_path / "mine.onnx"))
    QTest.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.report is not None or "Cannot" in dialog.result_label.text(), timeout=180_000)
    text = dialog.result_label.text()
    assert dialog.report is not None, text
    assert f"Exported to {tmp_path / 'mine.onnx'}" in text and "Parity:" in text
    assert f"{dialog.report.parity:.1e}" in text and dialog.report.parity <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "mine.onnx"), providers=["CPUExecutionProvider"])
    x = panel.session.checkpoint.preprocessing.load_many(queries)[0]
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    expected = torch.tensor([panel.session.predictions()[str(p)] for p in queries])
    assert torch.allclose(got, expected, atol=1e-4)


def test_choosing_a_format_sets_the_file_suffix_and_the_browse_dialog_gets_it(panel, qtbot, protonet_ckpt,  # noqa: F811
                                                                               tiny_flat, tmp_path: Path,
                                                                               monkeypatch):
    ready_panel(panel, qtbot, protonet_ckpt, tiny_flat)
    dialog = open_dialog(panel, qtbot)
    dialog.path_edit.setText(str(tmp_path / "model.onnx"))
    radio = dialog.findChild(type(dialog.format_buttons.button(0)), "format_pt2")
    on_label = QPoint(30, radio.height() // 2)  # a radio button takes clicks on its indicator and text only
    QTest.mouseClick(radio, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, on_label)
    qtbot.waitUntil(lambda: dialog.chosen_format() == "pt2", timeout=5_000)
    assert dialog.path_edit.text() == str(tmp_path / "model.pt2")
    asked = []
    monkeypatch.setattr(export_dialog, "ask_export_file",
                        lambda parent, fmt, current: asked.append((fmt, current)) or tmp_path / "chosen")
    QTest.mouseClick(dialog.browse_button, Qt.MouseButton.LeftButton)
    assert asked == [("pt2", str(tmp_path / "model.pt2"))]
    assert dialog.path_edit.text() == str(tmp_path / "chosen.pt2")
