"""Guards for the Qt runtime: a broken binding, and Qt's own threads.

PySide6-Essentials 6.12.0 leaks references to None: every PySide call returning None dropped
one reference; on Python 3.11 a long session then aborts with "Fatal Python error:
none_dealloc". constraints.txt pins a good version.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel

REPO = Path(__file__).resolve().parents[2]


def test_void_qt_calls_do_not_leak_references_to_none(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
    assert abs(sys.getrefcount(None) - before) < 100


# Paints large fills, then prints how many of Qt's pool threads exist.
_PAINT_AND_COUNT_POOL_THREADS = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QApplication
if sys.argv[1] == "studio":
    from studio.app import create_application
    app = create_application([])
else:
    app = QApplication([])
image = QImage(1600, 1000, QImage.Format.Format_ARGB32_Premultiplied)
painter = QPainter(image)
for _ in range(20):
    painter.fillRect(0, 0, 1600, 1000, QColor(200, 30, 30, 100))
painter.end()
names = [open(f"/proc/self/task/{tid}/comm").read() for tid in os.listdir("/proc/self/task")]
print(sum(name.startswith("Thread (pooled)") for name in names))
"""


def _pool_threads_after_painting(how: str) -> int:
    env = {key: value for key, value in os.environ.items() if key != "QT_NO_GUI_THREADPOOL"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-c", _PAINT_AND_COUNT_POOL_THREADS, how], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread names from /proc")
def test_the_studio_paints_in_the_gui_thread_only():
    """Qt's raster engine hands parts of large fills to a thread pool; during training those threads
    woke ~2 000 times a second and preempted PyTorch's threads (studio.app.prepare_process_for_training)."""
    assert _pool_threads_after_painting("plain Qt") > 0  # the fills below do use the pool by default
    assert _pool_threads_after_painting("studio") == 0
