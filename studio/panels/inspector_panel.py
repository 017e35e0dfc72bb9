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

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFontMetrics, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QFormLayout, QFrame, QGridLayout, QHBoxLayout, QLabel, QLayout,
                               QProgressBar,
                               QPushButton, QScrollArea, QSplitter, QToolButton,
                               QVBoxLayout, QWidget)

from engine.errors import EngineError
from engine.training.run_store import RunRecord
from studio.panels.background_job import BackgroundJobMixin
from studio.panels.widgets import spin_box
from studio.worker import WorkerHandle

THUMB = 56             # thumbnail side in pixels: 28-px glyphs are shown at 2x
CARD_WIDTH = THUMB + 10
CARD_SPACING = 3
CLASS_LABEL_WIDTH = 104
SUPPORT_COLUMNS = 5
N_BINS = 20
DEFAULT_EPISODES = 100
GOOD = "#1b7f3b"       # green, with a ✓
BAD = "#c62828"        # red, with a ✗
CHECK, CROSS = "✓", "✗"
PLACEHOLDER = "#d8d8d8"


# -- small helpers -------------------------------------------------------------------------------------
def pixels_to_pixmap(pixels: Any, size: int = THUMB) -> QPixmap:
    """uint8 [C, H, W] tensor (C = 1 or 3) -> a ``size`` px square pixmap.

    Small images are enlarged by a whole factor without smoothing (crisp glyph strokes),
    large ones shrunk smoothly.
    """
    array = np.ascontiguousarray(pixels.numpy())
    if array.shape[0] == 1:
        plane = np.ascontiguousarray(array[0])
        image = QImage(plane.data, plane.shape[1], plane.shape[0], plane.strides[0], QImage.Format.Format_Grayscale8)
    else:
        rgb = np.ascontiguousarray(array[:3].transpose(1, 2, 0))
        image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
    side = max(image.width(), image.height())
    mode = (Qt.TransformationMode.FastTransformation if side <= size and size % side == 0
            else Qt.TransformationMode.SmoothTransformation)
    scaled = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)
    return QPixmap.fromImage(scaled)  # converts (copies) now, while the numpy buffer is alive


def placeholder_pixmap(size: int = THUMB) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(PLACEHOLDER))
    return pixmap


def split_class_name(name: str) -> tuple[str, str]:
    """``"group/class"`` -> ("group", "class"); a flat name has no group."""
    group, _, leaf = name.rpartition("/")
    return group, leaf


def elided(text: str, label: QLabel, width: int) -> str:
    return QFontMetrics(label.font()).elidedText(text, Qt.TextElideMode.ElideRight, width)


def run_has_checkpoint(record: RunRecord) -> bool:
    return record.best_checkpoint.is_file() or record.last_checkpoint.is_file()


def inspection_job(run_dir: Path, *, which: str, split: str, episodes: int, n_way: int, n_shot: int, n_query: int,
                   seed: int, device: str) -> Callable[[Any, Any], Any]:
    """The function :func:`run_in_worker` runs: load the checkpoint and its data (cached), inspect."""

    def job(progress: Any, should_stop: Any) -> Any:
        from engine.inspection import inspect_episodes
        from studio.datasets import load_data_cached

        return inspect_episodes(run_dir, n_episodes=episodes, n_way=n_way, n_shot=n_shot, n_query=n_query,
                                split=split, seed=seed, device=device, which=which, progress=progress,
                                should_stop=should_stop,
                                data_loader=lambda cfg, class_split: load_data_cached(cfg, split=class_split))

    return job


# -- the histogram -------------------------------------------------------------------------------------
class AccuracyHistogram(pg.PlotWidget):
    """Per-episode accuracy (in %) as bars, with the mean and the 95% CI bounds as labelled lines.

    ``bin_clicked(i)`` fires when a non-empty bar is clicked (anywhere in its column).
    """

    bin_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("Per-episode accuracy (click a bar for its episodes)", size="9pt")
        self.setLabel("bottom", "episode accuracy (%)")
        self.setLabel("left", "episodes")
        for axis in ("left", "bottom"):
            self.getAxis(axis).enableAutoSIPrefix(False)
        self.showGrid(y=True, alpha=0.25)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.bins: list[tuple[float, float, list[int]]] = []
        self.selected: int | None = None
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush="#7fa7cf", pen="#3f6f9f")
        self.addItem(self.bars)
        self.ci_band = pg.LinearRegionItem(values=(0, 0), movable=False, brush=pg.mkBrush(255, 160, 0, 40),
                                           pen=pg.mkPen(None))
        self.ci_band.setZValue(-10)
        self.addItem(self.ci_band)
        dashed = pg.mkPen("#b35c00", width=1.5, style=Qt.PenStyle.DashLine)
        self.mean_line = self._line(pg.mkPen("#202020", width=2), 0.93, [(0.5, 0.5), (0.5, 0.5)], "#202020")
        self.low_line = self._line(dashed, 0.78, [(1, 0.5), (1, 0.5)], "#b35c00")   # text left of the line
        self.high_line = self._line(dashed, 0.78, [(0, 0.5), (0, 0.5)], "#b35c00")  # text right of it
        self.scene().sigMouseClicked.connect(self._clicked)
        self._show_lines(False)

    def _line(self, pen: Any, position: float, anchors: list[tuple[float, float]], colour: str) -> pg.InfiniteLine:
        line = pg.InfiniteLine(angle=90, movable=False, pen=pen,
                               label="", labelOpts=dict(position=position, anchors=anchors, color=colour,
                                                        fill=pg.mkBrush(255, 255, 255, 200)))
        self.addItem(line, ignoreBounds=True)
        return line

    def _show_lines(self, shown: bool) -> None:
        for item in (self.mean_line, self.low_line, self.high_line, self.ci_band):
            item.setVisible(shown)

    def set_data(self, bins: list[tuple[float, float, list[int]]], mean: float, ci95: float) -> None:
        self.bins = bins
        self.selected = None
        counts = [len(members) for _, _, members in bins]
        self.bars.setOpts(x0=[100 * low for low, _, _ in bins], x1=[100 * high for _, high, _ in bins],
                          height=counts, brushes=self._brushes())
        finite = math.isfinite(mean) and math.isfinite(ci95)
        self._show_lines(finite)
        if finite:
            low, high = 100 * (mean - ci95), 100 * (mean + ci95)
            self.mean_line.setValue(100 * mean)
            self.mean_line.label.setFormat(f"mean {100 * mean:.1f}%")
            self.low_line.setValue(low)
            self.low_line.label.setFormat(f"95% CI {low:.1f}% ")
            self.high_line.setValue(high)
            self.high_line.label.setFormat(f" {high:.1f}%")
            self.ci_band.setRegion((low, high))
        filled = [low for low, _, members in bins if members]
        left = max(0.0, (min(filled) if filled else 0.0) - 0.1)
        self.setXRange(100 * left, 100.0, padding=0.02)
        top = max(counts + [1])
        self.setYRange(0, top * 1.25, padding=0)
        axis = self.getAxis("left")
        if top <= 8:
            axis.setTickSpacing(1, 1)  # whole episodes, not 0.5 steps
        else:
            axis.setTickSpacing()      # automatic

    def set_selected(self, index: int | None) -> None:
        self.selected = index
        self.bars.setOpts(brushes=self._brushes())

    def _brushes(self) -> list[Any]:
        return [pg.mkBrush("#ff8c1a" if i == self.selected else "#7fa7cf") for i in range(len(self.bins))]

    def bin_at(self, x_percent: float) -> int | None:
        for i, (low, high, _) in enumerate(self.bins):
            last = i == len(self.bins) - 1
            if 100 * low <= x_percent < 100 * high or (last and x_percent == 100 * high):
                return i
        return None

    def bar_centre(self, index: int) -> QPointF:
        """The middle of bar ``index`` in data coordinates (x in %, y in episodes)."""
        low, high, members = self.bins[index]
        return QPointF(50 * (low + high), len(members) / 2)

    def _clicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton or not self.bins:
            return
        view_box = self.getPlotItem().getViewBox()
        if not view_box.sceneBoundingRect().contains(event.scenePos()):
            return
        point = view_box.mapSceneToView(event.scenePos())
        index = self.bin_at(point.x())
        if index is not None and self.bins[index][2] and point.y() >= 0:
            self.bin_clicked.emit(index)


# -- one episode ---------------------------------------------------------------------------------------
class QueryCard(QWidget):
    """A query thumbnail with its mark (✓/✗), the probability and the predicted class.

    Colours go through palettes and a painted border (solid green / dashed red): much
    cheaper than style sheets when 75 cards change on every page.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("query_card")
        self.setFixedWidth(CARD_WIDTH)
        self.image = QLabel()
        self.image.setFixedSize(THUMB, THUMB)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.mark = QLabel()
        self.mark.setObjectName("query_mark")
        bold = self.mark.font()
        bold.setBold(True)
        self.mark.setFont(bold)
        self.prediction = QLabel()
        self.prediction.setObjectName("query_prediction")
        small = self.prediction.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() - 1))
        self.prediction.setFont(small)
        self.correct: bool | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(3, 3, 3, 2)
        layout.setSpacing(0)
        layout.addWidget(self.image, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.mark, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.prediction, 0, Qt.AlignmentFlag.AlignHCenter)

    def show_prediction(self, pixmap: QPixmap, correct: bool, probability: float, predicted_label: str,
                        tooltip: str) -> None:
        self.image.setPixmap(pixmap)
        self.mark.setText(f"{CHECK if correct else CROSS} {probability:.0%}")
        self.prediction.setText(elided(predicted_label, self.prediction, CARD_WIDTH - 4))
        self.setToolTip(tooltip)
        if correct != self.correct:
            self.correct = correct
            _set_text_colour(self.mark, GOOD if correct else BAD)
            _set_text_colour(self.prediction, "#606060" if correct else BAD)
            self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        if self.correct is None:
            return
        painter = QPainter(self)
        pen = QPen(QColor(GOOD if self.correct else BAD), 2)
        pen.setStyle(Qt.PenStyle.SolidLine if self.correct else Qt.PenStyle.DashLine)  # a pattern, not only a hue
        painter.setPen(pen)
        painter.drawRoundedRect(self.rect().adjusted(1, 1, -1, -1), 3, 3)
        painter.end()


def _set_text_colour(label: QLabel, colour: str) -> None:
    palette = label.palette()
    palette.setColor(QPalette.ColorRole.WindowText, QColor(colour))
    label.setPalette(palette)


class EpisodeView(QWidget):
    """Support thumbnails grouped by class (one row per class) and the query cards of that class.

    Built for one (n_way, n_shot, n_query) shape; :meth:`show_episode` refills the same
    widgets. Query cards wrap onto more lines when the view is narrow.
    """

    def __init__(self, n_way: int, n_shot: int, n_query: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.shape = (n_way, n_shot, n_query)
        self.class_labels: list[QLabel] = []
        self.support_thumbs: list[QLabel] = []
        self.query_cards: list[QueryCard] = []
        self._query_grids: list[QGridLayout] = []
        self._query_boxes: list[QWidget] = []
        self._columns = 0
        grid = QGridLayout(self)
        # the width comes from the scroll area, not from the cards: they wrap instead
        grid.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        header = QLabel(f"One row per class: its name and support image(s) ({n_shot}-shot), then its queries with "
                        "✓ right / ✗ wrong, the probability and the predicted class")
        header.setWordWrap(True)
        header.setStyleSheet("color: #606060;")
        grid.addWidget(header, 0, 0, 1, 4)
        for row in range(n_way):
            self._build_row(grid, row, n_shot, n_query)
        grid.setColumnStretch(3, 1)
        grid.setRowStretch(n_way + 1, 1)
        self._relayout(self._query_columns(self.width()))

    def _build_row(self, grid: QGridLayout, row: int, n_shot: int, n_query: int) -> None:
        label = QLabel()
        label.setObjectName("class_label")
        columns = min(n_shot, SUPPORT_COLUMNS)
        label.setFixedWidth(max(CLASS_LABEL_WIDTH, columns * (THUMB + 4) + (columns - 1) * 3))
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.class_labels.append(label)
        support = QWidget()  # the class's name above its support images
        support_grid = QGridLayout(support)
        support_grid.setContentsMargins(0, 0, 0, 0)
        support_grid.setSpacing(3)
        support_grid.addWidget(label, 0, 0, 1, SUPPORT_COLUMNS, Qt.AlignmentFlag.AlignLeft)
        for i in range(n_shot):
            thumb = QLabel()
            thumb.setObjectName("support_thumb")
            thumb.setFixedSize(THUMB + 4, THUMB + 4)
            thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
            thumb.setStyleSheet("border: 1px solid #909090;")
            support_grid.addWidget(thumb, 1 + i // SUPPORT_COLUMNS, i % SUPPORT_COLUMNS)
            self.support_thumbs.append(thumb)
        separator = QFrame()
        separator.setFrameShape(QFrame.Shape.VLine)
        separator.setStyleSheet("color: #c0c0c0;")
        queries = QWidget()
        query_grid = QGridLayout(queries)
        query_grid.setContentsMargins(0, 0, 0, 0)
        query_grid.setSpacing(CARD_SPACING)
        query_grid.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._query_grids.append(query_grid)
        self._query_boxes.append(queries)
        self.query_cards += [QueryCard() for _ in range(n_query)]
        top = Qt.AlignmentFlag.AlignTop
        grid.addWidget(support, row + 1, 0, top | Qt.AlignmentFlag.AlignLeft)
        grid.addWidget(separator, row + 1, 1)
        grid.addWidget(queries, row + 1, 2, 1, 2, top | Qt.AlignmentFlag.AlignLeft)

    # -- wrapping ---------------------------------------------------------------
    def _query_columns(self, width: int) -> int:
        """As many cards per line as fit right of the support images (estimated before the first layout)."""
        n_shot, n_query = self.shape[1], self.shape[2]
        left = self._query_boxes[0].x() if self._query_boxes else 0
        if left <= 0:
            left = max(CLASS_LABEL_WIDTH, min(n_shot, SUPPORT_COLUMNS) * (THUMB + 7)) + 32
        free = width - left - 6 + CARD_SPACING
        return max(1, min(n_query, free // (CARD_WIDTH + CARD_SPACING)))

    def _relayout(self, columns: int) -> None:
        if columns == self._columns:
            return
        self._columns = columns
        n_query = self.shape[2]
        for row, grid in enumerate(self._query_grids):
            cards = self.query_cards[row * n_query:(row + 1) * n_query]
            for card in cards:
                grid.removeWidget(card)
            for i, card in enumerate(cards):
                grid.addWidget(card, i // columns, i % columns)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        super().resizeEvent(event)
        self._relayout(self._query_columns(event.size().width()))
        QTimer.singleShot(0, self._refit)  # again once the columns left of the queries have their place

    def _refit(self) -> None:
        self._relayout(self._query_columns(self.width()))

    def minimumSizeHint(self) -> Any:  # noqa: N802 (Qt) - narrow enough to wrap instead of scrolling sideways
        hint = super().minimumSizeHint()
        hint.setWidth(max(CLASS_LABEL_WIDTH, min(self.shape[1], SUPPORT_COLUMNS) * (THUMB + 7)) + CARD_WIDTH + 50)
        return hint

    # -- content ---------------------------------------------------------------
    def show_episode(self, episode: Any, support: Any, query: Any, support_paths: Sequence[Path],
                     query_paths: Sequence[Path]) -> None:
        """Fill the widgets with one engine.inspection.InspectedEpisode and its uint8 images."""
        names = episode.class_names
        for i, (label, name) in enumerate(zip(self.class_labels, names)):
            group, leaf = split_class_name(name)
            width = label.width()
            group_line = f"<br><span style='color:#707070; font-size:8pt'>{elided(group, label, width)}" \
                         "</span>" if group else ""
            label.setText(f"<b>class {i + 1}</b><br>{elided(leaf, label, width)}{group_line}")
            label.setToolTip(name)
        support_y = episode.support_y.tolist()
        for i, thumb in enumerate(self.support_thumbs):
            thumb.setPixmap(self._pixmap(support, i))
            thumb.setToolTip(f"support image of class {support_y[i] + 1} · {names[support_y[i]]}\n{support_paths[i]}")
        rows = episode.probabilities.tolist()  # python lists: per-element tensor access is slow
        for i, (card, true, predicted) in enumerate(zip(self.query_cards, episode.query_y.tolist(),
                                                        episode.predicted.tolist())):
            card.show_prediction(self._pixmap(query, i), true == predicted, rows[i][predicted],
                                 f"→ class {predicted + 1}",
                                 self._query_tooltip(names, true, predicted, rows[i], query_paths[i]))

    @staticmethod
    def _pixmap(images: Any, i: int) -> QPixmap:
        return placeholder_pixmap() if images is None else pixels_to_pixmap(images[i])

    @staticmethod
    def _query_tooltip(names: list[str], true: int, predicted: int, row: list[float], path: Path) -> str:
        top = sorted(range(len(names)), key=lambda c: -row[c])[:3]
        ranked = "\n".join(f"  class {c + 1} · {names[c]}: {row[c]:.1%}" for c in top)
        verdict = "right" if true == predicted else "wrong"
        return (f"true class: {true + 1} · {names[true]}\npredicted: class {predicted + 1} · {names[predicted]} "
                f"({verdict})\nmost probable:\n{ranked}\n{path}")


# -- the panel -----------------------------------------------------------------------------------------
class InspectorPanel(QWidget, BackgroundJobMixin):
    """Pick a run, inspect N seeded episodes in the background, then browse them."""

    inspected = Signal(object)   # engine.inspection.EpisodeInspection

    def __init__(self, window: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.window_ = window
        self.store = getattr(window, "store", None)
        self.inspection: Any = None
        self.visible: list[int] = []        # positions (into inspection.episodes) the pager shows
        self.page = 0
        self.filter_bin: int | None = None
        self.episode_view: EpisodeView | None = None
        self.bins: list[tuple[float, float, list[int]]] = []
        self._handle: WorkerHandle | None = None
        self._running = False
        self._inspected_run = ""
        self._build()
        self.refresh_runs()
        runs_panel = getattr(window, "runs_panel", None)
        if runs_panel is not None:
            runs_panel.selection_changed.connect(self._runs_selected)
        if hasattr(window, "training_ended"):
            window.training_ended.connect(self._refresh_if_visible)

    # -- layout ---------------------------------------------------------------
    def _build(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_controls())
        splitter.addWidget(self._build_pager())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([330, 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(splitter)
        self._update_pager()

    def _build_controls(self) -> QWidget:
        """Left column: run, episode settings, Inspect / Cancel, summary, histogram and its filter."""
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("inspector_run")
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setMinimumContentsLength(18)
        self.run_combo.currentIndexChanged.connect(self._run_chosen)
        self.refresh_button = QToolButton()
        self.refresh_button.setText("↻")
        self.refresh_button.setToolTip("Re-read the run history.")
        self.refresh_button.clicked.connect(self.refresh_runs)
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.addItem("best (top validation accuracy)", "best")
        self.checkpoint_combo.addItem("last", "last")
        self.classes_combo = QComboBox()
        for text, value in (("test classes", "test"), ("validation classes", "val"), ("training classes", "train")):
            self.classes_combo.addItem(text, value)
        self.episodes_spin = spin_box(1, 10_000, DEFAULT_EPISODES, "Episodes to sample and keep.", expanding=True)
        self.n_way_spin = spin_box(2, 1000, 5, "Classes per episode (default: the run's evaluation n-way).",
                                   expanding=True)
        self.n_shot_spin = spin_box(1, 1000, 1, "Support images per class (default: the run's).", expanding=True)
        self.n_query_spin = spin_box(1, 1000, 15, "Query images per class (default: the run's).", expanding=True)
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
        self.summary_label = QLabel("Pick a run with a checkpoint and press Inspect.")
        self.summary_label.setObjectName("inspector_summary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setStyleSheet("font-weight: bold;")
        self.details_label = QLabel("")
        self.details_label.setWordWrap(True)
        self.details_label.setStyleSheet("color: #606060;")
        self.histogram = AccuracyHistogram()
        self.histogram.setMinimumHeight(180)
        self.histogram.bin_clicked.connect(self.toggle_bin)
        self.filter_label = QLabel("")
        self.filter_label.setWordWrap(True)
        self.clear_filter_button = QPushButton("Show all episodes")
        self.clear_filter_button.setEnabled(False)
        self.clear_filter_button.clicked.connect(self.clear_filter)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_combo, 1)
        run_row.addWidget(self.refresh_button)
        form.addRow("Run", run_row)
        form.addRow("Checkpoint", self.checkpoint_combo)
        form.addRow("Classes", self.classes_combo)
        shape = QHBoxLayout()
        for text, spin in (("way", self.n_way_spin), ("shot", self.n_shot_spin), ("query", self.n_query_spin)):
            shape.addWidget(spin)
            shape.addWidget(QLabel(text))
        form.addRow("Episode", shape)
        counts = QHBoxLayout()
        counts.addWidget(self.episodes_spin)
        counts.addWidget(QLabel("seed"))
        counts.addWidget(self.seed_spin)
        form.addRow("Episodes", counts)
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
    def refresh_runs(self) -> None:
        """Re-list the store's runs that have a checkpoint (keeps the current choice)."""
        if self.store is None:
            return
        current = self.run_dir()
        records = [r for r in self.store.list_runs() if run_has_checkpoint(r)]
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for record in records:
            self.run_combo.addItem(f"{record.name} ({record.algorithm}, {record.steps_done:,} steps)",
                                   str(record.run_dir))
            self.run_combo.setItemData(self.run_combo.count() - 1, str(record.run_dir), Qt.ItemDataRole.ToolTipRole)
        if not records:
            self.run_combo.addItem("no run with a checkpoint yet: train one", None)
        position = self.run_combo.findData(str(current)) if current is not None else -1
        self.run_combo.setCurrentIndex(max(position, 0))
        self.run_combo.blockSignals(False)
        if position < 0:  # another run than before: take its episode shape
            self._run_chosen()
        self._update_buttons()

    def _refresh_if_visible(self, *_: Any) -> None:
        """After a training run: re-read the runs now if this view is on screen (else when it is shown),
        so that a hidden view adds no work to the GUI thread at the end of every run."""
        if self.isVisible():
            self.refresh_runs()

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        if not self._running:
            self.refresh_runs()  # runs may have been trained, renamed or deleted meanwhile

    def run_dir(self) -> Path | None:
        data = self.run_combo.currentData()
        return Path(data) if data else None

    def select_run(self, run_dir: Path | str) -> bool:
        """Choose a run in the combo (re-reading the store when it is new); False if it has no checkpoint."""
        position = self.run_combo.findData(str(run_dir))
        if position < 0:
            self.refresh_runs()
            position = self.run_combo.findData(str(run_dir))
        if position < 0:
            return False
        self.run_combo.setCurrentIndex(position)
        return True

    def _runs_selected(self, records: list[RunRecord]) -> None:
        if len(records) == 1 and run_has_checkpoint(records[0]):
            self.select_run(records[0].run_dir)

    def _run_chosen(self, *_: Any) -> None:
        """Default episode shape: the chosen run's evaluation shape."""
        run_dir = self.run_dir()
        if run_dir is not None and self.store is not None:
            try:
                task = self.store.read_config(run_dir).task
            except EngineError:
                task = None
            if task is not None:
                self.n_way_spin.setValue(task.eval_n_way)
                self.n_shot_spin.setValue(task.eval_n_shot)
                self.n_query_spin.setValue(task.n_query)
        self._update_buttons()

    # -- running --------------------------------------------------------------
    def start(self) -> WorkerHandle | None:
        """Inspect the chosen run's episodes in a worker thread."""
        run_dir = self.run_dir()
        if run_dir is None or self._running:
            return None
        device_panel = getattr(self.window_, "device_panel", None)
        job = inspection_job(run_dir, which=self.checkpoint_combo.currentData(),
                             split=self.classes_combo.currentData(), episodes=self.episodes_spin.value(),
                             n_way=self.n_way_spin.value(), n_shot=self.n_shot_spin.value(),
                             n_query=self.n_query_spin.value(), seed=self.seed_spin.value(),
                             device=device_panel.device() if device_panel is not None else "cpu")
        self._inspected_run = self.run_combo.currentText()
        self.summary_label.setText(f"Inspecting {self.run_combo.currentText()}…")
        self.details_label.setText("")
        return self._launch(job)

    def _failed(self, message: str) -> None:
        self._finished()
        self.summary_label.setText(f"Inspection failed: {message}")
        show_error = getattr(self.window_, "show_error", None)
        if show_error is not None:
            show_error("Episode inspection failed", message)

    def _update_buttons(self) -> None:
        self.inspect_button.setEnabled(not self._running and self.run_dir() is not None)
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
