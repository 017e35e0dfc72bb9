"""What the screenshot scripts in this folder share: open the real window, wait, save a grab."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable


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
