"""Screenshot of the Race tab after a short real race on the built-in glyphs, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/race.py [--out docs/screenshot-race.png]

Opens the real main window (in a temporary run history), sets small shared settings in the
Setup panel, ticks ProtoNet, MAML, Reptile and Baseline++ on the Race tab, presses Start and
waits for the race to end (training, then the same seeded test episodes for each), then
saves ``window.grab()``. ``--x seconds`` shows the curves against each algorithm's own
compute seconds instead of steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = shot_parser(__doc__, out="docs/screenshot-race.png", timeout=1500.0)
    parser.add_argument("--algorithms", default="protonet,maml,reptile,baseline++", help="2 to 4, comma-separated")
    parser.add_argument("--steps", type=int, default=300, help="meta-training steps of each algorithm")
    parser.add_argument("--test-episodes", type=int, default=100, help="seeded test episodes per algorithm")
    parser.add_argument("--hidden-channels", type=int, default=32, help="Conv-4 filters per block")
    parser.add_argument("--meta-batch-size", type=int, default=2, help="episodes per step")
    parser.add_argument("--x", choices=("steps", "seconds"), default="steps", help="x axis of the plot")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_home()
    errors: list[str] = []
    _, window = start_window(args, lambda title, message: errors.append(f"{title}: {message}"))
    window.evaluation_panel.auto_evaluate.setChecked(False)
    settings = {"task.n_query": 5, "task.meta_batch_size": args.meta_batch_size,
                "model.hidden_channels": args.hidden_channels,
                "train.steps": args.steps, "train.val_every": max(args.steps // 5, 1), "train.val_episodes": 30,
                "train.checkpoint_every": args.steps, "train.num_threads": 1}
    for key, value in settings.items():
        window.algorithm_panel.field(key).set_value(value)
    panel = window.views["Race"]
    window.center_tabs.setCurrentWidget(panel)
    panel.set_algorithms([name.strip() for name in args.algorithms.split(",")])
    panel.test_episodes.setValue(args.test_episodes)
    started = time.monotonic()
    if panel.start() is None:
        raise SystemExit(f"the race did not start: {errors or window.config_errors()}")
    wait_until(lambda: not panel.is_racing(), args.timeout, "the race")
    if errors:
        raise SystemExit("; ".join(errors))
    print(f"race ended in {time.monotonic() - started:.0f} s: {panel.status_label.text()}")
    for row in panel.rows.values():
        accuracy = f"{row.test_accuracy:.1%} ± {row.test_ci95:.1%}" if row.test_accuracy is not None else "-"
        memory = f"{row.peak_memory_mib:.1f} MiB" if row.peak_memory_mib is not None else "-"
        print(f"  {row.algorithm:11s} {row.status:8s} test {accuracy:16s} train {row.train_seconds:6.1f} s  "
              f"peak {memory}")
    panel.set_x_axis(args.x)
    panel.saved_list.setCurrentRow(0)
    out = save_grab(window, args.out)
    print(f"wrote {out}")
    window.close()
    return 0


if __name__ == "__main__":
    exit_with(main)
