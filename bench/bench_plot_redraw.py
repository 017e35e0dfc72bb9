"""Does a redraw of the live training plots cost the same at 1k and at 1M steps of history?

Builds the studio's TrainingPlots (offscreen, 1200x800, the window's four plots), feeds it
synthetic steps (a noisy falling loss, accuracy, a learning rate, 200 validations) that draw the
same picture at every size, and at 1k, 10k, 100k and 1M points times one full plot update as in
``bench/soak_studio.py``: a new step arrives, every plot is marked changed, ``refresh`` pushes the
data into the curves and the widget is rendered to a pixmap. Times are the GUI thread's CPU time
(``time.thread_time``: other processes on the machine do not count), the 10th percentile and the
median of ``--repeats`` updates after ``--warmup`` updates (one plot widget per size, updated in turn, so that the
machine's load weighs on every size alike). Two views:

* live: the step axis fixed at 0..(the run's steps), as the window shows a run in progress (here
  near its end: the data covers 90-100% of the plot's width at every size),
* fitted: the step axis fitted to the data (a finished run loaded from the Runs table).

A curve draws at most two points per pixel its data covers: with a long run's axis (the soak's
0..10,000,000) the first hours cover a few pixels and cost less still.

It also prints the ``refresh`` alone (no rendering; 10th percentile), the points handed to
pyqtgraph per update (``TrainingPlots.points_handed``, when the code has it) and each size's 10th
percentile and median update relative to the 1k one ("points" is the history before
timing; each update adds one, so the history ends at "points"). Run it against another checkout with
``PYTHONPATH=<checkout>`` to compare (bench/README.md's "before" numbers: the commit before the
buffered curves). Not part of the test suite:

    QT_QPA_PLATFORM=offscreen python bench/bench_plot_redraw.py
"""

from __future__ import annotations

import argparse
import gc
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
VALIDATIONS = 200


class Feed:
    """Synthetic steps of a run of ``total`` steps, the same picture at every size: a noisy loss
    falling as a function of step / total, accuracy from it, a learning rate halved at half the
    run, and ``VALIDATIONS`` validations spread over the run. (So the plots show the same ranges,
    ticks and shapes whatever the history: the table compares history lengths, nothing else.)"""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.rng = np.random.default_rng(0)

    def add(self, plots: Any, n: int) -> None:
        val_every = max(1, self.total // VALIDATIONS)
        for start in range(self.done + 1, self.done + n + 1, 20_000):
            steps = np.arange(start, min(start + 20_000, self.done + n + 1))
            t = steps / self.total
            loss = 0.3 + 2.0 * np.exp(-5.0 * t) + 0.2 * self.rng.random(len(steps))
            accuracy = np.clip(1.0 - loss / 2.5, 0, 1)
            lr = np.where(t < 0.5, 1e-3, 5e-4)
            plots.add_steps([SimpleNamespace(step=int(s), loss=float(lo), accuracy=float(a), lr=float(r))
                             for s, lo, a, r in zip(steps, loss, accuracy, lr)])
            for s in steps[steps % val_every == 0]:
                plots.add_validation(int(s), float(0.9 - 0.4 * np.exp(-5.0 * s / self.total)), 0.02)
        self.done += n


def full_update_ms(app: Any, plots: Any, feed: Feed) -> tuple[float, float, float]:
    """One full update: a new step, every plot redrawn, the widget rendered.
    (CPU ms, wall ms, CPU ms of the refresh alone: the data pushed into the curves)."""
    feed.add(plots, 1)
    wall, cpu = time.perf_counter(), time.thread_time()
    plots._dirty.update(plots.PLOTS)
    plots.refresh(everything=True)
    refresh = time.thread_time() - cpu
    plots.grab()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    app.processEvents()
    return 1000.0 * cpu, 1000.0 * wall, 1000.0 * refresh


def _low(values: list[float]) -> float:
    """The 10th percentile: the cost with little of the machine's load in it, steadier than the minimum."""
    return float(np.percentile(values, 10))


def measure(app: Any, live: bool, warmup: int, repeats: int) -> list[tuple[int, float, float, float, float, int]]:
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
            plots.set_step_range(size)
        feed = Feed(size)
        feed.add(plots, size - warmup - repeats)
        plots.refresh(everything=True)
        setups.append((plots, feed))
    gc.collect()
    gc.freeze()  # the set-up's objects: not walked by every collection while timing
    times: list[list[tuple[float, float, float]]] = [[] for _ in SIZES]
    for round_ in range(warmup + repeats):
        for i, (plots, feed) in enumerate(setups):
            result = full_update_ms(app, plots, feed)
            if round_ >= warmup:
                times[i].append(result)
    rows = []
    for size, (plots, feed), size_times in zip(SIZES, setups, times):
        handed = plots.points_handed() if hasattr(plots, "points_handed") else -1
        rows.append((size, statistics.median(t[0] for t in size_times), _low([t[0] for t in size_times]),
                     statistics.median(t[1] for t in size_times), _low([t[2] for t in size_times]), handed))
        plots.close()
    gc.unfreeze()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=10, help="updates before timing, at each size (default 10)")
    parser.add_argument("--repeats", type=int, default=40, help="timed updates at each size (default 40)")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    print(f"{'view':>6} {'points':>9} {'cpu_ms_median':>14} {'cpu_ms_p10':>11} {'wall_ms_median':>15} "
          f"{'refresh_cpu_ms_p10':>19} {'points_handed':>14} {'p10_vs_first':>13} {'median_vs_first':>16}")
    for live in (True, False):
        rows = measure(app, live, args.warmup, args.repeats)
        first_median, first_min = rows[0][1], rows[0][2]
        for points, cpu, cpu_min, wall, refresh_min, handed in rows:
            print(f"{'live' if live else 'fitted':>6} {points:9d} {cpu:14.2f} {cpu_min:11.2f} {wall:15.2f} "
                  f"{refresh_min:19.2f} {handed:14d} {100 * (cpu_min / first_min - 1):+12.1f}% "
                  f"{100 * (cpu / first_median - 1):+15.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
