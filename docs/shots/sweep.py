"""Screenshot of the Sweep tab in the middle of a real sweep on the built-in glyphs, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/sweep.py [--out docs/screens/sweep.png]

Opens the real main window (in a temporary run history), sets small settings in the Setup panel, ticks
the learning rate (log range), the shot count and the network width on the Sweep tab, asks for 12
trials with the median pruner, presses Start and waits until enough trials have finished for the
importances (and at least one was pruned, or the sweep ended), then saves ``window.grab()`` while the
sweep still runs, and stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = shot_parser(__doc__, out="docs/screens/sweep.png", timeout=1500.0)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=60, help="training steps of each trial")
    parser.add_argument("--finished", type=int, default=6, help="finished trials before the grab")
    return parser.parse_args(argv)


def finished(panel) -> int:
    rows = panel.snapshot.rows if panel.snapshot is not None else []
    return sum(row.state in ("complete", "pruned") for row in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_home()
    errors: list[str] = []
    _, window = start_window(args, lambda title, message: errors.append(f"{title}: {message}"))
    window.evaluation_panel.auto_evaluate.setChecked(False)
    for key, value in {"task.n_query": 5, "task.meta_batch_size": 1, "model.hidden_channels": 32,
                       "train.val_every": max(args.steps // 6, 1), "train.val_episodes": 20,
                       "train.num_threads": 1}.items():
        window.algorithm_panel.field(key).set_value(value)
    panel = window.views["Sweep"]
    window.center_tabs.setCurrentWidget(panel)
    panel.space_form.tick("algorithm.lr", low=1e-4, high=1e-1, log=True)
    panel.space_form.tick("task.n_shot", low=1, high=5, log=False)
    panel.space_form.tick("model.hidden_channels", low=8, high=64, log=True)
    panel.trials.setValue(args.trials)
    panel.steps.setValue(args.steps)
    panel.pruner.setCurrentText("median")
    panel.startup.setValue(2)
    panel.study.setText("glyphs-lr-shot-width")
    if panel.start() is None:
        raise SystemExit(f"the sweep did not start: {errors or window.config_errors()}")
    wait_until(lambda: panel.worker is None or (finished(panel) >= args.finished and bool(panel.snapshot.importances)),
               args.timeout, "finished trials")
    if errors:
        raise SystemExit("; ".join(errors))
    panel.table.selectRow(0)
    out = save_grab(window, args.out, settle_ms=1500)
    print(f"wrote {out}: {panel.summary_label.text()}")
    panel.stop()
    wait_until(lambda: panel.worker is None, args.timeout, "the sweep to stop")
    window.close()
    return 0


if __name__ == "__main__":
    exit_with(main)
