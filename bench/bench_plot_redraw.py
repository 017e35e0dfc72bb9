"""Does a redraw of the live training plots cost the same at 1k and at 1M steps of history?

Builds the studio's TrainingPlots (offscreen, 1200x800, the window's four plots), feeds it
synthetic steps (a noisy falling loss, accuracy, a learning rate) and a validation every 500
steps, and at 1k, 10k, 100k and 1M points times one full plot update as in
``bench/soak_studio.py``: 10 new steps arrive, every plot is marked changed, ``refresh`` pushes the
data into the curves and the widget is rendered to a pixmap. Times are the GUI thread's CPU time
(``time.thread_time``: other processes on the machine do not count), the median of ``--repeats``
updates after ``--warmup`` updates (one plot widget per size, updated in turn, so that the
machine's load weighs on every size alike). Two views:

* live: the step axis fixed at 0..(the run's steps), as the window shows a run in progress (here
  near its end, so that the data covers the plot's width at every size),
* fitted: the step axis fitted to the data (a finished run loaded from the Runs table).

A curve draws at most two points per pixel its data covers: with a long run's axis (the soak's
0..10,000,000) the first hours cover a few pixels and cost less still.

It also prints the points handed to pyqtgraph per update (``TrainingPlots.points_handed``, when
the code has it) and each size's median relative to the 1k one. ("points" is the history before
timing; each timed update adds 10 steps.) Run it against
another checkout with ``PYTHONPATH=<checkout>`` to compare (the "before" numbers in
bench/README.md came from the commit before the buffered curves). Not part of the test suite:

    QT_QPA_PLATFORM=offscreen python bench/bench_plot_redraw.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

SIZES = (1_000, 10_000, 100_000, 1_000_000)
VAL_EVERY = 500


class Feed:
    """Synthetic steps, the same for every run of the bench (seeded)."""

    def __init__(self) -> None:
        self.done = 0
        self.rng = np.random.default_rng(0)

    def add(self, plots: Any, n: int) -> None:
        for start in range(self.done + 1, self.done + n + 1, 20_000):
            steps = np.arange(start, min(start + 20_000, self.done + n + 1))
            loss = 2.0 / np.sqrt(steps) + 0.2 * self.rng.random(len(steps))
            accuracy = np.clip(1.0 - loss / 2.5, 0, 1)
            plots.add_steps([SimpleNamespace(step=int(s), loss=float(lo), accuracy=float(a), lr=1e-3 * 0.5 ** (s // 200_000))
                             for s, lo, a in zip(steps, loss, accuracy)])
            for s in steps[steps % VAL_EVERY == 0]:
                plots.add_validation(int(s), float(0.5 + 0.4 * (1 - 1 / np.sqrt(s))), 0.02)
        self.done += n


def full_update_ms(app: Any, plots: Any, feed: Feed) -> tuple[float, float]:
    """One full update: 10 new steps, every plot redrawn, the widget rendered. (CPU ms, wall ms)."""
    feed.add(plots, 10)
    wall, cpu = time.perf_counter(), time.thread_time()
    plots._dirty.update(plots.PLOTS)
    plots.refresh(everything=True)
    plots.grab()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    app.processEvents()
    return 1000.0 * cpu, 1000.0 * wall


def measure(app: Any, live: bool, warmup: int, repeats: int) -> list[tuple[int, float, float, float, int]]:
    """One TrainingPlots per history size, updated in turn (round robin), so that the machine's
    load changes every size's numbers alike."""
    from studio.widgets.training_plots import TrainingPlots

    setups = []
    for size in SIZES:
        plots = TrainingPlots()
        plots.timer.stop()
        plots.resize(1200, 800)
        plots.show()
        app.processEvents()
        if live:
            plots.set_step_range(size + 10 * (warmup + repeats))
        feed = Feed()
        feed.add(plots, size)
        plots.refresh(everything=True)
        setups.append((plots, feed))
    times: list[list[tuple[float, float]]] = [[] for _ in SIZES]
    for round_ in range(warmup + repeats):
        for i, (plots, feed) in enumerate(setups):
            result = full_update_ms(app, plots, feed)
            if round_ >= warmup:
                times[i].append(result)
    rows = []
    for size, (plots, feed), size_times in zip(SIZES, setups, times):
        handed = plots.points_handed() if hasattr(plots, "points_handed") else -1
        rows.append((size, statistics.median(t[0] for t in size_times), min(t[0] for t in size_times),
                     statistics.median(t[1] for t in size_times), handed))
        plots.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=10, help="updates before timing, at each size (default 10)")
    parser.add_argument("--repeats", type=int, default=40, help="timed updates at each size (default 40)")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    print(f"{'view':>6} {'points':>9} {'cpu_ms_median':>14} {'cpu_ms_min':>11} {'wall_ms_median':>15} "
          f"{'points_handed':>14} {'median_vs_first':>16}")
    for live in (True, False):
        rows = measure(app, live, args.warmup, args.repeats)
        first = rows[0][1]
        for points, cpu, cpu_min, wall, handed in rows:
            print(f"{'live' if live else 'fitted':>6} {points:9d} {cpu:14.2f} {cpu_min:11.2f} {wall:15.2f} "
                  f"{handed:14d} {100 * (cpu / first - 1):+15.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
