"""Entry point of the ``meta-studio`` console script (and ``python -m studio``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from engine.api import keep_freed_host_memory_in_all_threads
from studio import settings as st
from studio.qt_libs import check_qt_libraries


def wait_ms(ms: int) -> None:
    """Run the Qt event loop for ``ms`` milliseconds (for scripts that drive the window).

    Unlike ``QTest.qWait``, which in PySide6 6.11 keeps the GIL while it sleeps and so
    starves Python worker threads (a training thread ran 45x slower), a QEventLoop
    releases the GIL while it waits.
    """
    loop = QEventLoop()
    QTimer.singleShot(max(int(ms), 0), loop.quit)
    loop.exec()


def prepare_process_for_training() -> None:
    """Settings that must precede Qt's threads, so that tensor work in a worker thread (evaluation,
    races, and training where ``META_STUDIO_TRAINING_PROCESS=0`` keeps it in this process) runs as
    fast as in the main thread of ``meta-engine train`` (measured: ``bench/bench_studio_overhead.py``).

    * glibc keeps freed memory for reuse in every thread (:mod:`engine.training.host_memory`):
      without it the training thread page-faults in fresh memory at every step (0.6-1.3 s of
      kernel time per 200 ProtoNet steps).
    * Qt paints in the GUI thread only (``QT_NO_GUI_THREADPOOL``): Qt's raster engine otherwise
      splits every large fill of a repaint into tasks for a pool of threads; during training that
      woke 2 pool threads ~2 000 times a second, each wake-up preempting a PyTorch thread whose
      OpenMP team then waits for it. A user's own setting of the variable is kept.
    """
    keep_freed_host_memory_in_all_threads()
    os.environ.setdefault("QT_NO_GUI_THREADPOOL", "1")


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (reused if one exists), with the names QSettings uses and a consistent style.
    Creating it first calls :func:`prepare_process_for_training`."""
    app = QApplication.instance()
    if app is None:
        prepare_process_for_training()
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
    app.setOrganizationName(st.ORGANIZATION)
    app.setApplicationName(st.APPLICATION)
    app.setApplicationDisplayName("Meta Studio")
    app.setStyle("Fusion")
    font = app.font()
    if font.pointSizeF() < 9.5:
        font.setPointSizeF(9.5)
        app.setFont(font)
    return app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="meta-studio", description="Meta Studio: train few-shot learners.")
    parser.add_argument("folder", nargs="?", help="a data set folder to open (default: the built-in glyphs)")
    return parser.parse_args(argv)


def open_window(folder: str | None = None, *, warm_training_process: bool = True) -> Any:
    """The shown main window (on ``folder``, else the built-in glyphs); at the first launch (no
    ``help/guided_start_seen`` setting yet) with the guided start open beside it."""
    from studio.main_window import MainWindow

    window = MainWindow(load_data=folder is None, warm_training_process=warm_training_process)
    if folder:
        window.dataset_panel.set_root(folder)
    window.show()
    if not st.read_bool(st.KEY_GUIDE_SEEN):
        window.open_guided_start()
    return window


def main(argv: list[str] | None = None) -> int:
    """Open the main window and run the event loop; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    missing = check_qt_libraries()  # before Qt loads its platform plugin: one line naming the packages
    if missing:
        print(missing, file=sys.stderr)
        return 1
    app = create_application()  # first: it tunes the process before Qt and the workers start threads
    window = open_window(args.folder)  # noqa: F841 (kept alive by this frame while the loop runs)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
