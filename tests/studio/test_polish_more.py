"""Issue 22, more text that ran off or was cut: the run picker's popup is as wide as its longest run and
its current run is cut in the middle (whole in its tooltip); the Adapt tab's test cards show every
probability row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.algorithms import registry
from engine.config import RunConfig
from engine.io import atomic_write_json
from engine.training.run_store import CONFIG_FILE, RunRecord, RunStore, checkpoint_file, now_iso, write_record
from studio.widgets.elide import ELLIPSIS
from studio.widgets.run_picker import RunPicker

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
