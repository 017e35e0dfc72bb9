"""Issue 22, text that runs off: in a nested data set ("Alphabet/character02") the Evaluation view names
classes with their group, cut in the middle to the space they have, in full in a tooltip: the captions of
the misclassified images, the per-class table and the per-class bars."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QPointF, QRect, QSize, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QStyleOptionViewItem

from engine.config import RunConfig
from engine.training.run_store import RunStore
from studio.panels.evaluation_panel import EvaluationPanel
from studio.widgets.elide import ELLIPSIS
from studio.widgets.eval_charts import elide_class_name
from tests.conftest import make_class_images

TEST_GROUPS = ["Alphabet_of_the_Magi", "Old_Church_Slavonic_(Cyrillic)"]  # the same character names in both
GROUPS = [*TEST_GROUPS, "Bengali", "Tifinagh", "Latin"]
CHARACTERS = [f"character{i:02d}" for i in range(1, 5)]


@pytest.fixture(scope="module")
def nested_run(tmp_path_factory) -> tuple[Path, Path]:
    """(runs root, run folder) of a run trained headless for a few steps on a nested data set whose test
    alphabets have the same character folder names."""
    from engine.training.trainer import Trainer
    from studio.datasets import load_data_cached

    data_root = tmp_path_factory.mktemp("alphabets")
    for g, group in enumerate(GROUPS):
        for c, character in enumerate(CHARACTERS):
            folder = data_root / group / character
            folder.mkdir(parents=True)
            for i, image in enumerate(make_class_images(100 * g + c, 6)):
                Image.fromarray(image, mode="L").save(folder / f"{i:02d}.png")
    config = RunConfig.from_dict({
        "data": {"root": str(data_root), "split_mode": "group", "val_groups": ["Bengali"],
                 "test_groups": TEST_GROUPS},
        "task": {"n_way": 3, "n_shot": 1, "n_query": 2, "meta_batch_size": 1}, "model": {"hidden_channels": 8},
        "train": {"steps": 3, "val_every": 3, "val_episodes": 2, "checkpoint_every": 3, "num_threads": 1}})
    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_dir = store.new_run_dir("nested")
    Trainer(config, run_dir=run_dir, data=load_data_cached(config.data)).run()
    return store.root, run_dir


@pytest.fixture
def evaluated(nested_run, qtbot) -> EvaluationPanel:
    """The Evaluation view after pressing Evaluate on the nested run (8-way, so all test classes)."""
    root, run_dir = nested_run
    panel = EvaluationPanel()
    qtbot.addWidget(panel)
    panel.resize(760, 640)
    panel.show()
    panel.set_run(RunStore(root).record(run_dir))
    panel.shape_form.load({"episodes": 6, "n_way": 8, "n_shot": 1, "n_query": 4})
    with qtbot.waitSignal(panel.evaluated, timeout=120_000):
        QTest.mouseClick(panel.evaluate_button, Qt.MouseButton.LeftButton)
    assert "Test accuracy" in panel.accuracy_label.text()
    return panel


def _names_class_with_group(shown: str, name: str) -> bool:
    """``shown`` is ``name`` with its class folder whole and its group whole or cut in its middle (some of
    its start and end kept)."""
    group, _, leaf = name.rpartition("/")
    shown_group, slash, shown_leaf = shown.rpartition("/")
    if not slash or shown_leaf != leaf:
        return False
    start, cut, end = shown_group.partition(ELLIPSIS)
    return shown_group == group or (bool(cut) and bool(start) and group.startswith(start) and group.endswith(end))


def test_misclassified_captions_keep_the_alphabet_and_fit_the_item(evaluated):
    panel = evaluated
    mistakes = panel.output.result.misclassified
    assert panel.gallery.count() > 0
    metrics, width = panel.gallery.fontMetrics(), panel.gallery.gridSize().width()
    first_lines: dict[str, str] = {}
    for row in range(panel.gallery.count()):
        item, mistake = panel.gallery.item(row), mistakes[row]
        true_line, predicted_line, confidence = item.text().split("\n")
        assert _names_class_with_group(true_line, mistake.true_class), (true_line, mistake.true_class)
        assert _names_class_with_group(predicted_line.removeprefix("→ "), mistake.predicted_class), predicted_line
        assert predicted_line.startswith("→ ")
        assert confidence == f"{mistake.confidence:.0%} sure"
        assert all(metrics.horizontalAdvance(line) < width for line in item.text().split("\n"))
        assert mistake.true_class in item.toolTip() and mistake.predicted_class in item.toolTip()
        first_lines.setdefault(mistake.true_class, true_line)
    # two alphabets with the same character names: every true class has a caption of its own
    assert len(set(first_lines.values())) == len(first_lines) > 1
    assert any(ELLIPSIS in line for line in first_lines.values())  # the long alphabet was cut in its middle


def test_per_class_table_and_bars_name_classes_with_their_group(evaluated, qtbot):
    panel = evaluated
    table, names = panel.class_table, panel.output.result.class_names
    assert sorted(table.item(row, 1).text() for row in range(table.rowCount())) == sorted(names)
    delegate = table.itemDelegateForColumn(1)
    cut = 0
    for row in range(table.rowCount()):
        item = table.item(row, 1)
        assert item.toolTip() == item.text()  # the full name
        option = QStyleOptionViewItem()  # the cell as the delegate draws it, 160 px wide
        option.rect = QRect(table.visualRect(table.indexFromItem(item)).topLeft(), QSize(160, 24))
        option.fontMetrics, option.widget = table.fontMetrics(), table
        delegate.initStyleOption(option, table.indexFromItem(item))
        assert _names_class_with_group(option.text, item.text()), option.text
        assert table.fontMetrics().horizontalAdvance(option.text) <= option.rect.width()
        cut += option.text != item.text()
    assert cut > 0  # the column was too narrow for the long alphabet's names: cut, not run off

    bars = panel.bars  # hovering a bar names its class in full
    index = len(names) - 1
    scene_point = bars.getPlotItem().getViewBox().mapViewToScene(QPointF(index, 0.5))
    QTest.mouseMove(bars.viewport(), bars.mapFromScene(scene_point))
    qtbot.waitUntil(lambda: bars.hover_label.isVisible(), timeout=10_000)
    assert names[index] in bars.hover_label.toPlainText()


def test_elide_class_name_keeps_the_class_and_cuts_the_group_first(qapp):
    from PySide6.QtGui import QFontMetrics

    metrics = QFontMetrics(qapp.font())
    name = "Old_Church_Slavonic_(Cyrillic)/character02"
    assert elide_class_name(name, metrics, 10_000) == name
    width = metrics.horizontalAdvance("Old_Ch…/character02") + 2
    shown = elide_class_name(name, metrics, width)
    assert shown.endswith("/character02") and shown.startswith("Old") and ELLIPSIS in shown
    assert metrics.horizontalAdvance(shown) <= width
    tiny = elide_class_name(name, metrics, metrics.horizontalAdvance("Old…02"))
    assert tiny.startswith("O") and tiny.endswith("2") and ELLIPSIS in tiny  # both ends, when nothing fits
    assert elide_class_name("flat_class_name_that_is_long", metrics, 60).count(ELLIPSIS) == 1
