"""Screenshot of the Adapt tab running its demo, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/adapt.py [--out docs/screenshot-adapt.png]

Opens the real main window (in a temporary run history), switches to the Adapt tab and presses
Demo: the bundled glyph model (``assets/demo_model.pt``) with five characters of an alphabet it
never saw as new classes, five images each, and ten more to classify. The Setup, Runs and Log
docks are closed (View menu) so the tab has the room it has when a user does the same. Waits
until every adaptation has delivered its predictions, then saves ``window.grab()``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import open_window, save_grab, wait_until  # noqa: E402 (this folder)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshot-adapt.png", help="PNG file to write")
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ["META_STUDIO_HOME"] = tempfile.mkdtemp(prefix="meta-studio-shot-")

    from studio.app import create_application

    create_application()
    window = open_window(args.size, lambda title, message: print(f"error: {title}: {message}", file=sys.stderr),
                         args.timeout)
    panel = window.adapt_panel
    for dock in (window.setup_dock, window.runs_dock, window.log_dock):
        dock.close()
    window.center_tabs.setCurrentIndex(window.center_tabs.indexOf(panel.parentWidget().parentWidget()))
    if not panel.start_demo():
        raise SystemExit("the demo did not start (see the banner)")
    wait_until(lambda: panel.demo_button.isEnabled() and not panel.is_busy(), args.timeout, "the demo")
    out = save_grab(window, args.out, settle_ms=1000)
    print(f"wrote {out}")
    window.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown with live Qt objects (see tests/conftest.py)
