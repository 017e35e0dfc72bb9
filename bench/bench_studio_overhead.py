"""How much does the studio window cost a training run?

Trains the same short run (ProtoNet on the built-in glyphs, 200 steps by
default) headless through ``engine.training.trainer.Trainer`` (as the CLI does)
and inside the studio window (offscreen, live plots, log pane, runs table),
and prints the steps per second of both and their ratio. Target: the window
costs < 5%.

Each measurement runs in a fresh process (alternating headless / window), so
neither inherits the other's warm caches or thread pools: a process whose main
thread already ran PyTorch ops keeps an OpenMP team that slows PyTorch in any
other thread by up to 3x on a small machine, which would make the comparison
meaningless. Timing is from the first to the last step callback (data loading
and model building excluded). Not a test; run:

    python bench/bench_studio_overhead.py [--steps 200] [--repeats 2] [--threads 0] [--thread-too]
                                          [--without-plots-too]

The window trains in a child process (engine/training/process.py), as the studio does by default;
``--thread-too`` also measures it training in a thread of the window's own process, and
``--without-plots-too`` the window with its plot timer stopped (what the live plots cost).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NO_PLOTS_ENV = "META_STUDIO_BENCH_NO_PLOTS"  # set in a window child: its plot timer is stopped


def bench_config(steps: int, threads: int):
    from engine.config import RunConfig

    return RunConfig.from_dict({
        "name": "bench",
        "task": {"n_way": 5, "n_shot": 1, "n_query": 15, "meta_batch_size": 4},
        "model": {"hidden_channels": 32},
        "train": {"steps": steps, "val_every": max(steps // 4, 1), "val_episodes": 20,
                  "checkpoint_every": steps, "num_threads": threads},
    })


def _step_clock():
    from engine.training.callbacks import Callback

    class StepClock(Callback):
        """Wall time between the first and the last step callback."""

        def __init__(self) -> None:
            self.first: tuple[int, float] | None = None
            self.last: tuple[int, float] | None = None

        def on_step(self, metrics) -> None:
            now = time.perf_counter()
            if self.first is None:
                self.first = (metrics.step, now)
            self.last = (metrics.step, now)

        def steps_per_second(self) -> float:
            assert self.first is not None and self.last is not None, "no step was reported"
            return (self.last[0] - self.first[0]) / max(self.last[1] - self.first[1], 1e-9)

    return StepClock()


def measure_headless(steps: int, threads: int) -> dict:
    """The Trainer in the main thread of this process, as ``meta-engine train`` runs it."""
    from engine.data.dataset import load_data
    from engine.training.trainer import Trainer

    config = bench_config(steps, threads)
    data = load_data(config.data)
    runs = Path(os.environ["META_STUDIO_HOME"])
    Trainer(bench_config(10, threads), run_dir=runs / "warm-up", data=data).run()
    clock = _step_clock()
    Trainer(config, run_dir=runs / "headless", callbacks=[clock], data=data).run()
    return {"steps_per_s": clock.steps_per_second()}


def measure_window(steps: int, threads: int) -> dict:
    """The same run started from the window (as the Train button does), the event loop running."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop

    from studio.app import create_application
    from studio.main_window import MainWindow

    app = create_application([])
    app.setOrganizationName("MetaStudioBench")
    window = MainWindow(restore_settings=False, warm_training_process=True)  # as the app
    window.evaluation_panel.auto_evaluate.setChecked(False)
    window.resize(1600, 1000)
    window.show()
    if os.environ.get(NO_PLOTS_ENV) == "1":
        window.plots.timer.stop()  # the curves are drawn once, when the run ends
    while window.dataset_panel.is_loading():  # decoded in a worker thread, as in the app
        app.processEvents()
        time.sleep(0.01)

    def train(config) -> tuple[float, float, float]:
        window.algorithm_panel.load_config(config)
        worker = window.start_training()
        if worker is None:
            raise SystemExit(f"the window refused to train: {window.config_errors()}")
        clock = _step_clock()
        original = worker.adapter.on_step

        def on_step(metrics) -> None:
            clock.on_step(metrics)
            original(metrics)

        worker.adapter.on_step = on_step
        loop = QEventLoop()
        worker.done.connect(loop.quit)
        gui_cpu, process_cpu, wall = time.thread_time(), time.process_time(), time.perf_counter()
        loop.exec()  # the real event loop, as in the app (no polling)
        return (clock.steps_per_second(), time.thread_time() - gui_cpu, time.process_time() - process_cpu,
                time.perf_counter() - wall)

    train(bench_config(10, threads))  # warm-up, like the headless run
    rate, gui_cpu, window_cpu, wall = train(bench_config(steps, threads))
    result = {"steps_per_s": rate, "gui_cpu_s": gui_cpu, "window_cpu_s": window_cpu, "wall_s": wall,
              "plot_redraws": window.plots.n_redraws}
    window.close()
    return result


def run_child(mode: str, steps: int, threads: int, home: Path) -> dict:
    """One measurement in a fresh process; ``window-thread`` is the window training in a thread of its
    own process (``META_STUDIO_TRAINING_PROCESS=0``) instead of a child process, ``window-no-plots``
    the window with its plot timer stopped."""
    env = dict(os.environ, META_STUDIO_HOME=str(home / f"{mode}-{time.time_ns()}"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if mode == "window-thread":
        mode, env["META_STUDIO_TRAINING_PROCESS"] = "window", "0"
    if mode == "window-no-plots":
        mode, env[NO_PLOTS_ENV] = "window", "1"
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(steps), "--threads",
                          str(threads)], env=env, capture_output=True, text=True, check=False)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"{mode} run failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = PyTorch's default)")
    parser.add_argument("--thread-too", action="store_true",
                        help="also measure the window training in a thread of its own process (the old way)")
    parser.add_argument("--without-plots-too", action="store_true",
                        help="also measure the window with its plot timer stopped (what the live plots cost)")
    parser.add_argument("--child", choices=("headless", "window"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        measure = measure_headless if args.child == "headless" else measure_window
        print(json.dumps(measure(args.steps, args.threads)), flush=True)
        return 0

    home = Path(tempfile.mkdtemp(prefix="meta-studio-bench-"))
    headless, window, window_thread, no_plots = [], [], [], []
    for repeat in range(args.repeats):
        headless.append(run_child("headless", args.steps, args.threads, home))
        window.append(run_child("window", args.steps, args.threads, home))
        w = window[-1]
        print(f"repeat {repeat + 1}: headless {headless[-1]['steps_per_s']:.2f} steps/s, window "
              f"{w['steps_per_s']:.2f} steps/s (CPU of the GUI thread {w['gui_cpu_s']:.1f} s, of the window's "
              f"process {w['window_cpu_s']:.1f} s, in {w['wall_s']:.1f} s; {w['plot_redraws']} plot refreshes)",
              flush=True)
        if args.thread_too:
            window_thread.append(run_child("window-thread", args.steps, args.threads, home))
            print(f"          window training in a thread {window_thread[-1]['steps_per_s']:.2f} steps/s", flush=True)
        if args.without_plots_too:
            no_plots.append(run_child("window-no-plots", args.steps, args.threads, home))
            print(f"          window without plot redraws {no_plots[-1]['steps_per_s']:.2f} steps/s (CPU of the GUI "
                  f"thread {no_plots[-1]['gui_cpu_s']:.1f} s)", flush=True)
    best_headless = max(r["steps_per_s"] for r in headless)
    best_window = max(r["steps_per_s"] for r in window)
    ratio = best_window / best_headless
    pair_ratios = sorted(w["steps_per_s"] / h["steps_per_s"] for h, w in zip(headless, window))
    median_pair = statistics.median(pair_ratios)
    print(f"\n{args.steps} steps of ProtoNet (5-way 1-shot, 15 queries, 4 episodes/step, conv4-32) "
          f"on the built-in glyphs, best of {args.repeats}")
    print(f"headless Trainer : {best_headless:8.2f} steps/s")
    print(f"studio window    : {best_window:8.2f} steps/s  (offscreen, live plots)")
    print(f"ratio window/headless = {ratio:.3f}  (the window costs {1 - ratio:+.1%}; target < 5%)")
    print(f"median of the {len(pair_ratios)} back-to-back pair ratios = {median_pair:.3f} "
          f"(range {pair_ratios[0]:.3f}-{pair_ratios[-1]:.3f}; less sensitive to one lucky run)")
    if window_thread:
        thread_ratios = sorted(t["steps_per_s"] / h["steps_per_s"] for h, t in zip(headless, window_thread))
        print(f"training in a thread of the window's process instead: best-of ratio "
              f"{max(r['steps_per_s'] for r in window_thread) / best_headless:.3f}, median pair ratio "
              f"{statistics.median(thread_ratios):.3f} (range {thread_ratios[0]:.3f}-{thread_ratios[-1]:.3f})")
    if no_plots:
        plain_ratios = sorted(n["steps_per_s"] / h["steps_per_s"] for h, n in zip(headless, no_plots))
        print(f"the window without plot redraws: median pair ratio {statistics.median(plain_ratios):.3f} "
              f"(range {plain_ratios[0]:.3f}-{plain_ratios[-1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
