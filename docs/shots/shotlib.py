"""What the screenshot scripts in this folder share: open the real window, wait, save a grab."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NoReturn


def shot_parser(doc: str, out: str, timeout: float) -> argparse.ArgumentParser:
    """A parser with the options every shot takes (--out, --size, --timeout); the shot adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", default=out, help="PNG file to write")
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    parser.add_argument("--timeout", type=float, default=timeout, help="give up after this many seconds")
    return parser


def use_home(home: str | None = None) -> None:
    """META_STUDIO_HOME for this shot: ``home``, or a new temporary folder (a run history of its own)."""
    os.environ["META_STUDIO_HOME"] = home or tempfile.mkdtemp(prefix="meta-studio-shot-")


def start_window(args: argparse.Namespace, show_error: Callable[[str, str], None] | None = None) -> tuple[Any, Any]:
    """(QApplication, main window) at ``args.size``, its data set loaded; errors print to stderr unless
    ``show_error`` takes them. Call :func:`use_home` first."""
    from studio.app import create_application

    app = create_application()
    return app, open_window(args.size, show_error or _print_error, args.timeout)


def exit_with(main: Callable[[], int]) -> NoReturn:
    """Run ``main`` and exit with its code, skipping interpreter teardown with live Qt objects
    (see tests/conftest.py)."""
    code = main()
    sys.stdout.flush()
    os._exit(code)


def _print_error(title: str, message: str) -> None:
    print(f"error: {title}: {message}", file=sys.stderr)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Run the event loop (releasing the GIL, see ``studio.app.wait_ms``) until ``condition()``."""
    from studio.app import wait_ms

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        wait_ms(50)


def open_window(size: str, show_error: Callable[[str, str], None], timeout: float) -> Any:
    """The main window at ``size`` ("WxH"), shown, its data set loaded; errors go to ``show_error``."""
    from studio.main_window import MainWindow

    window = MainWindow(restore_settings=False)
    window.show_error = show_error
    width, height = (int(v) for v in size.lower().split("x"))
    window.resize(width, height)
    window.move(0, 0)
    window.show()
    wait_until(lambda: window.dataset_panel.index is not None and not window.dataset_panel.is_loading(),
               timeout, "the data set")
    return window


def save_grab(window: Any, out: str | Path, settle_ms: int = 500) -> Path:
    """Let the window settle, then write ``window.grab()`` to ``out`` (SystemExit naming it on failure)."""
    from studio.app import wait_ms

    wait_ms(settle_ms)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(path)):
        raise SystemExit(f"{path}: could not write the screenshot")
    return path
