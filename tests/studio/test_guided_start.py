"""The guided start (Help > Getting started; shown at the first launch) and the Help menu.

The three steps are driven by real clicks: the built-in data is chosen, a tiny version of the
recommended setting trains to its end, and the Adapt tab opens on the model just trained.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from engine.api import ALGORITHMS, BUILTIN_GLYPHS, display_title
from studio import settings as st
from studio.panels.training_panel import STOP_SHORTCUT
from studio.window import help as help_module
from studio.window.guide import RECOMMENDED_STEPS, format_duration, recommended_config
from tests.studio.conftest import wait_data

LEFT = Qt.MouseButton.LeftButton


def tiny_recommended():
    """The recommended setting, shrunk so that it trains in seconds (same algorithm, backbone, way, shot)."""
    config = recommended_config(steps=12)
    config.model.hidden_channels = 16
    config.task.n_query, config.task.meta_batch_size = 5, 1
    config.train.val_episodes, config.train.num_threads = 5, 1
    return config


def test_recommended_setting_is_protonet_conv4_5way_1shot():
    config = recommended_config()
    assert (config.algorithm.name, config.model.backbone, config.task.n_way, config.task.n_shot) == \
        ("protonet", "conv4", 5, 1)
    assert config.train.steps == RECOMMENDED_STEPS and config.train.val_every == RECOMMENDED_STEPS // 4
    assert format_duration(130) == "about 2 minutes" and format_duration(31) == "about 30 seconds"


def test_three_steps_by_clicks_train_and_open_adapt(window, qtbot, tiny_flat):
    window.dataset_panel.set_root(tiny_flat)  # another data set first: step 1 must switch to the glyphs
    wait_data(qtbot, window)
    guide = window.open_guided_start(tiny_recommended())
    qtbot.waitExposed(guide)
    assert guide.isVisible() and not guide.isModal()

    # 1. choose the data
    QTest.mouseClick(guide.builtin_button, LEFT)
    assert window.dataset_panel.root() == BUILTIN_GLYPHS
    wait_data(qtbot, window)
    qtbot.waitUntil(lambda: guide.data_status.text().startswith("Ready: the built-in glyphs, 624 classes"))
    assert guide.step_boxes[0].title().endswith("✓")

    # the estimate of step 2 is measured on this computer (a few real steps), never a fixed number
    qtbot.waitUntil(lambda: guide.estimate is not None, timeout=120_000)
    assert guide.estimate.step_s > 0 and guide.estimate.timed_steps >= 1
    assert "on this computer (measured just now:" in guide.estimate_label.text()
    assert f"{1000 * guide.estimate.step_s:.0f} ms a step" in guide.estimate_label.text()

    # 2. train the recommended setting
    assert not guide.adapt_button.isEnabled()
    with qtbot.waitSignal(window.training_ended, timeout=180_000) as ended:
        QTest.mouseClick(guide.train_button, LEFT)
        assert not guide.train_button.isEnabled()  # one run at a time
    assert ended.args == ["finished"]
    qtbot.waitUntil(lambda: window.worker is None, timeout=60_000)
    assert window.algorithm_panel.algorithm_name() == "protonet"  # the setting went into the Algorithm tab
    assert window.algorithm_panel.field("train.steps").value() == 12
    assert guide.progress.value() == guide.progress.maximum() == 12
    assert guide.run_dir is not None and guide.run_dir.parent == window.store.root
    assert guide.step_boxes[1].title().endswith("✓")

    # 3. try it: the Adapt tab with the model just trained
    qtbot.waitUntil(guide.adapt_button.isEnabled)
    QTest.mouseClick(guide.adapt_button, LEFT)
    assert window.center_tabs.tabText(window.center_tabs.currentIndex()) == "Adapt"
    session = window.adapt_panel.session
    qtbot.waitUntil(lambda: session.model_path is not None and guide.run_dir in Path(session.model_path).parents,
                    timeout=60_000)  # this run's model, opened in the worker thread
    assert session.algorithm is not None


def test_choose_a_folder_opens_the_folder_dialog_and_loads_the_folder(window, qtbot, tiny_flat, monkeypatch):
    from studio.panels import dataset_panel

    asked = []

    def pick(parent, title, start):
        asked.append(title)
        return str(tiny_flat)

    monkeypatch.setattr(dataset_panel.QFileDialog, "getExistingDirectory", pick)
    guide = window.open_guided_start(tiny_recommended())
    QTest.mouseClick(guide.folder_button, LEFT)
    assert asked == ["Open data set folder"]
    assert window.dataset_panel.root() == str(tiny_flat)
    wait_data(qtbot, window)
    qtbot.waitUntil(lambda: guide.data_status.text().startswith(f"Ready: {tiny_flat}, 16 classes"))
    assert guide.train_button.isEnabled()
    monkeypatch.setattr(dataset_panel.QFileDialog, "getExistingDirectory", lambda *args: "")  # cancelled
    QTest.mouseClick(guide.folder_button, LEFT)
    assert window.dataset_panel.root() == str(tiny_flat)


def test_help_menu_opens_the_guide_and_a_plain_window_does_not(window, qtbot):
    assert window.guide is None  # a window alone never pops the guide up (the app decides at first launch)
    titles = [action.text() for action in window.menuBar().actions()[-1].menu().actions() if action.text()]
    assert titles == ["Getting started…", "Keyboard shortcuts", "Tour (README)…", "About Meta Studio"]
    window.guide_action.trigger()
    assert window.guide is not None and window.guide.isVisible()
    assert st.read_bool(st.KEY_GUIDE_SEEN)


def test_first_launch_shows_the_guide_once(qtbot):
    from studio.app import open_window

    first = open_window(warm_training_process=False)
    qtbot.addWidget(first)
    wait_data(qtbot, first)
    assert first.guide is not None and first.guide.isVisible()
    first.close()
    second = open_window(warm_training_process=False)
    qtbot.addWidget(second)
    wait_data(qtbot, second)
    assert second.guide is None
    second.close()


def test_shortcuts_dialog_lists_the_actions_shortcuts(window, qtbot):
    window.shortcuts_action.trigger()
    dialog = window.shortcuts_dialog
    qtbot.waitExposed(dialog)
    rows = dict(dialog.rows())
    native = QKeySequence.SequenceFormat.NativeText
    assert QKeySequence("Ctrl+Return").toString(native) in rows["Train"].split(", ")
    assert rows["Stop (keeps the checkpoint)"] == QKeySequence(STOP_SHORTCUT).toString(native)
    assert rows["Pause / Resume"] == QKeySequence("Ctrl+P").toString(native)
    # generated from the actions: a shortcut given to an action shows up with no other edit
    window.evaluate_action.setShortcuts([QKeySequence("Ctrl+Shift+E")])
    window.shortcuts_action.trigger()
    assert dict(window.shortcuts_dialog.rows())["Evaluate selected run"] == \
        QKeySequence("Ctrl+Shift+E").toString(native)


def test_tour_opens_the_local_readme_section(window, monkeypatch):
    opened = []
    monkeypatch.setattr(help_module.QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    window.tour_action.trigger()
    assert len(opened) == 1 and opened[0].isLocalFile()
    readme = Path(opened[0].toLocalFile())
    assert readme.name == "README.md" and readme.is_file()
    headings = [line.lstrip("#").strip() for line in readme.read_text(encoding="utf-8").splitlines()
                if line.startswith("## ")]
    assert opened[0].fragment() in [help_module.heading_anchor(h) for h in headings]
    assert QDesktopServices is help_module.QDesktopServices


def test_about_lists_every_registered_algorithm(window, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "about", lambda parent, title, text: shown.append(text))
    window.about_action.trigger()
    assert len(shown) == 1
    for name in ALGORITHMS:
        assert display_title(name) in shown[0]
    assert str(window.store.root) in shown[0]
