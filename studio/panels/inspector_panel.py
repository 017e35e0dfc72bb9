"""Episode inspector: page through a run's evaluation episodes, one at a time.

For a chosen run, :func:`engine.inspection.inspect_episodes` runs in a worker thread
(the same episodes and accuracies as the Evaluation view for the same seed). The view
then shows a histogram of per-episode accuracy with the mean and its 95% CI (click a
bar to page through the episodes of that bin only) and, for one episode at a time, the
support images grouped by class and every query image with its predicted class, the
probability of that prediction and a ✓ / ✗ mark (a symbol as well as a colour).

The episode widgets are built once per episode shape and refilled when paging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QScrollArea, QSplitter, QVBoxLayout, QWidget)

from engine.api import ALGORITHMS, EngineError, EpisodeShape, RunRecord, display_title
from studio.jobs.background import BackgroundJobMixin
from studio.widgets.elide import WrappedLabel
from studio.widgets.fields import spin_box
from studio.widgets.accuracy_histogram import AccuracyHistogram
from studio.widgets.episode_form import EpisodeShapeForm
from studio.widgets.inspected_episode import CHECK, CROSS, THUMB, EpisodeView
from studio.widgets.run_picker import RunPicker, has_checkpoint
from studio.widgets.transductive_note import TransductiveNote
from studio.jobs.thread import WorkerHandle

__all__ = ["CHECK", "CROSS", "THUMB", "InspectorPanel", "inspection_job"]

N_BINS = 20
DEFAULT_EPISODES = 100


def inspection_job(run_dir: Path, *, which: str, split: str, episodes: int, n_way: int, n_shot: int, n_query: int,
                   seed: int, device: str) -> Callable[[Any, Any], Any]:
    """The function :func:`run_in_worker` runs: load the checkpoint and its data (cached), inspect."""

    def job(progress: Any, should_stop: Any) -> Any:
        from engine.api import inspect_episodes
        from studio.datasets import load_data_cached

        return inspect_episodes(run_dir, n_episodes=episodes, n_way=n_way, n_shot=n_shot, n_query=n_query,
                                split=split, seed=seed, device=device, which=which, progress=progress,
                                should_stop=should_stop,
                                data_loader=lambda cfg, class_split: load_data_cached(cfg, split=class_split))

    return job


# -- the panel -----------------------------------------------------------------------------------------
class InspectorPanel(QWidget, BackgroundJobMixin):
    """Pick a run, inspect N seeded episodes in the background, then browse them."""

    inspected = Signal(object)   # engine.inspection.EpisodeInspection

    def __init__(self, window: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.window_ = window
        self.inspection: Any = None
        self.visible: list[int] = []        # positions (into inspection.episodes) the pager shows
        self.page = 0
        self.filter_bin: int | None = None
        self.episode_view: EpisodeView | None = None
        self.bins: list[tuple[float, float, list[int]]] = []
        self._handle: WorkerHandle | None = None
        self._running = False
        self._inspected_run = ""
        self._build(getattr(window, "store", None))
        self.run_picker.refresh()
        runs_panel = getattr(window, "runs_panel", None)
        if runs_panel is not None:
            runs_panel.selection_changed.connect(self._runs_selected)
        if hasattr(window, "training_ended"):
            window.training_ended.connect(self.run_picker.refresh_if_visible)

    # -- layout ---------------------------------------------------------------
    def _build(self, store: Any) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_controls(store))
        splitter.addWidget(self._build_pager())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([330, 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(splitter)
        self._update_pager()

    def _build_controls(self, store: Any) -> QWidget:
        """Left column: run, episode settings, Inspect / Cancel, summary, histogram and its filter."""
        self.run_picker = RunPicker(store, object_name="inspector_run", refresh_button=True,
                                    empty_text="no run with a checkpoint yet: train one")
        self.run_picker.run_changed.connect(self._run_chosen)
        self.run_picker.listed_runs.connect(lambda _: self._update_buttons())
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.addItem("best (top validation accuracy)", "best")
        self.checkpoint_combo.addItem("last", "last")
        self.classes_combo = QComboBox()
        for text, value in (("test classes", "test"), ("validation classes", "val"), ("training classes", "train")):
            self.classes_combo.addItem(text, value)
        self.shape_form = EpisodeShapeForm(initial=EpisodeShape(episodes=DEFAULT_EPISODES), per_row=2)
        self.seed_spin = spin_box(0, 2**31 - 1, 0, "Seed of the episodes; the Evaluation view uses 0, so seed 0 "
                                                     "shows its very episodes.", expanding=True)
        self.inspect_button = QPushButton("Inspect")
        self.inspect_button.setObjectName("inspect_button")
        self.inspect_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setObjectName("inspector_progress")
        self.progress.hide()
        # wrapped labels as tall as their text at their width: the histogram shrinks for them, nothing is cut
        self.summary_label = WrappedLabel("Pick a run with a checkpoint and press Inspect.")
        self.summary_label.setObjectName("inspector_summary")
        self.summary_label.setStyleSheet("font-weight: bold;")
        self.details_label = WrappedLabel("")
        self.details_label.setStyleSheet("color: #606060;")
        self.transductive_note = TransductiveNote()  # shown for a transductive algorithm's episodes
        self.histogram = AccuracyHistogram()
        self.histogram.setMinimumHeight(100)  # shrinks on a short screen (1366x768) rather than cut the page
        self.histogram.bin_clicked.connect(self.toggle_bin)
        self.filter_label = QLabel("")
        self.filter_label.setWordWrap(True)
        self.clear_filter_button = QPushButton("Show all episodes")
        self.clear_filter_button.setEnabled(False)
        self.clear_filter_button.clicked.connect(self.clear_filter)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Run", self.run_picker)
        form.addRow("Checkpoint", self.checkpoint_combo)
        form.addRow("Classes", self.classes_combo)
        form.addRow(self.shape_form)
        form.addRow("Seed", self.seed_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.inspect_button)
        buttons.addWidget(self.cancel_button)
        filter_row = QHBoxLayout()
        filter_row.addWidget(self.filter_label, 1)
        filter_row.addWidget(self.clear_filter_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 4, 0)
        left_layout.addLayout(form)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.progress)
        left_layout.addWidget(self.summary_label)
        left_layout.addWidget(self.details_label)
        left_layout.addWidget(self.transductive_note)
        left_layout.addWidget(self.histogram, 1)
        left_layout.addLayout(filter_row)
        left.setMinimumWidth(360)
        return left

    def _build_pager(self) -> QWidget:
        """Right column: previous / next, the episode's numbers and its thumbnails (scrolled)."""
        self.prev_button = QPushButton("◀ Previous")
        self.prev_button.clicked.connect(lambda: self.go_to(self.page - 1))
        self.next_button = QPushButton("Next ▶")
        self.next_button.clicked.connect(lambda: self.go_to(self.page + 1))
        self.next_mistake_button = QPushButton("Next with a mistake ▶▶")
        self.next_mistake_button.setToolTip("Page to the next episode (of those shown) with a wrong prediction.")
        self.next_mistake_button.clicked.connect(self.next_mistake)
        self.page_label = QLabel("")
        self.page_label.setObjectName("inspector_page")
        self.episode_label = QLabel("")
        self.episode_label.setStyleSheet("color: #505050;")
        pager = QHBoxLayout()
        pager.addWidget(self.prev_button)
        pager.addWidget(self.page_label)
        pager.addWidget(self.next_button)
        pager.addWidget(self.next_mistake_button)
        pager.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.empty_label = QLabel("The episodes appear here.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color: #808080;")
        self.scroll.setWidget(self.empty_label)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(4, 0, 0, 0)
        right_layout.addLayout(pager)
        right_layout.addWidget(self.episode_label)
        right_layout.addWidget(self.scroll, 1)
        return right

    # -- runs -----------------------------------------------------------------
    def _runs_selected(self, records: list[RunRecord]) -> None:
        """Follow the Runs table: its one selected run, when that has a checkpoint."""
        if len(records) == 1 and has_checkpoint(records[0]):
            self.run_picker.select(records[0].run_dir)

    def _run_chosen(self) -> None:
        """Default episode shape: the chosen run's evaluation shape."""
        run_dir = self.run_picker.run_dir()
        if run_dir is not None:
            try:
                task = self.run_picker.store.read_config(run_dir).task
            except EngineError:
                task = None
            if task is not None:
                self.shape_form.load({"n_way": task.eval_n_way, "n_shot": task.eval_n_shot, "n_query": task.n_query})
        self._update_buttons()

    # -- running --------------------------------------------------------------
    def start(self) -> WorkerHandle | None:
        """Inspect the chosen run's episodes in a worker thread."""
        run_dir = self.run_picker.run_dir()
        if run_dir is None or self._running:
            return None
        device_panel = getattr(self.window_, "device_panel", None)
        shape = self.shape_form.shape()
        job = inspection_job(run_dir, which=self.checkpoint_combo.currentData(),
                             split=self.classes_combo.currentData(), episodes=shape.episodes, n_way=shape.n_way,
                             n_shot=shape.n_shot, n_query=shape.n_query, seed=self.seed_spin.value(),
                             device=device_panel.device() if device_panel is not None else "cpu")
        self._inspected_run = self.run_picker.text()
        self.summary_label.setText(f"Inspecting {self._inspected_run}…")
        self.details_label.setText("")
        return self._launch(job)

    def _failed(self, message: str) -> None:
        self._finished()
        self.summary_label.setText(f"Inspection failed: {message}")
        show_error = getattr(self.window_, "show_error", None)
        if show_error is not None:
            show_error("Episode inspection failed", message)

    def _update_buttons(self) -> None:
        self.inspect_button.setEnabled(not self._running and self.run_picker.run_dir() is not None)
        self.cancel_button.setEnabled(self._running)

    # -- results --------------------------------------------------------------
    def _show(self, inspection: Any) -> None:
        self._finished()
        if inspection.n_episodes == 0:
            self.summary_label.setText("Cancelled before the first episode.")
            return
        self.show_inspection(inspection)

    def show_inspection(self, inspection: Any) -> None:
        """Show an engine.inspection.EpisodeInspection: summary, histogram, first episode."""
        self.inspection = inspection
        stopped = f" (stopped after {inspection.n_episodes} of {inspection.requested_episodes})" \
            if inspection.stopped else ""
        self.summary_label.setText(f"Mean accuracy {inspection.mean:.1%} ± {inspection.ci95:.1%} (95% CI) over "
                                   f"{inspection.n_episodes} episodes{stopped}")
        run = f"{self._inspected_run}; " if self._inspected_run else ""
        self.details_label.setText(
            f"{run}{inspection.n_way}-way {inspection.n_shot}-shot, {inspection.n_query} queries per class, "
            f"{inspection.scope}; {inspection.algorithm} checkpoint at step {inspection.checkpoint_step:,}.")
        algorithm = ALGORITHMS.get(inspection.algorithm)
        self.transductive_note.show_for(bool(algorithm and algorithm.transductive),
                                        display_title(inspection.algorithm))
        self.bins = inspection.bins(N_BINS)
        self.histogram.set_data(self.bins, inspection.mean, inspection.ci95)
        if self.episode_view is None or self.episode_view.shape != (inspection.n_way, inspection.n_shot,
                                                                    inspection.n_query):
            self.episode_view = EpisodeView(inspection.n_way, inspection.n_shot, inspection.n_query)
            self.scroll.setWidget(self.episode_view)  # the scroll area deletes the previous one
        self.clear_filter()
        self.inspected.emit(inspection)

    # -- filtering ------------------------------------------------------------
    def toggle_bin(self, index: int) -> None:
        """Show only the episodes of histogram bin ``index`` (clicking it again shows all)."""
        if self.inspection is None:
            return
        if index == self.filter_bin:
            self.clear_filter()
            return
        low, high, members = self.bins[index]
        if not members:
            return
        self.filter_bin = index
        self.visible = list(members)
        self.histogram.set_selected(index)
        closing = "]" if index == len(self.bins) - 1 else ")"
        self.filter_label.setText(f"Showing the {len(members)} episode(s) with accuracy in "
                                  f"[{low:.0%}, {high:.0%}{closing}.")
        self.clear_filter_button.setEnabled(True)
        self.go_to(0)

    def clear_filter(self) -> None:
        if self.inspection is None:
            return
        self.filter_bin = None
        self.visible = list(range(self.inspection.n_episodes))
        self.histogram.set_selected(None)
        self.filter_label.setText(f"Showing all {len(self.visible)} episodes. Click a bar to see only its episodes.")
        self.clear_filter_button.setEnabled(False)
        self.go_to(0)

    # -- paging ---------------------------------------------------------------
    def go_to(self, page: int) -> None:
        """Show the ``page``-th of the visible episodes (clamped)."""
        if self.inspection is None or not self.visible:
            self._update_pager()
            return
        self.page = min(max(page, 0), len(self.visible) - 1)
        position = self.visible[self.page]
        episode = self.inspection.episodes[position]
        try:
            support, query = self.inspection.images(position)
        except EngineError:  # an image file vanished since the data set was loaded
            support = query = None
        support_paths, query_paths = self.inspection.image_paths(position)
        self.episode_view.show_episode(episode, support, query, support_paths, query_paths)
        wrong = episode.n_wrong
        self.episode_label.setText(f"episode #{episode.number + 1}: accuracy {episode.accuracy:.1%}, "
                                   f"{wrong} wrong of {len(episode.query_y)}")
        self._update_pager()

    def current_position(self) -> int | None:
        """Position (into inspection.episodes) of the episode on screen."""
        return self.visible[self.page] if self.inspection is not None and self.visible else None

    def next_mistake(self) -> bool:
        """Page to the next shown episode with a wrong prediction and scroll to that query."""
        if self.inspection is None:
            return False
        for page in range(self.page + 1, len(self.visible)):
            if self.inspection.episodes[self.visible[page]].n_wrong:
                self.go_to(page)
                first_wrong = next(card for card in self.episode_view.query_cards if card.correct is False)
                self.scroll.ensureWidgetVisible(first_wrong, 20, 20)
                return True
        self.episode_label.setText(self.episode_label.text() + " — no later episode with a mistake")
        return False

    def _update_pager(self) -> None:
        n = len(self.visible) if self.inspection is not None else 0
        self.prev_button.setEnabled(n > 0 and self.page > 0)
        self.next_button.setEnabled(n > 0 and self.page < n - 1)
        self.next_mistake_button.setEnabled(n > 0 and self.page < n - 1)
        if n == 0:
            self.page_label.setText("no episodes yet")
        else:
            subset = "" if self.filter_bin is None else " in the chosen bin"
            self.page_label.setText(f"episode {self.page + 1} of {n}{subset}")
