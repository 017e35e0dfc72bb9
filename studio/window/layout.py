"""The main window's layout: the widgets, the docks, the menus and their actions, the tab registry.

:class:`WindowLayout` is mixed into :class:`studio.main_window.MainWindow`; it builds what the window
shows and wires the panels' signals to the window's slots. The teaching views next to the curves
come from :data:`VIEW_TABS` (one entry per tab, each built as ``View(window)``).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QMessageBox, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from engine.api import BUILTIN_GLYPHS, RunConfig
from studio import settings as st
from studio.panels.adapt_panel import AdaptPanel
from studio.panels.algorithm_panel import AlgorithmPanel
from studio.panels.dataset_panel import DatasetPanel
from studio.panels.device_panel import DevicePanel
from studio.panels.evaluation_panel import EvaluationPanel
from studio.panels.inspector_panel import InspectorPanel
from studio.panels.leaderboard_panel import LeaderboardPanel
from studio.panels.log_panel import LogPanel
from studio.panels.navigation_panel import NavigationPanel
from studio.panels.race_panel import RacePanel
from studio.panels.regression_panel import RegressionPanel
from studio.panels.runs_panel import RunsPanel
from studio.panels.scrubber_panel import ScrubberPanel
from studio.panels.sweep_panel import SweepPanel
from studio.panels.training_panel import STOP_SHORTCUT, TrainingPanel
from studio.widgets.training_plots import TrainingPlots
from studio.window.guide import GuidedStart
from studio.window.help import ShortcutsDialog, open_tour

log = logging.getLogger("studio")

# The teaching views next to the curves; each is built as ``View(window)``.
VIEW_TABS: tuple[tuple[str, type], ...] = (
    ("Race", RacePanel),
    ("Leaderboard", LeaderboardPanel),
    ("Sweep", SweepPanel),
    ("Episodes", InspectorPanel),
    ("Inner loop", ScrubberPanel),
    ("Regression", RegressionPanel),
    ("Navigation", NavigationPanel),
)


class _VerticalScrollArea(QScrollArea):
    """A scroll area that scrolls only vertically: at least as wide as its widget's minimum and its vertical
    scroll bar, so a short window (1366x768) scrolls the widget instead of cutting its right edge."""

    def setWidget(self, widget: QWidget) -> None:  # noqa: N802 - Qt API
        super().setWidget(widget)
        widget.installEventFilter(self)  # its minimum changes with its content (a data set loaded)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint, widget = super().minimumSizeHint(), self.widget()
        if widget is None:
            return hint
        width = widget.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return QSize(max(hint.width(), width), hint.height())


def _scrolled(widget: QWidget, horizontal: bool = False) -> QScrollArea:
    """``widget`` in a frameless scroll area (vertical only unless ``horizontal``)."""
    area = QScrollArea() if horizontal else _VerticalScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    if not horizontal:
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


class WindowLayout:
    """Widgets, docks, menus and signal wiring of the main window (a mixin of ``MainWindow``)."""

    log_panel: LogPanel
    store: Any

    def _build_widgets(self) -> None:
        self.log_panel = LogPanel()
        self.log_panel.attach(log)
        self.device_panel = DevicePanel()
        self.training_panel = TrainingPanel(self.device_panel)
        self.dataset_panel = DatasetPanel()
        self.algorithm_panel = AlgorithmPanel()
        self.algorithm_panel.set_device(self.device_panel.device())
        self.guide: GuidedStart | None = None
        self.plots = TrainingPlots()
        self.evaluation_panel = EvaluationPanel(device_getter=self.device_panel.device)
        self.runs_panel = RunsPanel(self.store)

        self.center_tabs = QTabWidget()
        self.center_tabs.setDocumentMode(True)
        self.center_tabs.addTab(self.plots, "Training curves")
        self.center_tabs.addTab(self.evaluation_panel, "Evaluation")
        self.adapt_panel = AdaptPanel(self)
        # scrolled, so that its width never sets the window's minimum width
        self.center_tabs.addTab(_scrolled(self.adapt_panel, horizontal=True), "Adapt")
        self.views: dict[str, QWidget] = {}
        for title, view_class in VIEW_TABS:
            self.views[title] = view_class(self)
            self.center_tabs.addTab(self.views[title], title)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.training_panel)
        layout.addWidget(self.center_tabs, 1)
        self.setCentralWidget(central)
        self.status_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)

    def _build_docks(self) -> None:
        self.setup_tabs = QTabWidget()
        self.setup_tabs.addTab(_scrolled(self.dataset_panel), "Data")
        self.setup_tabs.addTab(_scrolled(self.algorithm_panel), "Algorithm")
        self.setup_dock = QDockWidget("Setup", self)
        self.setup_dock.setObjectName("setup_dock")
        self.setup_dock.setWidget(self.setup_tabs)
        self.setup_dock.setMinimumWidth(360)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.setup_dock)

        self.runs_dock = QDockWidget("Runs", self)
        self.runs_dock.setObjectName("runs_dock")
        self.runs_dock.setWidget(self.runs_panel)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("log_dock")
        self.log_dock.setWidget(self.log_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.runs_dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.splitDockWidget(self.runs_dock, self.log_dock, Qt.Orientation.Horizontal)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.resizeDocks([self.setup_dock], [430], Qt.Orientation.Horizontal)
        self.resizeDocks([self.runs_dock], [230], Qt.Orientation.Vertical)
        self.resizeDocks([self.runs_dock, self.log_dock], [820, 300], Qt.Orientation.Horizontal)

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_action = self._action("Open data set folder…", self.dataset_panel.choose_folder,
                                        [QKeySequence.StandardKey.Open])
        self.builtin_action = self._action("Use the built-in glyphs",
                                           lambda: self.dataset_panel.set_root(BUILTIN_GLYPHS))
        self.load_preset_action = self._action("Load preset…", self.load_preset_dialog)
        self.save_preset_action = self._action("Save preset…", self.save_preset_dialog)
        self.quit_action = self._action("Quit", self.close, [QKeySequence.StandardKey.Quit])
        for action in (self.open_action, self.builtin_action, None, self.load_preset_action,
                       self.save_preset_action, None, self.quit_action):
            file_menu.addSeparator() if action is None else file_menu.addAction(action)

        run_menu = menu.addMenu("&Run")
        self.train_action = self._action("Train", self.start_training,
                                         [QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.pause_action = self._action("Pause / Resume", self.toggle_pause, [QKeySequence("Ctrl+P")])
        # not Esc: Esc cancels an edit or closes a popup, and must never end a run by accident
        self.stop_action = self._action("Stop (keeps the checkpoint)", self.stop_training,
                                        [QKeySequence(STOP_SHORTCUT)])
        self.evaluate_action = self._action("Evaluate selected run", self._evaluate_selected, [QKeySequence("Ctrl+E")])
        self.handoff_action = self._action("Hand off as torchrun command…", self.handoff_to_torchrun)
        for action in (self.train_action, self.pause_action, self.stop_action, None, self.evaluate_action, None,
                       self.handoff_action):
            run_menu.addSeparator() if action is None else run_menu.addAction(action)

        view_menu = menu.addMenu("&View")
        for dock in (self.setup_dock, self.runs_dock, self.log_dock):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = menu.addMenu("&Help")
        self.guide_action = self._action("Getting started…", self.open_guided_start)
        self.shortcuts_action = self._action("Keyboard shortcuts", self.show_shortcuts)
        self.tour_action = self._action("Tour (README)…", self.open_tour)
        self.about_action = self._action("About Meta Studio", self._about)
        for action in (self.guide_action, self.shortcuts_action, self.tour_action, None, self.about_action):
            help_menu.addSeparator() if action is None else help_menu.addAction(action)

    # -- help -------------------------------------------------------------------
    def open_guided_start(self, recommended: RunConfig | None = None) -> GuidedStart:
        """Show the guided start (Help > Getting started; the app at the first launch) and remember that it
        was seen; ``recommended``: another setting for its step 2 (tests train a tiny one)."""
        if self.guide is None or recommended is not None:
            if self.guide is not None:
                self.guide.close()
            self.guide = GuidedStart(self, recommended)
        self.guide.show()
        self.guide.raise_()
        self.guide.activateWindow()
        st.settings().setValue(st.KEY_GUIDE_SEEN, True)
        return self.guide

    def show_shortcuts(self) -> ShortcutsDialog:
        """The keyboard shortcuts of the window's actions (Help > Keyboard shortcuts), non-modal."""
        dialog = ShortcutsDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.shortcuts_dialog = dialog
        return dialog

    def open_tour(self) -> None:
        """Open the README's tour of the window in the desktop's viewer (a local file)."""
        problem = open_tour()
        if problem:
            QMessageBox.information(self, "Tour (README)", problem)

    def _action(self, text: str, slot: Any, shortcuts: list[Any] | None = None) -> QAction:
        action = QAction(text, self)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) if not isinstance(s, QKeySequence) else s for s in shortcuts])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(lambda *_: slot())
        self.addAction(action)
        return action

    def _connect(self) -> None:
        self.dataset_panel.config_changed.connect(self.revalidate)
        self.dataset_panel.loading_changed.connect(lambda _: self.revalidate())
        self.dataset_panel.loaded.connect(self._data_loaded)
        self.algorithm_panel.config_changed.connect(self.revalidate)
        self.device_panel.device_changed.connect(self.algorithm_panel.set_device)
        self.algorithm_panel.save_button.clicked.connect(self.save_preset_dialog)
        self.algorithm_panel.load_button.clicked.connect(self.load_preset_dialog)
        self.algorithm_panel.recipe_chosen.connect(self.apply_recipe)
        self.training_panel.train_clicked.connect(self.start_training)
        self.training_panel.pause_clicked.connect(self.toggle_pause)
        self.training_panel.stop_clicked.connect(self.stop_training)
        self.training_panel.force_stop_clicked.connect(self.force_stop_training)
        for view in self.views.values():  # one training job at a time: Train follows the races
            if hasattr(view, "racing_changed"):
                view.racing_changed.connect(lambda *_: self.revalidate())
        self.runs_panel.selection_changed.connect(self._runs_selected)
        self.runs_panel.open_requested.connect(self.open_run)
        self.runs_panel.evaluate_requested.connect(self.evaluate_run)
        self.runs_panel.resume_requested.connect(self.resume_run)
        self.runs_panel.error.connect(lambda m: self.show_error("Run history", m))
        self.evaluation_panel.error.connect(lambda m: self.show_error("Evaluation failed", m))
        self.evaluation_panel.evaluated.connect(self._evaluated)
        self.plots.smoothing_changed.connect(lambda a: st.settings().setValue(st.KEY_SMOOTHING, a))

