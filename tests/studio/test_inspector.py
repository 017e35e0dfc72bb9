"""The Episodes tab (studio.panels.inspector_panel): thumbnails per episode, ✓/✗ marks equal to the
predictions, the histogram's bars filter the pager, the runs table drives the run choice, errors are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PySide6.QtCore import Qt

from engine.training.run_store import RunStore
from studio.panels.inspector_panel import CHECK, CROSS, THUMB, InspectorPanel
from tests.engine.helpers import tiny_config

torch.set_num_threads(1)

N_WAY, N_SHOT, N_QUERY = 3, 2, 3   # tiny_config's task: what the panel must default to


@pytest.fixture(scope="module")
def runs_root(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run history with one tiny trained ProtoNet run (2 steps: right and wrong predictions)."""
    from engine.training.trainer import Trainer

    root = tmp_path_factory.mktemp("inspector-runs")
    config = tiny_config(tiny_flat, "protonet", steps=2)
    config.name = "tiny protonet"
    config.train.val_every, config.train.val_episodes, config.train.num_threads = 2, 2, 1
    summary = Trainer(config, run_dir=RunStore(root).new_run_dir(config.name)).run()
    assert summary.status == "finished", summary.message
    return root


@pytest.fixture
def window(qtbot: Any, runs_root: Path) -> Any:
    from studio.main_window import MainWindow

    win = MainWindow(RunStore(runs_root), restore_settings=False, load_data=False)
    win.shown_errors = []
    win.show_error = lambda title, message: win.shown_errors.append((title, message))
    qtbot.addWidget(win)
    win.resize(1500, 920)
    win.show()
    win.center_tabs.setCurrentWidget(win.views["Episodes"])
    qtbot.waitExposed(win)
    return win


def inspect(qtbot: Any, panel: InspectorPanel, episodes: int = 12) -> Any:
    panel.shape_form.spin("episodes").setValue(episodes)
    with qtbot.waitSignal(panel.inspected, timeout=60_000):
        qtbot.mouseClick(panel.inspect_button, Qt.MouseButton.LeftButton)
    assert not panel.is_running()
    return panel.inspection


def test_the_tab_follows_the_runs_table_and_defaults_to_the_runs_shape(window: Any) -> None:
    panel = window.views["Episodes"]
    assert isinstance(panel, InspectorPanel)
    run_dir = window.store.list_runs()[0].run_dir
    window.runs_panel.select_runs([run_dir])
    assert panel.run_picker.run_dir() == run_dir
    assert "tiny protonet" in panel.run_picker.combo.currentText()
    spin = panel.shape_form.spin
    assert (spin("n_way").value(), spin("n_shot").value(), spin("n_query").value()) == (N_WAY, N_SHOT, N_QUERY)
    assert panel.inspect_button.isEnabled()
    panel.shape_form.spin("n_query").setValue(2)
    panel.run_picker.refresh()  # as when the tab is shown again: the choice and the edited fields stay
    assert panel.run_picker.run_dir() == run_dir and panel.shape_form.spin("n_query").value() == 2


def test_thumbnails_and_marks_match_every_episode(qtbot: Any, window: Any) -> None:
    panel = window.views["Episodes"]
    inspection = inspect(qtbot, panel)
    view = panel.episode_view
    assert len(view.support_thumbs) == N_WAY * N_SHOT
    assert len(view.query_cards) == N_WAY * N_QUERY
    assert len(view.class_labels) == N_WAY
    cards_before = list(view.query_cards)
    marks_seen = set()
    for page in range(inspection.n_episodes):
        panel.go_to(page)
        episode = inspection.episodes[panel.current_position()]
        assert panel.page_label.text() == f"episode {page + 1} of {inspection.n_episodes}"
        for i, card in enumerate(view.query_cards):
            right = bool(episode.predicted[i] == episode.query_y[i])
            assert card.correct is right
            symbol = CHECK if right else CROSS
            assert card.mark.text() == f"{symbol} {float(episode.probabilities[i, episode.predicted[i]]):.0%}"
            assert card.prediction.text() == f"→ class {int(episode.predicted[i]) + 1}"
            assert card.image.pixmap().width() == THUMB
            marks_seen.add(symbol)
        for label, name in zip(view.class_labels, episode.class_names):
            assert label.toolTip() == name
    assert marks_seen == {CHECK, CROSS}      # the tiny model gets some right and some wrong
    assert view.query_cards == cards_before  # paging refills the same widgets
    # Previous / Next buttons page; the view is reused for a second inspection of the same shape
    panel.go_to(0)
    qtbot.mouseClick(panel.next_button, Qt.MouseButton.LeftButton)
    assert panel.page == 1
    qtbot.mouseClick(panel.prev_button, Qt.MouseButton.LeftButton)
    assert panel.page == 0 and not panel.prev_button.isEnabled()
    inspect(qtbot, panel, episodes=3)
    assert panel.episode_view is view and panel.page_label.text() == "episode 1 of 3"


def test_clicking_a_histogram_bar_pages_through_exactly_that_bins_episodes(qtbot: Any, window: Any) -> None:
    panel = window.views["Episodes"]
    inspection = inspect(qtbot, panel, episodes=16)
    bins = inspection.bins(len(panel.histogram.bins))
    filled = [i for i, (_, _, members) in enumerate(bins) if members]
    assert len(filled) >= 2, "the tiny model should give episodes of different accuracies"
    target = min(filled, key=lambda i: len(bins[i][2]))  # a bin holding only part of the episodes
    low, high, members = bins[target]

    plot = panel.histogram
    view_box = plot.getPlotItem().getViewBox()
    point = plot.mapFromScene(view_box.mapViewToScene(plot.bar_centre(target)))
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=point)

    assert panel.filter_bin == target and panel.visible == members
    assert panel.page_label.text() == f"episode 1 of {len(members)} in the chosen bin"
    shown = []
    for page in range(len(members)):
        panel.go_to(page)
        shown.append(panel.current_position())
        assert low - 1e-6 <= inspection.episodes[shown[-1]].accuracy <= high + 1e-6
    assert shown == members
    assert panel.clear_filter_button.isEnabled()
    qtbot.mouseClick(panel.clear_filter_button, Qt.MouseButton.LeftButton)
    assert panel.filter_bin is None and panel.visible == list(range(inspection.n_episodes))


def test_next_mistake_lands_on_an_episode_with_a_wrong_prediction(qtbot: Any, window: Any) -> None:
    panel = window.views["Episodes"]
    inspection = inspect(qtbot, panel)
    expected = next(p for p in range(1, inspection.n_episodes) if inspection.episodes[p].n_wrong)
    qtbot.mouseClick(panel.next_mistake_button, Qt.MouseButton.LeftButton)
    assert panel.current_position() == expected
    assert any(card.mark.text().startswith(CROSS) for card in panel.episode_view.query_cards)


def test_bad_episode_shape_is_reported_by_name(qtbot: Any, window: Any) -> None:
    panel = window.views["Episodes"]
    panel.shape_form.spin("n_way").setValue(9)  # the run has 4 test classes
    qtbot.mouseClick(panel.inspect_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60_000)
    assert window.shown_errors and "n_way=9: only 4 classes" in window.shown_errors[-1][1]
    assert "n_way=9" in panel.summary_label.text()
    assert panel.inspect_button.isEnabled() and panel.inspection is None


def test_cancel_stops_the_worker_and_keeps_what_was_done(qtbot: Any, window: Any) -> None:
    panel = window.views["Episodes"]
    panel.shape_form.spin("episodes").setValue(10_000)
    qtbot.mouseClick(panel.inspect_button, Qt.MouseButton.LeftButton)
    assert panel.is_running() and panel.cancel_button.isEnabled() and not panel.inspect_button.isEnabled()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60_000)
    if panel.inspection is None:
        assert panel.summary_label.text() == "Cancelled before the first episode."
    else:
        assert panel.inspection.stopped and panel.inspection.n_episodes < 10_000
        assert f"stopped after {panel.inspection.n_episodes} of 10000" in panel.summary_label.text()
    assert panel.inspect_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert window.shown_errors == []
