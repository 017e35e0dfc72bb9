"""Screenshot of the Navigation tab (meta-RL on 2-D navigation: MAML | Reptile | pre-trained), for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/navigation.py [--out docs/screens/navigation.png]

Opens the real main window (with a temporary run history), switches to the Navigation tab, which
loads the shipped policies (assets/policies/), clicks a goal on the MAML plane, waits for the
adaptation, then plays the animation and grabs the window mid-demo, when the slider reaches
``--step`` (the paths of steps 0..step drawn).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = shot_parser(__doc__, out="docs/screens/navigation.png", timeout=300.0)
    parser.add_argument("--goal", default="0.38,-0.32", help="the goal clicked, X,Y")
    parser.add_argument("--step", type=int, default=2, help="grab when Play reaches this step")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_home()
    app, window = start_window(args)
    panel = window.views["Navigation"]
    window.center_tabs.setCurrentWidget(panel)
    if not panel.policies:
        raise SystemExit(f"no policies: {panel.policies_label.text()}")
    wait_until(lambda: panel.result is not None and not panel.is_adapting(), args.timeout, "the first adaptation")
    x, y = (float(v) for v in args.goal.split(","))
    plane = panel.planes["maml"]
    QTest.mouseClick(plane.viewport(), Qt.MouseButton.LeftButton, pos=plane.pixel_of(x, y))
    wait_until(lambda: not panel.is_adapting() and panel.result.goal == panel.goal, args.timeout, "the adaptation")
    panel.toggle_play()
    wait_until(lambda: panel.step_slider.value() >= args.step, args.timeout, f"step {args.step}")
    panel.play_timer.stop()                 # hold the frame (the button still says Pause: mid-demo)
    out = save_grab(window, args.out, settle_ms=300)
    returns = ", ".join(f"{kind} " + " -> ".join(f"{v:.1f}" for v in values)
                        for kind, values in panel.result.returns.items())
    print(f"wrote {out}: goal ({panel.goal[0]:.2f}, {panel.goal[1]:.2f}), step {panel.step_slider.value()}; "
          f"returns after 0..3 steps: {returns}; adaptation took {panel.result.milliseconds:.0f} ms")
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    exit_with(main)
