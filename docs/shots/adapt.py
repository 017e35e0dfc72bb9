"""Screenshot of the Adapt tab running its demo, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/adapt.py [--out docs/screenshot-adapt.png]

Opens the real main window (in a temporary run history), switches to the Adapt tab and presses
Demo: the bundled model (``assets/demo_model.pt``, trained on Omniglot's small1) with five
characters of an alphabet it never saw (its shipped drawings, Japanese katakana) as new classes,
five drawings each, and ten more to classify. The Setup, Runs and Log
docks are closed (View menu) so the tab has the room it has when a user does the same. Waits
until every adaptation has delivered its predictions, then saves ``window.grab()``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    return shot_parser(__doc__, out="docs/screenshot-adapt.png", timeout=300.0).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_home()
    _, window = start_window(args)
    panel = window.adapt_panel
    for dock in (window.setup_dock, window.runs_dock, window.log_dock):
        dock.close()
    tabs = window.center_tabs
    tabs.setCurrentIndex(next(i for i in range(tabs.count()) if tabs.tabText(i) == "Adapt"))
    if not panel.start_demo():
        raise SystemExit("the demo did not start (see the banner)")
    wait_until(lambda: panel.demo_button.isEnabled() and not panel.is_busy(), args.timeout, "the demo")
    out = save_grab(window, args.out, settle_ms=1000)
    print(f"wrote {out}")
    window.close()
    return 0


if __name__ == "__main__":
    exit_with(main)
