"""Screenshot of the "Inner loop" view (docs/screenshot-scrubber.png), done for real.

    nice -n 15 xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/shots/scrubber.py

Opens the studio window with a fresh, temporary run history, trains a short MAML run on
the built-in glyphs through the window (Conv-4 with 32 filters), switches to the
"Inner loop" tab, runs the inner loop for N = 20 steps on test episode 0, puts the slider
at step 10 and saves ``window.grab()``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shotlib import open_window, save_grab  # noqa: E402 (this folder)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot-scrubber.png"), help="PNG file to write")
    parser.add_argument("--algorithm", default="maml", choices=("maml", "fomaml"))
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--inner-steps", type=int, default=20, help="N: inner steps scrubbed")
    parser.add_argument("--step", type=int, default=10, help="slider position in the screenshot")
    parser.add_argument("--seed", type=int, default=0, help="test episode seed")
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--timeout", type=float, default=1500.0)
    parser.add_argument("--home", help="META_STUDIO_HOME to use (default: a new temporary folder); a MAML run "
                                       "already there is reused instead of training again")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    scratch = Path(tempfile.mkdtemp(prefix="meta-studio-scrubber-shot-"))
    os.environ["META_STUDIO_HOME"] = args.home or str(scratch / "home")  # runs of this screenshot only
    os.environ["XDG_CONFIG_HOME"] = str(scratch / "config")     # leave the user's settings alone
    from PySide6.QtCore import Qt, QTimer

    from studio.app import create_application

    app = create_application()
    started = time.monotonic()
    window = open_window(args.size, lambda title, message: print(f"{title}: {message}", file=sys.stderr),
                         args.timeout)  # no modal dialogs
    window.evaluation_panel.auto_evaluate.setChecked(False)
    window.algorithm_panel.set_algorithm(args.algorithm)
    settings = {"task.n_way": 5, "task.n_shot": 1, "task.n_query": 5, "task.meta_batch_size": 4,
                "model.hidden_channels": 32, "train.steps": args.train_steps,
                "train.val_every": max(1, args.train_steps // 3), "train.val_episodes": 20,
                "train.checkpoint_every": args.train_steps, "train.num_threads": 2}
    for key, value in settings.items():
        window.algorithm_panel.field(key).set_value(value)
    scrubber = window.views["Inner loop"]
    state = {"phase": "loading"}

    def scrubbed(output: object) -> None:
        scrubber.slider.setValue(args.step)
        state["phase"] = "grab"
        out = save_grab(window, args.out)
        trajectory = scrubber.output.trajectory
        accuracy = ", ".join(f"{k}: {trajectory.query_accuracy[k].item():.0%}"
                             for k in (0, 1, 3, args.step, trajectory.steps))
        print(f"wrote {out}; query accuracy by step {accuracy}")
        state["phase"] = "done"
        window.close()
        app.quit()

    def training_ended(status: str) -> None:
        print(f"training {status} after {time.monotonic() - started:.0f} s")
        state["phase"] = "scrub"

    def poll() -> None:
        if time.monotonic() - started > args.timeout:
            print("timed out", file=sys.stderr)
            app.exit(1)
        elif state["phase"] == "loading":  # (open_window waited for the data set)
            if any(r.algorithm == args.algorithm and r.status == "finished" for r in window.store.list_runs()):
                print(f"reusing the {args.algorithm} run in {window.store.root}")
                state["phase"] = "scrub"
                return
            if window.start_training() is None:
                print(f"cannot train: {window.config_errors()}", file=sys.stderr)
                app.exit(1)
                return
            state["phase"] = "training"
        elif state["phase"] == "scrub" and window.worker is None:
            window.center_tabs.setCurrentWidget(scrubber)
            # make room for the view, as a user would by dragging the dock edges
            window.resizeDocks([window.setup_dock], [340], Qt.Orientation.Horizontal)
            window.resizeDocks([window.runs_dock], [150], Qt.Orientation.Vertical)
            scrubber.run_picker.refresh()
            scrubber.steps_spin.setValue(args.inner_steps)
            scrubber.seed_spin.setValue(args.seed)
            scrubber.scrubbed.connect(scrubbed)
            scrubber.error.connect(lambda message: (print(message, file=sys.stderr), app.exit(1)))
            if scrubber.start() is None:
                print("the scrubber found no run to adapt", file=sys.stderr)
                app.exit(1)
                return
            state["phase"] = "scrubbing"

    window.training_ended.connect(training_ended)
    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(200)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
