"""Issue 22, more text that ran off or was cut: the run picker's popup is as wide as its longest run and
its current run is cut in the middle (whole in its tooltip); the Adapt tab's test cards show every
probability row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QRect

from engine.algorithms import registry
from engine.config import RunConfig
from engine.io import atomic_write_json
from engine.training.run_store import CONFIG_FILE, RunRecord, RunStore, checkpoint_file, now_iso, write_record
from studio.widgets.elide import ELLIPSIS
from studio.widgets.run_picker import RunPicker
from tests.studio.test_adapt_panel import images_of, protonet_ckpt, protonet_run  # noqa: F401 - fixtures

LONG_NAME = "protonet 5-way 1-shot built-in glyphs with a long tail that tells it apart 07"


def _run(store: RunStore, name: str) -> RunRecord:
    """A run folder with a run.json, a config.json and an (empty) best checkpoint."""
    run_dir = store.new_run_dir(name)
    config = RunConfig(algorithm=registry.ALGORITHM_CONFIGS["protonet"]())
    config.name = name
    atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())
    write_record(RunRecord(run_dir, name, "protonet", "builtin:glyphs", "cpu", "finished", 0.5, 1.0, now_iso(), 10,
                           10))
    path = checkpoint_file(run_dir, "best")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return store.record(run_dir)


def test_the_run_pickers_popup_fits_its_longest_run_and_its_current_run_is_cut_in_the_middle(
        qtbot: Any, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    _run(store, "short")
    long_run = _run(store, LONG_NAME)
    picker = RunPicker(store, object_name="picker")
    qtbot.addWidget(picker)
    picker.resize(220, picker.sizeHint().height())
    picker.show()
    qtbot.waitExposed(picker)
    combo = picker.combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    metrics = combo.view().fontMetrics()
    assert combo.view().minimumWidth() >= max(metrics.horizontalAdvance(text) for text in texts)
    assert picker.select(long_run.run_dir)
    full = combo.currentText()
    assert full.startswith(LONG_NAME) and picker.text() == full
    shown = combo.shown_text()
    assert ELLIPSIS in shown and shown != full  # cut to the narrow combo...
    assert full.endswith(shown.split(ELLIPSIS)[-1]) and full.startswith(shown.split(ELLIPSIS)[0])  # ...in the middle
    assert combo.toolTip() == full  # the whole name in the tooltip


def test_every_probability_row_of_a_test_card_lies_inside_the_card(qtbot: Any, tiny_flat: Path,
                                                                    protonet_ckpt: Path) -> None:
    from studio.panels.adapt_panel import AdaptPanel

    panel = AdaptPanel()
    qtbot.addWidget(panel)
    panel.resize(1400, 900)
    panel.show()
    assert panel.load_checkpoint(protonet_ckpt)
    names = ["class000", "class004", "class009", "class012", "class015"]
    for name in names:
        panel.add_files(panel.add_class(name), images_of(tiny_flat, name, 0, 2))
    panel.add_test_files(images_of(tiny_flat, "class004", 6, 8))
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=30_000)
    tiles = panel.test_zone.tiles
    assert len(tiles) == 2 and all(len(tile.probabilities) == len(names) for tile in tiles)

    def rows_inside(tile) -> bool:
        rows = tile.bars.rows()
        inside = tile.contentsRect()
        return len(rows) == len(names) and all(
            row.isVisible() and row.height() > 0
            and inside.contains(QRect(row.mapTo(tile, QPoint(0, 0)), row.size())) for row in rows)

    qtbot.waitUntil(lambda: all(rows_inside(tile) for tile in tiles), timeout=10_000)
    metrics = tiles[0].bars.rows()[0].fontMetrics()
    assert all(row.height() >= metrics.height() for row in tiles[0].bars.rows())  # a row fits its text
