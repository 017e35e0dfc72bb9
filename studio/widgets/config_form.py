"""Hyperparameter forms generated from the engine's config dataclasses.

Each field declared in :mod:`engine.config` becomes one editor: int -> QSpinBox,
float -> QDoubleSpinBox (QLineEdit accepting scientific notation for learning
rates), bool -> QCheckBox, choices -> QComboBox, list -> comma-separated
QLineEdit, text -> QLineEdit. The label is the field's plain-words ``label``; the
tooltip its help (what it does first), its bounds, and its config key last. Every
edit is checked with :func:`engine.config.check_field` so an invalid value is
marked (red border and message) as it is typed.

Rows can be hidden without losing their values: the fields declared ``basic`` stay,
the others show only while :meth:`ConfigForm.set_advanced_shown` says so, and
fields that do nothing for the current algorithm or device (``FieldSpec.applies``)
are hidden by :meth:`ConfigForm.set_context`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractSpinBox, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel,
                               QLineEdit, QSpinBox, QVBoxLayout, QWidget)

from engine.api import FieldSpec, check_field, describe_fields

INT_LIMIT = 2_000_000_000
ERROR_STYLE = "border: 2px solid #d62728; border-radius: 3px;"


def field_label(spec: FieldSpec) -> str:
    """The field's label in plain words (declared with the field in :mod:`engine.config`)."""
    return spec.title


def field_tooltip(spec: FieldSpec) -> str:
    """What the field does (its help), its bounds or choices, then its config key."""
    bounds = _bounds_text(spec)
    lines = [spec.help] + ([bounds] if bounds else []) + [f"(config key: {spec.key})"]
    return "\n".join(lines)


def is_scientific(spec: FieldSpec) -> bool:
    """Learning-rate-like floats are edited as text so 1e-4 can be typed."""
    return spec.kind is float and (spec.name == "lr" or spec.name.endswith("_lr") or spec.max is None
                                   or spec.max > 1000)


class FieldEditor:
    """One editor widget bound to one config field."""

    def __init__(self, spec: FieldSpec, on_change: Any) -> None:
        self.spec = spec
        self.widget = self._build()
        self.error_label = QLabel()
        self.error_label.setObjectName(f"error_{spec.key}")
        self.error_label.setStyleSheet("color: #d62728;")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        self.widget.setToolTip(field_tooltip(spec))
        self.widget.setObjectName(spec.key)
        self._on_change = on_change
        self._connect()
        self.set_value(spec.default)

    # -- construction -------------------------------------------------------
    def _build(self) -> QWidget:
        spec = self.spec
        if spec.choices is not None:
            combo = QComboBox()
            for choice in spec.choices:
                combo.addItem(str(choice), choice)
            return combo
        if spec.kind is bool:
            return QCheckBox()
        if spec.kind is int:
            spin = QSpinBox()
            spin.setRange(int(spec.min) if spec.min is not None else -INT_LIMIT,
                          int(spec.max) if spec.max is not None else INT_LIMIT)
            spin.setKeyboardTracking(True)
            spin.setAccelerated(True)
            spin.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToPreviousValue)
            return spin
        if spec.kind is float and not is_scientific(spec):
            spin = QDoubleSpinBox()
            spin.setDecimals(3)
            spin.setRange(spec.min if spec.min is not None else -1e9, spec.max if spec.max is not None else 1e9)
            spin.setSingleStep(0.05 if (spec.max or 0) <= 1 else 1.0)
            return spin
        edit = QLineEdit()
        if spec.kind is list:
            edit.setPlaceholderText("comma-separated")
        elif spec.kind is float:
            edit.setPlaceholderText("e.g. 1e-3")
        return edit

    def _connect(self) -> None:
        widget = self.widget
        if isinstance(widget, QComboBox):
            widget.currentIndexChanged.connect(self._changed)
        elif isinstance(widget, QCheckBox):
            widget.toggled.connect(self._changed)
        elif isinstance(widget, QAbstractSpinBox):
            widget.lineEdit().textChanged.connect(self._changed)
            widget.valueChanged.connect(self._changed)
            widget.editingFinished.connect(self._changed)
        else:
            widget.textChanged.connect(self._changed)

    def _changed(self, *args: Any) -> None:
        self.refresh_error()
        self._on_change()

    # -- values -------------------------------------------------------------
    def text(self) -> str:
        widget = self.widget
        if isinstance(widget, QAbstractSpinBox):
            return widget.lineEdit().text().strip()
        if isinstance(widget, QLineEdit):
            return widget.text().strip()
        if isinstance(widget, QComboBox):
            return widget.currentText()
        return str(widget.isChecked())

    def parse(self) -> tuple[Any, str | None]:
        """(value, None) or (None, message naming the field)."""
        spec = self.spec
        widget = self.widget
        if isinstance(widget, QComboBox):
            return widget.currentData(), None
        if isinstance(widget, QCheckBox):
            return widget.isChecked(), None
        text = self.text()
        if spec.kind is int:
            try:
                value: Any = int(text.replace(",", ""))
            except ValueError:
                return None, f"{spec.key} must be a whole number (got {text!r})"
        elif spec.kind is float:
            try:
                value = float(text.replace(",", "."))
            except ValueError:
                return None, f"{spec.key} must be a number such as 0.001 or 1e-3 (got {text!r})"
        elif spec.kind is list:
            value = [part.strip() for part in text.split(",") if part.strip()]
        else:
            value = text
        message = check_field(spec, value)
        return (None, message) if message else (value, None)

    def value(self) -> Any:
        value, message = self.parse()
        if message:
            raise ValueError(message)
        return value

    def error(self) -> str | None:
        return self.parse()[1]

    def set_value(self, value: Any) -> None:
        widget = self.widget
        spec = self.spec
        if isinstance(widget, QComboBox):
            index = widget.findData(value)
            widget.setCurrentIndex(index if index >= 0 else 0)
        elif isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QSpinBox):
            widget.setValue(int(value))
            widget.lineEdit().setText(widget.textFromValue(widget.value()))
        elif isinstance(widget, QDoubleSpinBox):
            widget.setValue(float(value))
            widget.lineEdit().setText(widget.textFromValue(widget.value()))
        elif spec.kind is list:
            widget.setText(", ".join(str(v) for v in value))
        elif spec.kind is float:
            widget.setText(format_float(float(value)))
        else:
            widget.setText(str(value))
        self._changed()

    def refresh_error(self) -> str | None:
        message = self.error()
        self.widget.setStyleSheet(ERROR_STYLE if message else "")
        self.error_label.setText(message or "")
        self.error_label.setVisible(bool(message))
        self.widget.setProperty("invalid", bool(message))
        return message


def format_float(value: float) -> str:
    if value != 0 and math.isfinite(value) and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:g}"


def _bounds_text(spec: FieldSpec) -> str:
    if spec.choices is not None:
        return "Choices: " + ", ".join(map(str, spec.choices))
    if spec.kind not in (int, float):
        return ""
    low = "" if spec.min is None else (f"> {spec.min:g}" if spec.exclusive_min else f">= {spec.min:g}")
    high = "" if spec.max is None else f"<= {spec.max:g}"
    return "Range: " + ", ".join(part for part in (low, high) if part) if (low or high) else ""


class ConfigForm(QWidget):
    """A form for one config section, generated from its dataclass.

    ``include`` restricts the form to some fields (in their declared order),
    ``exclude`` leaves some out. :meth:`values` returns the parsed values;
    :meth:`errors` the messages of the invalid fields (each names the field). Hidden rows
    (advanced, or not applying) keep their values.
    """

    changed = Signal()

    def __init__(self, section: str, section_cls: type, *, include: Iterable[str] | None = None,
                 exclude: Iterable[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.section = section
        self.include = list(include) if include is not None else None
        self.exclude = set(exclude)
        self.layout_ = self._make_layout()
        self.editors: dict[str, FieldEditor] = {}
        self.labels: dict[str, QLabel] = {}
        self._cells: dict[str, QWidget] = {}
        self.advanced_shown = True
        self.algorithm: type | None = None
        self.device = "cpu"
        self.section_cls = section_cls
        self.set_section_class(section_cls)

    def set_section_class(self, section_cls: type) -> None:
        """Rebuild the form for another dataclass (e.g. another algorithm's config)."""
        self._clear()
        self.editors.clear()
        self.labels.clear()
        self._cells.clear()
        self.section_cls = section_cls
        specs = describe_fields(section_cls, self.section)
        if self.include is not None:
            by_name = {spec.name: spec for spec in specs}
            specs = [by_name[name] for name in self.include if name in by_name]
        for spec in specs:
            if spec.name in self.exclude:
                continue
            editor = FieldEditor(spec, self.changed.emit)
            label = QLabel(field_label(spec))
            label.setObjectName(f"label_{spec.key}")
            label.setToolTip(field_tooltip(spec))
            label.setBuddy(editor.widget)
            cell = QWidget()
            column = QVBoxLayout(cell)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(1)
            column.addWidget(editor.widget)
            column.addWidget(editor.error_label)
            self._add_row(len(self.editors), label, cell)
            self.editors[spec.name] = editor
            self.labels[spec.name] = label
            self._cells[spec.name] = cell
        self._show_rows()
        self.changed.emit()

    # -- which rows show ----------------------------------------------------
    def set_advanced_shown(self, shown: bool) -> None:
        """Show the fields not declared ``basic`` too (True), or only the basic ones (False)."""
        self.advanced_shown = bool(shown)
        self._show_rows()

    def set_context(self, algorithm: type | None = None, device: str | None = None) -> None:
        """Hide the fields that do nothing for ``algorithm`` (an AlgorithmConfig class) on ``device``."""
        self.algorithm = algorithm
        if device is not None:
            self.device = device
        self._show_rows()

    def applies(self, name: str) -> bool:
        """Whether field ``name`` does anything for the form's algorithm and device."""
        return self.editors[name].spec.applies(self.algorithm, self.device)

    def is_shown(self, name: str) -> bool:
        """Whether field ``name``'s row is shown (it applies, and it is basic or the advanced ones show)."""
        spec = self.editors[name].spec
        return self.applies(name) and (spec.basic or self.advanced_shown)

    def advanced_names(self) -> list[str]:
        """The applying fields that only show with the advanced ones."""
        return [name for name, editor in self.editors.items() if not editor.spec.basic and self.applies(name)]

    def _show_rows(self) -> None:
        for name in self.editors:
            self._set_row_visible(name, self.is_shown(name))

    def _set_row_visible(self, name: str, visible: bool) -> None:
        self.layout_.setRowVisible(self._cells[name], visible)

    def _clear(self) -> None:
        """Remove every row (before the form is rebuilt)."""
        while self.layout_.rowCount():
            self.layout_.removeRow(0)

    def _add_row(self, index: int, label: QLabel, cell: QWidget) -> None:
        """Place field number ``index``: its label and its cell (the editor above its error message)."""
        self.layout_.addRow(label, cell)

    def values(self) -> dict[str, Any]:
        """Parsed values of the valid fields (invalid ones are left out; see :meth:`errors`)."""
        out = {}
        for name, editor in self.editors.items():
            value, message = editor.parse()
            if message is None:
                out[name] = value
        return out

    def errors(self) -> list[str]:
        return [message for editor in self.editors.values() if (message := editor.error())]

    def load(self, obj: Any) -> None:
        """Set the editors from a dataclass instance or a dict (unknown keys ignored)."""
        getter = obj.get if isinstance(obj, dict) else (lambda k, d=None: getattr(obj, k, d))
        for name, editor in self.editors.items():
            value = getter(name, None)
            if value is not None:
                editor.set_value(value)

    def editor(self, name: str) -> FieldEditor:
        return self.editors[name]

    def _make_layout(self) -> Any:
        """The form's layout: a label column and a field column."""
        layout = QFormLayout(self)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout.setContentsMargins(4, 4, 4, 4)
        return layout
