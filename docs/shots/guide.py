"""Screenshot of the guided start (Help > Getting started) over the real window, its estimate measured.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/shots/guide.py --size 1920x1080 \
        --out docs/screens/1920x1080/guided_start.png

Writes the whole screen (the window and the guide dialog beside it) once the built-in glyphs are
loaded and the guide shows how long its recommended setting takes on this computer.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shotlib import exit_with, shot_parser, start_window, use_home, wait_until  # noqa: E402


def main() -> int:
    args = shot_parser(__doc__, "docs/screens/guided_start.png", timeout=600).parse_args()
    use_home()
    app, window = start_window(args)
    guide = window.open_guided_start()
    wait_until(lambda: guide.estimate is not None, args.timeout, "the guide's time estimate")
    from studio.app import wait_ms

    wait_ms(800)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    screen = app.primaryScreen()
    if not screen.grabWindow(0).save(str(path)):
        raise SystemExit(f"{path}: could not write the screenshot")
    print(f"wrote {path} (guide {guide.width()}x{guide.height()} at {guide.x()},{guide.y()})")
    return 0


if __name__ == "__main__":
    exit_with(main)
