"""Dataset panel: choose the data set, see what it holds, and split its classes.

The built-in glyph set is selected at start. A folder can be opened with the
button (Ctrl+O) or dropped onto the panel. Scanning and decoding run in a worker
thread (one :class:`studio.jobs.latest.LatestJob`: a new load stops the previous one and
drops whatever it still delivers) with a progress bar; the panel then
shows classes, images, a few thumbnails, the files that were skipped and why,
and the train / validation / test class split with counts per part. The split seed and the
preprocessing and augmentation settings show under "Advanced settings".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFontMetrics, QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.api import (BUILTIN_GLYPHS, ClassSplit, DataConfig, EngineError, FolderIndex, resolve_root, scan_folder,
                        split_classes)
from studio import settings as st
from studio.datasets import cached_data, load_data_cached
from studio.jobs.latest import LatestJob
from studio.widgets.config_form import ConfigForm
from studio.widgets.elide import elide_middle
from studio.widgets.fields import AdvancedToggle

SPLIT_FIELDS = ["split_mode", "train_ratio", "val_ratio", "split_seed"]
PREPROCESSING_FIELDS = ["image_size", "channels", "center_crop", "augment_rotations", "augment_flips",
                        "augment_color_jitter", "augment_affine", "augment_elastic", "cache_budget_mb"]
THUMB_CLASSES = 6
THUMBS_PER_CLASS = 5
THUMB_SIZE = 36
LABEL_WIDTH = 118
PARTS = ("train", "val", "test")
PART_LABELS = {"train": "Train", "val": "Validation", "test": "Test"}
MAX_RECENT = 6


def example_label_text(name: str, metrics: QFontMetrics, width: int) -> str:
    """A class's name as two lines, group over class ("Alphabet_of_the_Magi" / "character01"), each cut in
    the middle to ``width`` so the distinguishing ends stay ("Alphab…he_Magi", not "...he_Magi")."""
    group, _, leaf = name.rpartition("/")
    return "\n".join(elide_middle(part, metrics, width) for part in (group, leaf) if part)


@dataclass
class ScanResult:
    """What the background load produced."""

    root: str
    index: FolderIndex
    thumbnails: list[tuple[str, list[QImage]]]
    data: Any = None
    data_error: str = ""
    skipped: list[Any] = field(default_factory=list)


def _thumbnails(index: FolderIndex) -> list[tuple[str, list[QImage]]]:
    """A few images of a few classes spread over the data set, scaled (QImage is thread safe)."""
    classes = index.classes
    if not classes:
        return []
    stride = max(1, len(classes) // THUMB_CLASSES)
    out = []
    for entry in classes[::stride][:THUMB_CLASSES]:
        images = []
        for path in entry.files[:THUMBS_PER_CLASS]:
            image = QImage(str(path))
            if not image.isNull():
                images.append(image.scaled(THUMB_SIZE, THUMB_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))
        out.append((entry.name, images))
    return out


class DatasetPanel(QWidget):
    """Pick and inspect the data set; owns the ``data`` section of the run config."""

    config_changed = Signal()
    loading_changed = Signal(bool)
    loaded = Signal(object)     # ScanResult
    load_failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.index: FolderIndex | None = None
        self.result: ScanResult | None = None
        self.load_error = ""
        self.split_error = ""
        self.split: ClassSplit | None = None
        self._load_job = LatestJob()
        self._loading = False
        self._root = BUILTIN_GLYPHS
        self._group_combos: dict[str, QComboBox] = {}
        self._pending_groups: dict[str, list[str]] = {"val": [], "test": []}
        self._build()
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(600)
        self._reload_timer.timeout.connect(self._reload_if_needed)

    # -- layout -------------------------------------------------------------
    def _build(self) -> None:
        self.root_combo = QComboBox()
        self.root_combo.setObjectName("dataset_root")
        self.root_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.root_combo.setMinimumContentsLength(18)
        self.root_combo.setToolTip("Chooses the data set: the built-in glyphs, or a folder of class folders "
                                   "(root/<class>/<images> or root/<group>/<class>/<images>).\n"
                                   "(config key: data.root)")
        self._fill_root_combo()
        self.root_combo.activated.connect(self._root_chosen)
        self.open_button = QPushButton("Open folder…")
        self.open_button.setToolTip("Open a data set folder (Ctrl+O); you can also drop a folder here.")
        self.open_button.clicked.connect(self.choose_folder)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip("Read the folder again (after adding or fixing images).")
        self.reload_button.clicked.connect(lambda: self.load(refresh=True))
        self.drop_hint = QLabel("or drop a folder here")
        self.drop_hint.setStyleSheet("color: #808080;")
        row = QVBoxLayout()
        row.addWidget(self.root_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.reload_button)
        buttons.addWidget(self.drop_hint, 1)
        row.addLayout(buttons)

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setMaximumHeight(16)
        self.progress.hide()
        self.summary_label = QLabel("Loading…")
        self.summary_label.setObjectName("dataset_summary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.thumb_box = QGroupBox("Examples")
        self.thumb_grid = QGridLayout(self.thumb_box)
        self.thumb_grid.setHorizontalSpacing(3)
        self.thumb_grid.setVerticalSpacing(3)

        split_box = QGroupBox("Class split")
        self.split_form = ConfigForm("data", DataConfig, include=SPLIT_FIELDS)
        self.split_form.changed.connect(self._split_inputs_changed)
        self.groups_table = QTableWidget(0, 3)
        self.groups_table.setObjectName("groups_table")
        self.groups_table.setHorizontalHeaderLabels(["Group", "Classes", "Part"])
        self.groups_table.verticalHeader().hide()
        self.groups_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.groups_table.setMinimumHeight(140)
        self.groups_table.setToolTip("Group split: choose which groups (e.g. alphabets) are held out.")
        self.counts_table = QTableWidget(3, 2)
        self.counts_table.setObjectName("split_counts")
        self.counts_table.setHorizontalHeaderLabels(["Classes", "Images"])
        self.counts_table.setVerticalHeaderLabels([PART_LABELS[p] for p in PARTS])
        self.counts_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.counts_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.counts_table.setFixedHeight(self.counts_table.verticalHeader().length()
                                         + self.counts_table.horizontalHeader().height() + 4)
        self.split_message = QLabel()
        self.split_message.setObjectName("split_message")
        self.split_message.setWordWrap(True)
        self.split_message.setStyleSheet("color: #d62728;")
        self.split_message.hide()
        split_layout = QVBoxLayout(split_box)
        split_layout.addWidget(self.split_form)
        split_layout.addWidget(self.groups_table)
        split_layout.addWidget(self.counts_table)
        split_layout.addWidget(self.split_message)

        self.prep_box = QGroupBox("Preprocessing and augmentation")
        self.prep_form = ConfigForm("data", DataConfig, include=PREPROCESSING_FIELDS)
        self.prep_form.changed.connect(self._prep_changed)
        QVBoxLayout(self.prep_box).addWidget(self.prep_form)
        self.advanced_toggle = AdvancedToggle(st.KEY_ADVANCED_DATA, [self.split_form, self.prep_form],
                                              extra=[self.prep_box])

        self.skipped_box = QGroupBox("Skipped files")
        self.skipped_table = QTableWidget(0, 2)
        self.skipped_table.setObjectName("skipped_table")
        self.skipped_table.setHorizontalHeaderLabels(["File", "Reason"])
        self.skipped_table.verticalHeader().hide()
        self.skipped_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.skipped_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.skipped_table.setMinimumHeight(90)
        self.skipped_label = QLabel("None.")
        skipped_layout = QVBoxLayout(self.skipped_box)
        skipped_layout.addWidget(self.skipped_label)
        skipped_layout.addWidget(self.skipped_table)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.thumb_box)
        layout.addWidget(split_box)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.prep_box)
        layout.addWidget(self.skipped_box)
        layout.addStretch(1)
        self._update_split_widgets()

    def _fill_root_combo(self) -> None:
        self.root_combo.blockSignals(True)
        self.root_combo.clear()
        self.root_combo.addItem("Built-in glyphs (624 generated characters)", BUILTIN_GLYPHS)
        recent = st.read_json("data/recent_folders") or []
        for folder in recent[:MAX_RECENT]:
            if isinstance(folder, str) and folder != BUILTIN_GLYPHS:
                self.root_combo.addItem(folder, folder)
        index = self.root_combo.findData(self._root)
        if index < 0:
            self.root_combo.addItem(self._root, self._root)
            index = self.root_combo.count() - 1
        self.root_combo.setCurrentIndex(index)
        self.root_combo.blockSignals(False)

    # -- choosing the data set ----------------------------------------------
    def root(self) -> str:
        return self._root

    def choose_folder(self) -> None:
        start = st.read_str(st.KEY_LAST_FOLDER, str(Path.home()))
        folder = QFileDialog.getExistingDirectory(self, "Open data set folder", start)
        if folder:
            self.set_root(folder)

    def _root_chosen(self, index: int) -> None:
        root = self.root_combo.itemData(index)
        if root and root != self._root:
            self.set_root(root)

    def set_root(self, root: str | Path, load: bool = True) -> None:
        """Use another data set (a folder path or ``builtin:glyphs``) and load it."""
        root = str(root)
        self._root = root
        if root != BUILTIN_GLYPHS:
            st.settings().setValue(st.KEY_LAST_FOLDER, root)
            recent = [f for f in (st.read_json("data/recent_folders") or []) if f != root]
            st.write_json("data/recent_folders", [root] + recent[: MAX_RECENT - 1])
        self._fill_root_combo()
        self.config_changed.emit()
        if load:
            self.load()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt)
        if self._dropped_folder(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        if self._dropped_folder(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt)
        folder = self._dropped_folder(event.mimeData())
        if folder is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.set_root(folder)

    @staticmethod
    def _dropped_folder(mime: Any) -> str | None:
        if mime is None or not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.is_dir():
                    return str(path)
        return None

    # -- loading ------------------------------------------------------------
    def is_loading(self) -> bool:
        """True from :meth:`load` until its result (or error) has been shown."""
        return self._loading

    def load(self, refresh: bool = False) -> None:
        """Scan and decode the current data set in the background (a load still running is stopped
        and its result dropped)."""
        root = self._root
        cfg = self.data_config(strict=False)
        self.summary_label.setText(f"Loading {self._display_root()}…")
        self.progress.setRange(0, 0)
        self.progress.show()
        self._loading = True
        self.loading_changed.emit(True)

        def job(progress: Any, should_stop: Any) -> ScanResult:
            known = cached_data(cfg) if cfg is not None and not refresh else None
            index = known.index if known is not None else scan_folder(resolve_root(root))
            thumbs = _thumbnails(index)
            result = ScanResult(root, index, thumbs, skipped=list(index.skipped))
            if should_stop():
                return result
            try:
                result.data = load_data_cached(cfg, progress=progress, refresh=refresh) if cfg else None
            except EngineError as error:
                result.data_error = str(error)
            if result.data is not None:
                result.skipped = list(result.data.store.skipped)
            return result

        self._load_job.start(job, on_result=self._loaded, on_error=self._failed, on_progress=self._progress)

    def _display_root(self) -> str:
        return "the built-in glyphs" if self._root == BUILTIN_GLYPHS else self._root

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat("decoding images %v / %m")

    def _loaded(self, result: ScanResult) -> None:
        self._finish_loading()
        self.result = result
        self.index = result.index
        self.load_error = result.data_error
        self._show_summary()
        self._show_thumbnails(result.thumbnails)
        self._show_skipped(result.skipped)
        self._fill_groups()
        self._update_split_preview()
        self.loaded.emit(result)
        self.config_changed.emit()

    def _failed(self, message: str) -> None:
        self._finish_loading()
        self.result = None
        self.index = None
        self.load_error = message
        self.summary_label.setText(f"<span style='color:#d62728'>Cannot use this data set: {message}</span>")
        self._show_thumbnails([])
        self._show_skipped([])
        self._update_split_preview()
        self.load_failed.emit(message)
        self.config_changed.emit()

    def _finish_loading(self) -> None:
        self._loading = False
        self.progress.hide()
        self.loading_changed.emit(False)

    def _reload_if_needed(self) -> None:
        cfg = self.data_config(strict=False)
        if cfg is not None and self.index is not None and cached_data(cfg) is None and not self.is_loading():
            self.load()

    def wait_loaded(self, timeout_ms: int = 60000) -> bool:
        """Block until a running load finished (for scripts and tests)."""
        return self._load_job.wait(timeout_ms)

    # -- display ------------------------------------------------------------
    def _show_summary(self) -> None:
        index = self.index
        if index is None:
            return
        groups = index.groups()
        layout = f"nested, {len(groups)} groups" if index.layout == "nested" else "flat"
        counts = [len(c.files) for c in index.classes]
        n_skipped = len(self.result.skipped) if self.result else len(index.skipped)
        low, high = min(counts, default=0), max(counts, default=0)
        per_class = f"{low}" if low == high else f"{low}–{high}"
        text = (f"<b>{len(index.classes):,}</b> classes &nbsp; <b>{index.n_images:,}</b> images &nbsp; "
                f"({layout}; {per_class} images per class)"
                f"<br><span style='color:#606060'>{index.root}</span>")
        if n_skipped:
            text += f"<br><span style='color:#b35c00'>{n_skipped} file(s) skipped (see below)</span>"
        if self.load_error:
            text += f"<br><span style='color:#d62728'>{self.load_error}</span>"
        self.summary_label.setText(text)

    def _show_thumbnails(self, thumbnails: list[tuple[str, list[QImage]]]) -> None:
        while self.thumb_grid.count():
            item = self.thumb_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for row, (name, images) in enumerate(thumbnails):
            label = QLabel()
            label.setStyleSheet("color: #404040;")
            font = label.font()
            font.setPointSizeF(8.0)
            label.setFont(font)
            label.setText(example_label_text(name, QFontMetrics(font), LABEL_WIDTH))
            label.setFixedWidth(LABEL_WIDTH + 4)
            label.setToolTip(name)
            self.thumb_grid.addWidget(label, row, 0)
            for col, image in enumerate(images):
                thumb = QLabel()
                thumb.setPixmap(QPixmap.fromImage(image))
                thumb.setFixedSize(QSize(THUMB_SIZE + 2, THUMB_SIZE + 2))
                thumb.setStyleSheet("border: 1px solid #d0d0d0; background: white;")
                thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
                self.thumb_grid.addWidget(thumb, row, col + 1)
        self.thumb_box.setVisible(bool(thumbnails))

    def _show_skipped(self, skipped: list[Any]) -> None:
        self.skipped_table.setRowCount(len(skipped))
        root = self.index.root if self.index is not None else None
        for row, item in enumerate(skipped):
            path = Path(item.path)
            shown = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)
            cell = QTableWidgetItem(shown)
            cell.setToolTip(str(path))
            self.skipped_table.setItem(row, 0, cell)
            reason = QTableWidgetItem(item.reason)
            reason.setToolTip(item.reason)
            self.skipped_table.setItem(row, 1, reason)
        self.skipped_label.setText(f"{len(skipped)} file(s) were left out:" if skipped else "None: every file is used.")
        self.skipped_table.setVisible(bool(skipped))

    # -- split --------------------------------------------------------------
    def _fill_groups(self) -> None:
        groups = self.index.groups() if self.index is not None else []
        previous = self._group_parts()
        self.groups_table.setRowCount(len(groups))
        self._group_combos = {}
        n_classes = {}
        if self.index is not None:
            for entry in self.index.classes:
                n_classes[entry.group] = n_classes.get(entry.group, 0) + 1
        defaults = self._default_group_parts(groups)
        for row, group in enumerate(groups):
            name = QTableWidgetItem(group)
            name.setFlags(name.flags() & ~Qt.ItemFlag.ItemIsEditable)
            count = QTableWidgetItem(str(n_classes.get(group, 0)))
            count.setFlags(count.flags() & ~Qt.ItemFlag.ItemIsEditable)
            combo = QComboBox()
            for part in PARTS:
                combo.addItem(PART_LABELS[part], part)
            combo.setCurrentIndex(PARTS.index(previous.get(group, defaults[group])))
            combo.currentIndexChanged.connect(self._split_inputs_changed)
            self.groups_table.setItem(row, 0, name)
            self.groups_table.setItem(row, 1, count)
            self.groups_table.setCellWidget(row, 2, combo)
            self._group_combos[group] = combo
        self.groups_table.resizeColumnToContents(1)
        self._update_split_widgets()

    def _default_group_parts(self, groups: list[str]) -> dict[str, str]:
        """Held-out groups from the config if set, else the last ~20% for test and the 20% before for val."""
        val, test = set(self._pending_groups["val"]), set(self._pending_groups["test"])
        if val or test:
            return {g: "val" if g in val else "test" if g in test else "train" for g in groups}
        n = len(groups)
        n_held = max(1, round(n * 0.2)) if n >= 3 else 0
        parts = {}
        for i, group in enumerate(groups):
            parts[group] = "test" if i >= n - n_held else "val" if i >= n - 2 * n_held else "train"
        return parts

    def _group_parts(self) -> dict[str, str]:
        return {group: combo.currentData() for group, combo in self._group_combos.items()}

    def set_group_part(self, group: str, part: str) -> None:
        """Assign a group to "train", "val" or "test" (group split)."""
        self._group_combos[group].setCurrentIndex(PARTS.index(part))

    def _split_inputs_changed(self, *args: Any) -> None:
        self._update_split_widgets()
        self._update_split_preview()
        self.config_changed.emit()

    def _prep_changed(self) -> None:
        self.config_changed.emit()
        self._reload_timer.start()

    def _update_split_widgets(self) -> None:
        mode = self.split_form.values().get("split_mode", "ratio")
        by_ratio = mode == "ratio"
        for name in ("train_ratio", "val_ratio", "split_seed"):
            self.split_form.editor(name).widget.setEnabled(by_ratio)
        self.groups_table.setVisible(not by_ratio)

    def _update_split_preview(self) -> None:
        self.split = None
        self.split_error = ""
        cfg = self.data_config(strict=False)
        if self.index is not None and cfg is not None:
            try:
                self.split = split_classes(self.index.class_names(), [c.group for c in self.index.classes], cfg)
            except EngineError as error:
                self.split_error = str(error)
        files = {c.name: len(c.files) for c in self.index.classes} if self.index is not None else {}
        for row, part in enumerate(PARTS):
            names = self.split.part(part) if self.split is not None else []
            classes = QTableWidgetItem(f"{len(names):,}" if self.split else "–")
            images = QTableWidgetItem(f"{sum(files.get(n, 0) for n in names):,}" if self.split else "–")
            for cell in (classes, images):
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.counts_table.setItem(row, 0, classes)
            self.counts_table.setItem(row, 1, images)
        self.split_message.setText(self.split_error)
        self.split_message.setVisible(bool(self.split_error))

    def split_counts(self) -> dict[str, int]:
        """Number of classes per part of the previewed split (empty when there is none)."""
        if self.split is None:
            return {}
        return {part: len(self.split.part(part)) for part in PARTS}

    # -- config -------------------------------------------------------------
    def data_config(self, strict: bool = True) -> DataConfig | None:
        """The ``data`` section from the panel; None if a field is invalid (strict: also the split)."""
        if self.split_form.errors() or self.prep_form.errors():
            return None
        values: dict[str, Any] = {"root": self._root, **self.split_form.values(), **self.prep_form.values()}
        parts = self._group_parts()
        if values.get("split_mode") == "group":
            values["val_groups"] = [g for g, p in parts.items() if p == "val"]
            values["test_groups"] = [g for g, p in parts.items() if p == "test"]
        else:
            values["val_groups"] = list(self._pending_groups["val"])
            values["test_groups"] = list(self._pending_groups["test"])
        cfg = DataConfig(**values)
        if strict and self.split_error:
            return None
        return cfg

    def errors(self) -> list[str]:
        """Messages that must be fixed before training (each names the field or the folder)."""
        messages = self.split_form.errors() + self.prep_form.errors()
        if self.index is None and self.load_error:
            messages.append(f"data set: {self.load_error}")
        if self.split_error:
            messages.append(self.split_error)
        return messages

    def load_config(self, cfg: DataConfig, load: bool = True) -> None:
        """Show a DataConfig (from a preset or a past run)."""
        self._pending_groups = {"val": list(cfg.val_groups), "test": list(cfg.test_groups)}
        self.split_form.load(cfg)
        self.prep_form.load(cfg)
        if self._group_combos:
            parts = self._default_group_parts(list(self._group_combos))
            for group, combo in self._group_combos.items():
                combo.blockSignals(True)
                combo.setCurrentIndex(PARTS.index(parts[group]))
                combo.blockSignals(False)
        if cfg.root != self._root:
            self.set_root(cfg.root, load=load)
        else:
            self._update_split_widgets()
            self._update_split_preview()
            self.config_changed.emit()
            self._reload_timer.start()

    def loaded_data(self, cfg: DataConfig | None = None) -> Any:
        """The already decoded data for ``cfg`` (default: the panel's config), or None."""
        cfg = cfg or self.data_config(strict=False)
        return cached_data(cfg) if cfg is not None else None
