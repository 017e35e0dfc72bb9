"""The episode-shape form of the analysis views (evaluation, episode inspector, inner-loop scrubber).

Generated from :class:`engine.config.EpisodeShape` by the schema-driven form machinery
(:class:`studio.widgets.config_form.ConfigForm`): one editor per field, its bounds and help text
from the run config's schema (``task.n_way`` ... ``train.val_episodes``), never re-typed here.
The fields sit side by side, ``per_row`` label/editor pairs to a line.
"""

from __future__ import annotations

from typing import Any, Iterable

from PySide6.QtWidgets import QGridLayout, QLabel, QSpinBox, QWidget

from engine.api import EpisodeShape
from studio.widgets.config_form import ConfigForm

SHAPE_FIELDS = ("n_way", "n_shot", "n_query")
ALL_FIELDS = SHAPE_FIELDS + ("episodes",)


class EpisodeShapeForm(ConfigForm):
    """Editors of an :class:`EpisodeShape`'s ``fields`` (in the order given), starting at ``initial``."""

    def __init__(self, fields: Iterable[str] = ALL_FIELDS, *, initial: EpisodeShape | None = None,
                 per_row: int | None = None, parent: QWidget | None = None) -> None:
        self.fields = tuple(fields)
        self.per_row = per_row or len(self.fields)
        super().__init__("episode", EpisodeShape, include=self.fields, parent=parent)
        self.load(initial or EpisodeShape())

    def spin(self, name: str) -> QSpinBox:
        """The spin box of field ``name`` ("n_way", "n_shot", "n_query", "episodes")."""
        return self.editors[name].widget

    def shape(self) -> EpisodeShape:
        """The shape shown (fields not in this form keep :class:`EpisodeShape`'s defaults)."""
        return EpisodeShape(**{name: self.spin(name).value() for name in self.fields})

    # -- layout: label/editor pairs side by side ------------------------------------------------
    def _make_layout(self) -> Any:
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(6)
        layout.setVerticalSpacing(2)
        return layout

    def _clear(self) -> None:
        while self.layout_.count():
            widget = self.layout_.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()

    def _add_row(self, index: int, label: QLabel, cell: QWidget) -> None:
        row, column = divmod(index, self.per_row)
        self.layout_.addWidget(label, row, 2 * column)
        self.layout_.addWidget(cell, row, 2 * column + 1)

    def _set_row_visible(self, name: str, visible: bool) -> None:
        self.labels[name].setVisible(visible)
        self._cells[name].setVisible(visible)
