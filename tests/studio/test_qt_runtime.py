"""Guards against a broken Qt binding: PySide6-Essentials 6.12.0 leaks references to None.

Every PySide call returning None dropped one reference; on Python 3.11 a long session then
aborts with "Fatal Python error: none_dealloc". constraints.txt pins a good version.
"""

import sys

from PySide6.QtWidgets import QLabel


def test_void_qt_calls_do_not_leak_references_to_none(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
    assert abs(sys.getrefcount(None) - before) < 100
