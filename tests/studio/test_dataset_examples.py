"""The Data tab's example labels keep what tells classes apart: group and class, cut in the middle."""

from __future__ import annotations

from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel

from studio.panels.dataset_panel import LABEL_WIDTH
from tests.studio.conftest import make_window


def _example_labels(window) -> list[QLabel]:
    grid = window.dataset_panel.thumb_grid
    labels = [grid.itemAtPosition(row, 0).widget() for row in range(grid.rowCount())
              if grid.itemAtPosition(row, 0) is not None]
    return [label for label in labels if isinstance(label, QLabel)]


def test_example_labels_keep_both_ends_of_a_long_group_name(qtbot) -> None:
    window = make_window(qtbot)  # the built-in glyphs: nested "Alphabet_NN_Name/characterNN" classes
    qtbot.waitUntil(lambda: len(_example_labels(window)) > 0, timeout=60_000)
    labels = _example_labels(window)
    long_groups = 0
    for label in labels:
        name = label.toolTip()
        group, _, leaf = name.rpartition("/")
        assert group and leaf, f"expected a nested class name, got {name!r}"
        lines = label.text().split("\n")
        assert lines[1] == leaf, f"{name}: the class part must stay whole, shown {lines[1]!r}"
        metrics = QFontMetrics(label.font())
        assert all(metrics.horizontalAdvance(line) <= LABEL_WIDTH for line in lines), f"{name}: {lines} too wide"
        if metrics.horizontalAdvance(group) > LABEL_WIDTH:  # cut: the start and the distinguishing end stay
            long_groups += 1
            assert "\u2026" in lines[0] and not lines[0].startswith("\u2026"), f"{name}: shown {lines[0]!r}"
            assert lines[0].startswith(group[:3]) and lines[0].endswith(group[-4:]), f"{name}: shown {lines[0]!r}"
        else:
            assert lines[0] == group
    assert long_groups > 0, "no example had a group name long enough to be cut: the test checks nothing"
