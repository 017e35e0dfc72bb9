"""How much does the studio window cost a training run?

Trains the same short run (ProtoNet on the built-in glyphs, 200 steps by
default) twice: headless through ``engine.training.trainer.Trainer`` and inside
the studio window (offscreen, live plots, log pane, runs table), and prints
the steps per second of both and their ratio. Target: the window costs < 5%.

Both runs get the already decoded data set, so only the training loop is
timed (from the first to the last step callback). Not a test; run:

    QT_QPA_PLATFORM=offscreen python bench/bench_studio_overhead.py [--steps 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QEventLoop  # noqa: E402

from engine.config import RunConfig  # noqa: E402
from engine.training.callbacks import Callback, StepMetrics  # noqa: E402


def bench_config(steps: int, threads: int) -> RunConfig:
    return RunConfig.from_dict({
        "name": "bench",
        "task": {"n_way": 5, "n_shot": 1, "n_query": 15, "meta_batch_size": 4},
        "model": {"hidden_channels": 32},
        "train": {"steps": steps, "val_every": max(steps // 4, 1), "val_episodes": 20,
                  "checkpoint_every": steps, "num_threads": threads},
    })


class StepClock(Callback):
    """Wall time between the first and the last step callback."""

    def __init__(self) -> None:
        self.first: tuple[int, float] | None = None
        self.last: tuple[int, float] | None = None

    def on_step(self, metrics: StepMetrics) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (metrics.step, now)
        self.last = (metrics.step, now)

    def steps_per_second(self) -> float:
        assert self.first is not None and self.last is not None
        return (self.last[0] - self.first[0]) / max(self.last[1] - self.first[1], 1e-9)


def run_headless(config: RunConfig, data: object, runs: Path) -> float:
    from engine.training.trainer import Trainer

    clock = StepClock()
    Trainer(config, run_dir=runs / f"headless-{time.time_ns()}", callbacks=[clock], data=data).run()
    return clock.steps_per_second()


def run_in_window(config: RunConfig, window: object, app: object) -> float:
    """Start the run from the window (as the Train button does) and time its steps in the worker thread."""
    window.algorithm_panel.load_config(config)
    worker = window.start_training()
    if worker is None:
        raise SystemExit(f"the window refused to train: {window.config_errors()}")
    clock = StepClock()
    worker.adapter.on_step = _chain(worker.adapter.on_step, clock.on_step)
    gui_cpu, wall = time.thread_time(), time.perf_counter()
    loop = QEventLoop()
    worker.done.connect(loop.quit)
    loop.exec()  # the real event loop, as in the app (no polling)
    gui_cpu, wall = time.thread_time() - gui_cpu, time.perf_counter() - wall
    print(f"  GUI thread CPU: {gui_cpu:.1f} s over {wall:.1f} s ({gui_cpu / wall:.0%} of a core)")
    return clock.steps_per_second()


def _chain(first, second):
    def both(metrics: StepMetrics) -> None:
        second(metrics)
        first(metrics)
    return both


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="meta-studio-bench-"))
    os.environ["META_STUDIO_HOME"] = str(home)
    config = bench_config(args.steps, args.threads)

    from studio.app import create_application
    from studio.datasets import load_data_cached

    app = create_application([])
    app.setOrganizationName("MetaStudioBench")
    print("loading the built-in glyphs…", flush=True)
    data = load_data_cached(config.data)

    from studio.main_window import MainWindow

    window = MainWindow(restore_settings=False)
    window.evaluation_panel.auto_evaluate.setChecked(False)
    window.show()
    while window.dataset_panel.is_loading():
        app.processEvents()
        time.sleep(0.01)
    window.plots.set_smoothing(0.85)

    run_headless(bench_config(10, args.threads), data, home)  # warm-up (lazy imports, allocator)
    headless, studio = [], []
    for repeat in range(args.repeats):
        headless.append(run_headless(config, data, home))
        studio.append(run_in_window(config, window, app))
        print(f"repeat {repeat + 1}: headless {headless[-1]:.1f} steps/s, window {studio[-1]:.1f} steps/s",
              flush=True)
    best_headless, best_studio = max(headless), max(studio)
    cost = 1.0 - best_studio / best_headless
    print(f"\n{args.steps} steps of ProtoNet (5-way 1-shot, 4 episodes/step) on the built-in glyphs")
    print(f"headless Trainer : {best_headless:8.1f} steps/s")
    print(f"studio window    : {best_studio:8.1f} steps/s  (offscreen, live plots)")
    print(f"ratio window/headless = {best_studio / best_headless:.3f}  (window costs {cost:+.1%}; target < 5%)")
    print(f"plot redraws so far: {window.plots.n_redraws}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
