"""Small widget factories the views share."""

from __future__ import annotations

from PySide6.QtWidgets import QSizePolicy, QSpinBox


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
