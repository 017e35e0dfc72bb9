"""Grab a screenshot of the main window during a real training run (for the docs).

    xvfb-run -s "-screen 0 1600x1000x24" python -m studio.screenshot --out docs/screenshot-main.png

Opens the window, starts a short training run on the built-in glyphs, waits
until the curves have points and a few validations happened, saves
``QWidget.grab()`` of the window and exits (the run is stopped cleanly).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshot-main.png", help="PNG file to write")
    parser.add_argument("--train-steps", type=int, default=300, help="steps of the run being trained")
    parser.add_argument("--grab-at", type=float, default=0.7, help="grab when this fraction of the steps is done")
    parser.add_argument("--validations", type=int, default=4, help="grab only after this many validations")
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    parser.add_argument("--overlay", type=int, default=1, help="overlay this many finished past runs")
    parser.add_argument("--finish", action="store_true", help="let the run finish instead of grabbing mid-run")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from studio.app import create_application

    app = create_application()
    from studio.main_window import MainWindow

    window = MainWindow(restore_settings=False)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.move(0, 0)
    window.show()
    window.evaluation_panel.auto_evaluate.setChecked(False)
    panel = window.algorithm_panel
    settings = {"task.n_query": 5, "task.meta_batch_size": 1, "model.hidden_channels": 32,
                "train.steps": args.train_steps, "train.val_every": max(args.train_steps // 10, 1),
                "train.val_episodes": 20, "train.checkpoint_every": args.train_steps, "train.num_threads": 1}
    for key, value in settings.items():
        panel.field(key).set_value(value)
    started = time.monotonic()
    state = {"started": False, "done": False}
    out = Path(args.out)

    def grab() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        window.plots.refresh(everything=True)
        window.training_panel.show_latest()  # the text as of the plots' last step
        app.processEvents()
        if not window.grab().save(str(out)):
            raise SystemExit(f"{out}: could not write the screenshot")
        print(f"wrote {out} at step {window.last_step} with {len(window.plots.val_x)} validations")
        state["done"] = True
        window.close()
        app.quit()

    def poll() -> None:
        if state["done"]:
            return
        if time.monotonic() - started > args.timeout:
            print("timed out", file=sys.stderr)
            app.exit(1)
            return
        if not state["started"]:
            if window.dataset_panel.is_loading() or window.dataset_panel.index is None:
                return
            if window.start_training() is None:
                print(f"cannot train: {window.config_errors()}", file=sys.stderr)
                app.exit(1)
                return
            state["started"] = True
            finished = [r.run_dir for r in window.store.list_runs() if r.status == "finished"]
            if args.overlay and finished:
                window.runs_panel.select_runs(finished[: args.overlay])
            return
        enough_steps = window.last_step >= args.grab_at * args.train_steps
        enough_vals = len(window.plots.val_x) >= args.validations
        if args.finish:
            if window.worker is None and not window.evaluation_panel.is_running():
                QTimer.singleShot(1500, grab)
                state["done"] = True
        elif enough_steps and enough_vals:
            grab()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(200)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
