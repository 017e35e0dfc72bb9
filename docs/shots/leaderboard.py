"""Screenshot of the Leaderboard tab, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/leaderboard.py [--board FILE.json]
        [--out docs/screens/leaderboard.png]

With ``--board``: that leaderboard JSON (``meta-engine leaderboard --out FILE.json``) is copied under the
window's runs folder, where the view finds it at start. Without: the view's Run button runs a small
leaderboard (``--algorithms``, ``--steps``, ``--episodes``) on the built-in glyphs first. Then it saves
``window.grab()``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402


def main() -> int:
    parser = shot_parser(__doc__, out="docs/screens/leaderboard.png", timeout=1500.0)
    parser.add_argument("--board", help="a leaderboard JSON file to show")
    parser.add_argument("--algorithms", default="protonet,simpleshot", help="what Run trains without --board")
    parser.add_argument("--steps", type=int, default=100, help="training steps of each algorithm without --board")
    parser.add_argument("--episodes", type=int, default=100, help="test episodes per shot without --board")
    args = parser.parse_args()
    use_home()
    if args.board:
        folder = Path(os.environ["META_STUDIO_HOME"]) / "runs" / "leaderboards"
        folder.mkdir(parents=True)
        shutil.copy(args.board, folder / Path(args.board).name)
    errors: list[str] = []
    _, window = start_window(args, lambda title, message: errors.append(f"{title}: {message}"))
    panel = window.views["Leaderboard"]
    window.center_tabs.setCurrentWidget(panel)
    if not args.board:
        window.algorithm_panel.field("train.num_threads").set_value(1)
        panel.algorithms.setText(args.algorithms)
        panel.steps.setValue(args.steps)
        panel.episodes.setValue(args.episodes)
        started = time.monotonic()
        if panel.start() is None:
            raise SystemExit(f"the leaderboard did not start: {errors}")
        wait_until(lambda: not panel.is_running(), args.timeout, "the leaderboard")
        print(f"leaderboard ran in {time.monotonic() - started:.0f} s")
    if errors or panel.board is None:
        raise SystemExit("; ".join(errors) or "no leaderboard shown")
    print(f"{panel.table.rowCount()} rows from {panel.path}")
    save_grab(window, args.out)
    return 0


if __name__ == "__main__":
    exit_with(main)
