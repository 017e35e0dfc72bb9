"""The algorithm form says in one line what the chosen algorithm does and names its paper (the config's
``summary`` and ``Algorithm.paper``), for every registered algorithm, as the user changes the choice."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.api import ALGORITHM_CONFIGS, ALGORITHMS
from studio.panels.algorithm_panel import AlgorithmPanel


def test_the_summary_line_names_what_each_algorithm_does_and_its_paper(qtbot: Any) -> None:
    panel = AlgorithmPanel()
    qtbot.addWidget(panel)
    panel.show()
    combo = panel.algorithm_combo
    combo.setFocus()
    assert combo.currentData() == "protonet"
    QTest.keyClick(combo, Qt.Key.Key_Down)  # the user picks the next algorithm with the keyboard
    chosen = combo.currentData()
    assert chosen != "protonet"
    text = panel.summary_label.text()
    assert ALGORITHM_CONFIGS[chosen].summary in text and f"Paper: {ALGORITHMS[chosen].paper}" in text
    for name in ALGORITHMS:
        panel.set_algorithm(name)
        text = panel.summary_label.text()
        assert ALGORITHMS[name].paper, f"{name} declares no paper"
        assert text.startswith(ALGORITHM_CONFIGS[name].summary) and text.endswith(f"Paper: {ALGORITHMS[name].paper}.")
        assert "\n" not in text, "one line (the label wraps it)"
        assert combo.itemData(combo.currentIndex(), Qt.ItemDataRole.ToolTipRole) == text
