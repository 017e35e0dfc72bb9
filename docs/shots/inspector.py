"""Screenshot of the Episodes tab (episode inspector) on a real run, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/inspector.py [--out docs/screenshot-inspector.png]

Trains a short ProtoNet run on the built-in glyphs with the engine's Trainer (in a
temporary run history, so the window shows just this run), opens the real main window,
selects the run in the Runs table, inspects 100 test episodes on the Episodes tab,
pages to an episode with a wrong prediction and saves ``window.grab()``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = shot_parser(__doc__, out="docs/screenshot-inspector.png", timeout=900.0)
    parser.add_argument("--train-steps", type=int, default=300, help="meta-training steps of the run")
    parser.add_argument("--episodes", type=int, default=100, help="episodes to inspect")
    parser.add_argument("--home", help="reuse a META_STUDIO_HOME whose run history already holds a run this "
                                         "script trained (skips the training)")
    return parser.parse_args(argv)


def train_run(steps: int) -> Path:
    """A short real run in the (temporary) default run history; returns its folder."""
    from engine.config import RunConfig
    from engine.training.run_store import RunStore, default_runs_root
    from engine.training.trainer import Trainer

    config = RunConfig()
    config.name = f"ProtoNet 5-way 1-shot glyphs, {steps} steps"
    config.model.hidden_channels = 32
    config.task.meta_batch_size = 2
    config.train.steps = steps
    config.train.val_every, config.train.val_episodes = max(steps // 3, 1), 50
    config.train.checkpoint_every = steps
    config.train.num_threads = 2
    started = time.monotonic()
    summary = Trainer(config, run_dir=RunStore(default_runs_root()).new_run_dir(config.name)).run()
    if summary.status != "finished":
        raise SystemExit(f"training {summary.status}: {summary.message}")
    print(f"trained {summary.steps_done} steps in {time.monotonic() - started:.0f} s, best validation accuracy "
          f"{summary.best_val_accuracy:.1%}")
    return summary.run_dir


def trained_run() -> Path:
    from engine.training.run_store import RunStore, default_runs_root

    finished = [r for r in RunStore(default_runs_root()).list_runs() if r.status == "finished"]
    if not finished:
        raise SystemExit(f"no finished run in {default_runs_root()}")
    print(f"reusing {finished[0].run_dir}")
    return finished[0].run_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_home(args.home)
    run_dir = trained_run() if args.home else train_run(args.train_steps)
    _, window = start_window(args)
    panel = window.views["Episodes"]
    window.runs_panel.refresh()
    window.runs_panel.select_runs([run_dir])
    window.center_tabs.setCurrentWidget(panel)
    assert panel.run_picker.run_dir() == run_dir, "the Episodes tab did not follow the runs table"
    panel.shape_form.spin("episodes").setValue(args.episodes)
    started = time.monotonic()
    if panel.start() is None:
        raise SystemExit("the Inspect button is disabled")
    wait_until(lambda: not panel.is_running(), args.timeout, "the inspection")
    if panel.inspection is None:
        raise SystemExit(f"inspection failed: {panel.summary_label.text()}")
    print(f"inspected {panel.inspection.n_episodes} episodes in {time.monotonic() - started:.1f} s: "
          f"mean {panel.inspection.mean:.1%} ± {panel.inspection.ci95:.1%}")
    if not panel.next_mistake():
        print("no episode with a mistake", file=sys.stderr)
    out = save_grab(window, args.out)
    print(f"wrote {out} ({panel.page_label.text()}, {panel.episode_label.text()})")
    window.close()
    return 0


if __name__ == "__main__":
    exit_with(main)
