"""The run picker of the analysis views: which trained run a view works on.

Listed (the episode inspector, the inner-loop scrubber): a combo of the store's runs that have a
checkpoint and that the view ``accepts``, re-read from the :class:`~engine.training.run_store.RunStore`
when the picker is shown and, while it is on screen, after every training run. Not listed (the
evaluation view): a label naming the one run the window hands over (:meth:`RunPicker.set_record`).
Either way the view asks the picker for the run (:meth:`RunPicker.record`) and its checkpoint
(:meth:`RunPicker.checkpoint`: the one rule, :func:`engine.training.run_store.find_checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QStyle, QStyleOptionComboBox, QStylePainter,
                               QToolButton, QWidget)

from engine.api import RunRecord, RunStore
from studio.widgets.elide import elide_middle

POPUP_MARGIN = 32
"""Pixels a popup row needs beyond its text (item padding, the frame and a vertical scroll bar)."""

Describe = Callable[[RunRecord], str]


def has_checkpoint(record: RunRecord) -> bool:
    """Whether the run has saved a checkpoint a view can load (best or last)."""
    return record.checkpoint() is not None


def run_summary(record: RunRecord) -> str:
    """``"name (algorithm, 1,234 steps)"``: how a listed run reads by default."""
    return f"{record.name} ({record.algorithm}, {record.steps_done:,} steps)"


class ElidingComboBox(QComboBox):
    """A combo that shows its current text cut in the middle when it does not fit (the end of a run's name
    tells runs apart: "protonet 5-way 1-…ltin glyphs (protonet, 3,000 steps)"), the whole text in its
    tooltip, and whose popup is as wide as its longest entry."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.currentIndexChanged.connect(self._show_full_text_in_tooltip)

    def fit_popup_to_items(self) -> None:
        """Make the popup at least as wide as the longest entry, so no entry is cut there."""
        metrics = self.view().fontMetrics()
        longest = max((metrics.horizontalAdvance(self.itemText(i)) for i in range(self.count())), default=0)
        self.view().setMinimumWidth(longest + POPUP_MARGIN)

    def shown_text(self) -> str:
        """The current text as the combo paints it: whole, or cut in the middle to its text field."""
        return self._shown_text(self._style_option())

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QStylePainter(self)
        option = self._style_option()
        option.currentText = self._shown_text(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)

    def _style_option(self) -> QStyleOptionComboBox:
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        return option

    def _shown_text(self, option: QStyleOptionComboBox) -> str:
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        return elide_middle(option.currentText, self.fontMetrics(), field.width())

    def _show_full_text_in_tooltip(self, *_: object) -> None:
        self.setToolTip(self.currentText())


class RunPicker(QWidget):
    """A run with a checkpoint, chosen from the store's runs (``listed``) or handed over (a label).

    ``run_changed`` fires when another run (or none) is chosen; ``listed_runs(n)`` after each
    re-read of the store, with the number of runs offered. ``empty_text``: the combo's entry when no
    run qualifies (None: the combo stays empty and disabled), or the label's text before the first run.
    """

    run_changed = Signal()
    listed_runs = Signal(int)

    def __init__(self, store: RunStore | None, *, object_name: str, listed: bool = True,
                 accepts: Callable[[RunRecord], bool] = lambda record: True, describe: Describe = run_summary,
                 empty_text: str | None = None, refresh_button: bool = False, min_length: int = 18,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.accepts = accepts
        self.describe = describe
        self.empty_text = empty_text
        self._records: dict[str, RunRecord] = {}
        self._record: RunRecord | None = None   # the handed-over run (not listed)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo: ElidingComboBox | None = None
        self.label: QLabel | None = None
        if listed:
            self.combo = self._build_combo(object_name, min_length)
            layout.addWidget(self.combo, 1)
            if refresh_button:
                layout.addWidget(self._build_refresh_button())
        else:
            self.label = QLabel(empty_text or "")
            self.label.setObjectName(object_name)
            self.label.setWordWrap(True)
            layout.addWidget(self.label)

    def _build_combo(self, object_name: str, min_length: int) -> ElidingComboBox:
        combo = ElidingComboBox()
        combo.setObjectName(object_name)
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(min_length)
        combo.currentIndexChanged.connect(lambda *_: self.run_changed.emit())
        return combo

    def _build_refresh_button(self) -> QToolButton:
        button = QToolButton()
        button.setText("↻")
        button.setToolTip("Re-read the run history.")
        button.clicked.connect(self.refresh)
        self.refresh_button = button
        return button

    # -- the chosen run -----------------------------------------------------------------------
    def record(self) -> RunRecord | None:
        """The chosen run (None: no run yet)."""
        if self.combo is None:
            return self._record
        key = self.combo.currentData()
        return self._records.get(key) if key is not None else None

    def run_dir(self) -> Path | None:
        record = self.record()
        return record.run_dir if record is not None else None

    def checkpoint(self, which: str = "best") -> Path | None:
        """The chosen run's ``which`` checkpoint, else its other one, else None."""
        record = self.record()
        return record.checkpoint(which) if record is not None else None

    def text(self) -> str:
        """What the picker shows for the chosen run."""
        return self.combo.currentText() if self.combo is not None else self.label.text()

    def set_record(self, record: RunRecord) -> bool:
        """Choose ``record``: show it (not listed), or select it in the combo (False: it is not offered)."""
        if self.combo is not None:
            return self.select(record.run_dir)
        self._record = record
        self.label.setText(self.describe(record))
        self.run_changed.emit()
        return True

    def select(self, run_dir: Path | str) -> bool:
        """Select ``run_dir`` in the combo, re-reading the store when it is new; False if it is not offered."""
        if self.combo is None:
            return False
        index = self.combo.findData(str(run_dir))
        if index < 0:
            self.refresh()
            index = self.combo.findData(str(run_dir))
        if index < 0:
            return False
        self.combo.setCurrentIndex(index)
        return True

    # -- the list -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-list the store's runs that have a checkpoint and that the view accepts (keeps the choice)."""
        if self.combo is None or self.store is None:
            return
        previous = self.combo.currentData()
        records = [r for r in self.store.list_runs() if self.accepts(r) and has_checkpoint(r)]
        self._records = {str(r.run_dir): r for r in records}
        self.combo.blockSignals(True)
        self.combo.clear()
        for record in records:
            self.combo.addItem(self.describe(record), str(record.run_dir))
            self.combo.setItemData(self.combo.count() - 1, str(record.run_dir), Qt.ItemDataRole.ToolTipRole)
        if not records and self.empty_text is not None:
            self.combo.addItem(self.empty_text, None)
        index = self.combo.findData(previous) if previous is not None else -1
        self.combo.setCurrentIndex(index if index >= 0 else (0 if self.combo.count() else -1))
        self.combo.blockSignals(False)
        self.combo.setToolTip(self.combo.currentText())
        self.combo.fit_popup_to_items()
        self.combo.setEnabled(self.combo.count() > 0)
        if self.combo.currentData() != previous:
            self.run_changed.emit()
        self.listed_runs.emit(len(records))

    def refresh_if_visible(self, *_: Any) -> None:
        """After a training run: re-read the runs now if the picker is on screen (else when it is shown),
        so that a hidden view adds no work to the GUI thread at the end of every run."""
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh()  # runs may have been trained, renamed or deleted meanwhile
