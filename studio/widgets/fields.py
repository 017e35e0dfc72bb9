"""Small widget factories the views share, and the "Advanced settings" switch of the setup forms."""

from __future__ import annotations

from typing import Iterable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSizePolicy, QSpinBox, QToolButton, QWidget

from studio import settings as st


def spin_box(low: int, high: int, value: int, tip: str, *, expanding: bool = False) -> QSpinBox:
    """An integer field from ``low`` to ``high`` showing ``value``, with a tooltip; ``expanding``: it takes
    the width its layout offers."""
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    if expanding:
        spin.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return spin


class AdvancedToggle(QToolButton):
    """Shows or hides the fields of ``forms`` (:class:`studio.widgets.config_form.ConfigForm`) that are not
    declared ``basic``, and the ``extra`` widgets (e.g. a box of advanced settings); collapsed unless the
    user opened it before (remembered under ``settings_key``)."""

    def __init__(self, settings_key: str, forms: Iterable[object], extra: Iterable[QWidget] = (),
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings_key = settings_key
        self.forms = list(forms)
        self.extra = list(extra)
        self.setObjectName("advanced_toggle")
        self.setCheckable(True)
        self.setAutoRaise(True)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.setToolTip("Shows or hides the settings most runs leave at their defaults.")
        self.setChecked(st.read_bool(settings_key, False))
        self.toggled.connect(self._toggled)
        self.refresh()

    def is_open(self) -> bool:
        return self.isChecked()

    def _toggled(self, shown: bool) -> None:
        st.settings().setValue(self.settings_key, bool(shown))
        self.refresh()

    def refresh(self) -> None:
        """Apply the switch to the forms and widgets; its text counts the advanced fields that apply."""
        shown = self.isChecked()
        for form in self.forms:
            form.set_advanced_shown(shown)
        for widget in self.extra:
            widget.setVisible(shown)
        count = sum(len(form.advanced_names()) for form in self.forms)
        self.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.setText("Hide advanced settings" if shown else f"Show advanced settings ({count} more)")
