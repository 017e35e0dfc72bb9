"""The Sweep view's search-space form: one row per searchable config field, generated from the schema.

Each numeric field gets a check box (search it), a low and a high bound and a "log" box; each choice
field (a field with declared choices, or a yes/no switch) a check box and the choices to try, comma
separated. The rows come from :func:`engine.api.describe_fields` for the data, task, model and train
sections and the chosen algorithm's section (fields that do nothing for it are left out), with the
fields' own labels and tooltips (:mod:`studio.widgets.config_form`). The engine checks what is
entered (:func:`engine.api.dimension_from_json`): a range outside a field's bounds is refused naming it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QLineEdit, QWidget

from engine.api import (ALGORITHM_CONFIGS, NOT_SEARCHED, ConfigError, DataConfig, FieldSpec, ModelConfig,
                        SearchDimension, TaskConfig, TrainConfig, build_space, describe_fields,
                        dimension_from_json)
from studio.widgets.config_form import field_tooltip

SECTIONS = (("task", TaskConfig), ("algorithm", None), ("model", ModelConfig), ("train", TrainConfig),
            ("data", DataConfig))


def searchable(spec: FieldSpec, algorithm: type) -> bool:
    """A numeric or choice field that the sweep may set and that does something for ``algorithm``."""
    if spec.key in NOT_SEARCHED or not spec.applies(algorithm):
        return False
    return spec.kind in (int, float, bool) or bool(spec.choices)


def default_range(spec: FieldSpec, value: Any) -> tuple[str, str, bool]:
    """A starting range around ``value`` inside the field's bounds: (low, high, log)."""
    low_limit = spec.min if spec.min is not None else -1e9
    high_limit = spec.max if spec.max is not None else 1e9
    if spec.kind is int:
        low = max(int(low_limit), int(value) // 2 if value else int(low_limit))
        high = min(int(high_limit), max(int(value) * 2, low + 1))
        return str(low), str(high), False
    if value and value > 0:
        return f"{max(value / 10, low_limit):g}", f"{min(value * 10, high_limit):g}", True
    return f"{low_limit:g}", f"{high_limit:g}", False


class _Row:
    """The editors of one field."""

    def __init__(self, spec: FieldSpec, value: Any) -> None:
        self.spec = spec
        self.check = QCheckBox(spec.title)
        self.check.setObjectName(f"search_{spec.key}")
        self.check.setToolTip(field_tooltip(spec))
        self.is_choice = spec.kind is bool or bool(spec.choices)
        if self.is_choice:
            choices = spec.choices if spec.choices else (True, False)
            self.choices = QLineEdit(", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices))
            self.choices.setObjectName(f"choices_{spec.key}")
            self.choices.setToolTip("The values to try, comma separated")
            self.editors: list[QWidget] = [self.choices]
        else:
            low, high, log = default_range(spec, value)
            self.low, self.high = QLineEdit(low), QLineEdit(high)
            self.low.setObjectName(f"low_{spec.key}")
            self.high.setObjectName(f"high_{spec.key}")
            self.log = QCheckBox("log")
            self.log.setChecked(log)
            self.log.setToolTip("Sample on a log scale (learning rates)")
            for editor in (self.low, self.high):
                editor.setMinimumWidth(64)
                editor.setMaximumWidth(90)
            self.editors = [self.low, self.high, self.log]
        self.check.toggled.connect(self._enable)
        self._enable(False)

    def _enable(self, on: bool) -> None:
        for editor in self.editors:
            editor.setEnabled(on)

    def raw(self) -> Any:
        """The JSON form of this row's range or choices (as typed; the engine checks it)."""
        if self.is_choice:
            return {"choices": [text.strip() for text in self.choices.text().split(",") if text.strip()]}
        return {"low": _number(self.spec.key, self.low.text()), "high": _number(self.spec.key, self.high.text()),
                "log": self.log.isChecked()}


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{key}: {text.strip()!r} is not a number") from None


class SearchSpaceForm(QWidget):
    """Check boxes and ranges for every searchable field of one algorithm's run config."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(6)
        self.rows: dict[str, _Row] = {}
        self.algorithm = ""

    def set_config(self, config: Any) -> None:
        """Rows for ``config``'s algorithm, ranges around its values; the ticks of fields still there stay."""
        ticked = set(self.ticked())
        self._clear()
        self.algorithm = config.algorithm.name
        algorithm_cls = ALGORITHM_CONFIGS[self.algorithm]
        line = 0
        for section, cls in SECTIONS:
            cls = cls or algorithm_cls
            specs = [s for s in describe_fields(cls, section) if searchable(s, algorithm_cls)]
            if not specs:
                continue
            header = QLabel(f"<b>{section.capitalize()}</b>")
            self.grid.addWidget(header, line, 0, 1, 4)
            line += 1
            for spec in specs:
                row = _Row(spec, getattr(getattr(config, section), spec.name))
                self.rows[spec.key] = row
                self.grid.addWidget(row.check, line, 0)
                if row.is_choice:
                    self.grid.addWidget(row.choices, line, 1, 1, 3)
                else:
                    for column, editor in enumerate(row.editors, 1):
                        self.grid.addWidget(editor, line, column)
                row.check.toggled.connect(self.changed)
                row.check.setChecked(spec.key in ticked)
                line += 1
        self.grid.setRowStretch(line, 1)

    def _clear(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.rows = {}

    def tick(self, key: str, low: Any = None, high: Any = None, log: bool | None = None,
             choices: str | None = None) -> None:
        """Search ``key`` (with this range or these choices, else the row's): for scripts and tests."""
        row = self.rows[key]
        row.check.setChecked(True)
        if choices is not None:
            row.choices.setText(choices)
        if low is not None:
            row.low.setText(str(low))
        if high is not None:
            row.high.setText(str(high))
        if log is not None:
            row.log.setChecked(log)

    def ticked(self) -> list[str]:
        return [key for key, row in self.rows.items() if row.check.isChecked()]

    def space(self) -> Any:
        """The search space of the ticked rows; ConfigError naming the field when one is refused."""
        dimensions: list[SearchDimension] = [dimension_from_json(key, self.rows[key].raw(), self.algorithm)
                                             for key in self.ticked()]
        return build_space(dimensions)
