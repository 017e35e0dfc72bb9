"""Entry point of the ``meta-studio`` console script (and ``python -m studio``)."""

from __future__ import annotations

import argparse
import sys

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from engine.training.host_memory import keep_freed_host_memory_if_alone
from studio import settings as st


def wait_ms(ms: int) -> None:
    """Run the Qt event loop for ``ms`` milliseconds (for scripts that drive the window).

    Unlike ``QTest.qWait``, which in PySide6 6.11 keeps the GIL while it sleeps and so
    starves Python worker threads (a training thread ran 45x slower), a QEventLoop
    releases the GIL while it waits.
    """
    loop = QEventLoop()
    QTimer.singleShot(max(int(ms), 0), loop.quit)
    loop.exec()


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (reused if one exists), with the names QSettings uses and a consistent style."""
    app = QApplication.instance()
    if app is None:
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


def main(argv: list[str] | None = None) -> int:
    """Open the main window and run the event loop; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    keep_freed_host_memory_if_alone()  # before Qt and the workers start threads (engine.training.host_memory)
    app = create_application()
    from studio.main_window import MainWindow

    window = MainWindow(load_data=args.folder is None)
    if args.folder:
        window.dataset_panel.set_root(args.folder)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
