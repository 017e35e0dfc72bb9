"""The Leaderboard view: the newest leaderboard JSON under the runs folder is shown at start (one row per
algorithm), a header click sorts the table (and the chart follows), the chart has one bar per algorithm and
shot with its CI, a damaged file is named in one message, and Run trains a tiny leaderboard in the background."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from engine.config import RunConfig
from engine.leaderboard import Leaderboard, LeaderboardRow, ShotResult, save_leaderboard
from studio.panels.leaderboard_panel import LeaderboardPanel
from tests.conftest import write_dataset

ROWS = (("protonet", "ProtoNet", 0.91, 0.97, 30.0), ("maml", "MAML", 0.84, 0.95, 120.0),
        ("simpleshot", "SimpleShot", 0.88, 0.96, 10.0))


def make_board() -> Leaderboard:
    rows = [LeaderboardRow(algorithm=name, title=title, kind="metric", status="finished", steps_done=100,
                           total_steps=100, train_seconds=seconds, peak_memory_bytes=2**20 * (i + 1),
                           memory_method="CPU: test",
                           results=[ShotResult(5, 1, 600, 0, one, 0.01 * (i + 1)), ShotResult(5, 5, 600, 0, five, 0.005)])
            for i, (name, title, one, five, seconds) in enumerate(ROWS)]
    settings = {"common": {"train": {"steps": 100}}, "episodes": 600, "seed": 0, "n_way": 5, "shots": [1, 5],
                "n_query": 15, "test_root": ""}
    return Leaderboard(name="Test board", settings=settings, rows=rows, device="cpu", test_classes="the test classes")


class FakeWindow:
    """What the view asks of the main window: the run store's root, the Setup panel's config, errors."""

    def __init__(self, root: Path, config: RunConfig | None = None) -> None:
        self.store = SimpleNamespace(root=root)
        self.config = config
        self.errors: list[str] = []

    def show_error(self, title: str, message: str) -> None:
        self.errors.append(f"{title}: {message}")

    def is_training(self) -> bool:
        return False

    def current_config(self) -> RunConfig | None:
        return self.config

    def config_errors(self) -> list[str]:
        return []


@pytest.fixture
def panel(qtbot: Any, tmp_path: Path) -> LeaderboardPanel:
    save_leaderboard(make_board(), tmp_path / "leaderboards" / "20260101-board.json")
    view = LeaderboardPanel(FakeWindow(tmp_path))
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    return view


def column_texts(view: LeaderboardPanel, column: int) -> list[str]:
    return [view.table.item(r, column).text() for r in range(view.table.rowCount())]


def header_click(view: LeaderboardPanel, title: str) -> None:
    header = view.table.horizontalHeader()
    column = [view.table.horizontalHeaderItem(c).text() for c in range(view.table.columnCount())].index(title)
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2))


def test_the_latest_leaderboard_is_shown_with_one_row_per_algorithm(panel: LeaderboardPanel, tmp_path: Path) -> None:
    assert panel.path == tmp_path / "leaderboards" / "20260101-board.json"
    headers = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    assert headers == ["Algorithm", "Kind", "5-way 1-shot", "5-way 5-shot", "Train time", "Peak memory", "Status"]
    assert column_texts(panel, 0) == ["ProtoNet", "SimpleShot", "MAML"]  # best 1-shot first
    assert column_texts(panel, 2) == ["91.00% ± 1.00%", "88.00% ± 3.00%", "84.00% ± 2.00%"]
    assert column_texts(panel, 5) == ["1.0 MiB", "3.0 MiB", "2.0 MiB"]
    assert "600 seeded episodes" in panel.notes.text()


def test_clicking_a_header_sorts_the_rows_and_the_chart_follows(panel: LeaderboardPanel) -> None:
    header_click(panel, "Train time")
    first = column_texts(panel, 0)
    assert first in (["SimpleShot", "ProtoNet", "MAML"], ["MAML", "ProtoNet", "SimpleShot"])  # by seconds, not text
    header_click(panel, "Train time")
    assert column_texts(panel, 0) == first[::-1]
    ticks = [label for _, label in panel.chart.plot.getAxis("bottom")._tickLevels[0]]
    assert ticks == first[::-1]
    header_click(panel, "Algorithm")
    assert column_texts(panel, 0) in (["MAML", "ProtoNet", "SimpleShot"], ["SimpleShot", "ProtoNet", "MAML"])


def test_the_chart_has_one_bar_per_algorithm_and_shot_with_ci_error_bars(panel: LeaderboardPanel) -> None:
    order = [row.algorithm for row in panel.rows_in_table_order()]
    assert order == ["protonet", "simpleshot", "maml"]
    for shot in (1, 5):
        assert panel.chart.bar_count(shot) == 3
    heights = panel.chart.bars[1].opts["height"]
    np.testing.assert_allclose(heights, [91.0, 88.0, 84.0])
    np.testing.assert_allclose(panel.chart.error_bars[1].opts["height"], [2.0, 6.0, 4.0])  # 2 x CI, in %
    assert [label.text for _, label in panel.chart.legend.items] == ["1-shot", "5-shot"]  # one entry per shot


def test_a_damaged_file_is_named_and_the_shown_board_stays(panel: LeaderboardPanel, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert panel.open_file(bad) is False
    (message,) = panel.window.errors
    assert str(bad) in message and "damaged leaderboard file" in message
    assert panel.table.rowCount() == 3


def test_run_trains_a_tiny_leaderboard_in_the_background(qtbot: Any, tmp_path: Path) -> None:
    config = RunConfig()
    config.data.root = str(write_dataset(tmp_path / "data", n_classes=20, n_images=20))  # 5 shots + 15 queries
    config.data.train_ratio, config.data.val_ratio = 0.5, 0.2
    config.task.n_way, config.task.n_query, config.task.meta_batch_size = 3, 2, 1
    config.model.hidden_channels = 8
    config.train.val_every, config.train.val_episodes, config.train.num_threads = 0, 2, 1
    window = FakeWindow(tmp_path / "runs", config)
    view = LeaderboardPanel(window)
    qtbot.addWidget(view)
    view.show()
    assert view.table.rowCount() == 0  # no leaderboard under this runs folder yet
    view.algorithms.setText("protonet,simpleshot")
    view.steps.setValue(2)
    view.episodes.setValue(3)
    seen: list[int] = []
    view.progress.valueChanged.connect(seen.append)
    QTest.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert view.is_running() and not view.run_button.isEnabled()
    qtbot.waitUntil(lambda: not view.is_running(), timeout=300_000)
    assert window.errors == []
    assert sorted(column_texts(view, 0)) == ["ProtoNet", "SimpleShot"]
    assert column_texts(view, 6) == ["finished", "finished"], view.notes.text()
    assert view.path is not None and view.path.is_file() and view.path.parent == tmp_path / "runs" / "leaderboards"
    assert seen and max(seen) > 0
    assert view.chart.bar_count(1) == 2 and view.chart.bar_count(5) == 2
