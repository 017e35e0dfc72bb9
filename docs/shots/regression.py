"""Screenshot of the Regression tab (sinusoid few-shot regression, MAML | pre-trained), for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/regression.py [--out docs/screenshot-regression.png]

Opens the real main window (with a temporary run history), switches to the Regression
tab, which loads the shipped models (assets/sinusoid_*.pt), draws a new sine with
K = 5 support points, plays the fine-tuning animation to step 10 and saves
``window.grab()``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = shot_parser(__doc__, out="docs/screenshot-regression.png", timeout=300.0)
    parser.add_argument("--k", type=int, default=5, help="support points")
    parser.add_argument("--sines", type=int, default=1, help="press New sine this many times (picks the task)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_home()
    app, window = start_window(args)
    panel = window.views["Regression"]
    window.center_tabs.setCurrentWidget(panel)
    if not panel.models:
        raise SystemExit(f"no models: {panel.models_label.text()}")
    panel.k_spin.setValue(args.k)
    for _ in range(args.sines):
        panel.new_sine()
    wait_until(lambda: not panel.is_fitting(), args.timeout, "the fits")
    panel.step_slider.setValue(0)
    panel.toggle_play()
    wait_until(lambda: not panel.is_playing(), args.timeout, "the animation")
    out = save_grab(window, args.out, settle_ms=300)
    mse = ", ".join(f"{kind} {panel.mse_at(kind, 0):.2f} -> {panel.mse_at(kind):.2f}" for kind in panel.models)
    print(f"wrote {out}: K = {len(panel.support_x)}, step {panel.step_slider.value()}, MSE {mse}; "
          f"fit of both models took {panel.fit_ms:.1f} ms")
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    exit_with(main)
