"""Soak test: the studio trains for a long time; do its memory and its plot-update time stay flat?

Opens the real main window (offscreen), loads the built-in glyphs, starts a run
through the window (the same path as pressing Train) and lets it train for
``--minutes`` (default 30). Every ``--every`` seconds (default 10) it samples:

* memory of the whole app: the proportional set size (PSS, /proc/PID/smaps_rollup) of the window
  process and of every process below it (the training child, multiprocessing's resource
  tracker, a spare training process when one is kept ready); PSS adds up across processes,
* the training step reached, the training child's step rate since the last sample, and the
  number of points the live plots hold,
* refresh_ms: mean duration of the plots' timer-driven refreshes since the last sample
  (pushing the new data into the curves), and
* redraw_ms / redraw_cpu_ms: a forced full update (refresh + render of the four plots to a
  pixmap), wall-clock and CPU time of the GUI thread, each the fastest of three tries.

At the end it prints the table and, after a warm-up (the first ``--warmup`` seconds),
compares the mean of the last quarter of the samples with the mean of the first quarter:
"flat" means not more than ``--tolerance`` (default 10%) higher. The app's total PSS and the CPU
time of a full plot update are judged (wall-clock times are shown, but they follow the machine's
load). It also prints where the memory goes (PSS by mapping: PyTorch and Qt libraries, the
shared-memory data set, heap) while training, and again once the run has ended and a spare
training process is kept ready.
The exit status is 0 when both stay flat, 1 otherwise. It is not part of the test suite:

    QT_QPA_PLATFORM=offscreen python bench/soak_studio.py --minutes 30
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_memory import format_breakdown, format_tree, tree_memory  # noqa: E402

# Settings and the form values of a soak run (the studio's defaults, trained "forever").
FORM_VALUES = {"train.steps": 10_000_000, "train.val_every": 500, "train.val_episodes": 50,
               "train.checkpoint_every": 500}


@dataclass
class Sample:
    elapsed_s: float
    step: int
    points: int
    steps_per_s: float
    window_pss_mb: float
    children_pss_mb: float
    n_children: int
    refresh_ms: float
    redraw_ms: float
    redraw_cpu_ms: float

    @property
    def pss_mb(self) -> float:
        """The whole app: the window process and every process below it."""
        return self.window_pss_mb + self.children_pss_mb


def app_memory() -> tuple[float, float, int]:
    """(window PSS, PSS of all its descendant processes, how many there are), MiB."""
    memories = tree_memory(os.getpid())
    return memories[0].pss_mb, sum(m.pss_mb for m in memories[1:]), len(memories) - 1


class RefreshTimer:
    """Wraps TrainingPlots.refresh (before any window exists) to time the redraws that did work."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    def install(self) -> None:
        from studio.widgets.training_plots import TrainingPlots

        original = TrainingPlots.refresh
        timer = self

        def timed_refresh(plots: Any, *args: Any, **kwargs: Any) -> bool:
            start = time.perf_counter()
            changed = original(plots, *args, **kwargs)
            if changed:
                timer.durations.append(time.perf_counter() - start)
            return changed

        TrainingPlots.refresh = timed_refresh

    def take_mean_ms(self) -> float:
        values, self.durations = self.durations, []
        return 1000.0 * statistics.fmean(values) if values else float("nan")


def forced_redraw_ms(window: Any, repeats: int = 3) -> tuple[float, float]:
    """A full plot update as the user sees it (push all data, render the four plots to a pixmap).

    Returns (wall-clock ms, CPU ms of this GUI thread), each the fastest of ``repeats`` tries.
    The thread's CPU time does not count the time other processes (or the training thread)
    hold the CPU, so it shows the intrinsic cost even on a busy machine.
    """
    plots = window.plots
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.thread_time()
        if isinstance(plots._dirty, set):  # per-plot dirty flags: mark every plot
            plots._dirty.update(plots.PLOTS)
            plots.refresh(everything=True)
        else:
            plots._dirty = True
            plots.refresh()
        plots.grab()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.thread_time() - cpu)
    return 1000.0 * best_wall, 1000.0 * best_cpu


def isolate_settings(app: Any, folder: Path) -> None:
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    app.setOrganizationName("MetaStudioSoak")
    app.setApplicationName("MetaStudioSoak")


def wait_until(app: Any, condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def build_window(runs_root: Path, threads: int, hidden_channels: int | None) -> Any:
    from engine.training.run_store import RunStore
    from studio.main_window import MainWindow

    # as the app does (studio.app.main): a training process is kept ready between runs
    window = MainWindow(store=RunStore(runs_root), restore_settings=False, warm_training_process=True)
    window.errors_for_soak = []
    window.show_error = lambda title, message: window.errors_for_soak.append(f"{title}: {message}")
    window.show()
    values = dict(FORM_VALUES, **{"train.num_threads": threads})
    if hidden_channels:
        values["model.hidden_channels"] = hidden_channels
    for key, value in values.items():
        window.algorithm_panel.field(key).set_value(value)
    return window


def sample_loop(app: Any, window: Any, timer: RefreshTimer, minutes: float, every_s: float) -> list[Sample]:
    samples: list[Sample] = []
    start = time.monotonic()
    next_sample = start + every_s
    end = start + 60.0 * minutes
    timer.take_mean_ms()
    previous_step, previous_time = window.last_step, start
    while time.monotonic() < end:
        app.processEvents()
        if window.worker is None:
            raise SystemExit(f"training ended early: {window.errors_for_soak or window.training_panel.state}")
        now = time.monotonic()
        if now >= next_sample:
            rate = (window.last_step - previous_step) / max(now - previous_time, 1e-9)
            previous_step, previous_time = window.last_step, now
            samples.append(Sample(now - start, window.last_step, window.plots.n_points, rate, *app_memory(),
                                  timer.take_mean_ms(), *forced_redraw_ms(window)))
            print(format_row(samples[-1]), flush=True)
            next_sample += every_s
        time.sleep(0.005)
    return samples


def format_row(s: Sample) -> str:
    return (f"{s.elapsed_s:8.0f} {s.step:9d} {s.points:9d} {s.steps_per_s:8.1f} {s.window_pss_mb:10.1f} "
            f"{s.children_pss_mb:9.1f} ({s.n_children}) {s.pss_mb:9.1f} {s.refresh_ms:11.2f} {s.redraw_ms:10.2f} "
            f"{s.redraw_cpu_ms:14.2f}")


HEADER = (f"{'time_s':>8} {'step':>9} {'points':>9} {'steps/s':>8} {'window_pss':>10} {'children_pss':>13} "
          f"{'pss_mb':>9} {'refresh_ms':>11} {'redraw_ms':>10} {'redraw_cpu_ms':>14}")


def flatness(values: list[float]) -> tuple[float, float, float]:
    """(first-quarter mean, last-quarter mean, relative change) of the samples."""
    values = [v for v in values if v == v]
    quarter = max(1, len(values) // 4)
    first, last = statistics.fmean(values[:quarter]), statistics.fmean(values[-quarter:])
    return first, last, (last - first) / first if first else float("inf")


def verdict(samples: list[Sample], warmup_s: float, tolerance: float) -> bool:
    steady = [s for s in samples if s.elapsed_s >= warmup_s]
    if len(steady) < 4:
        print(f"\nnot enough samples after the {warmup_s:.0f} s warm-up to judge (need 4, got {len(steady)})")
        return False
    ok = True
    print(f"\nafter a {warmup_s:.0f} s warm-up, {len(steady)} samples; last-quarter vs first-quarter mean:")
    for name in ("pss_mb", "window_pss_mb", "children_pss_mb", "redraw_cpu_ms", "redraw_ms", "refresh_ms",
                 "steps_per_s"):
        first, last, change = flatness([getattr(s, name) for s in steady])
        flat = change <= tolerance  # going down is fine
        judged = name in ("pss_mb", "redraw_cpu_ms")  # wall-clock times depend on the machine's load: info
        ok &= flat or not judged
        print(f"  {name:13s} {first:9.2f} -> {last:9.2f}  ({100 * change:+.1f}%)  "
              f"{'flat' if abs(change) <= tolerance else 'GROWS' if change > 0 else 'falls'}"
              f"{'' if judged else ' (info)'}")
    rate = (steady[-1].step - steady[0].step) / max(steady[-1].elapsed_s - steady[0].elapsed_s, 1e-9)
    print(f"  training speed {rate:.1f} steps/s; the plots hold {steady[-1].points} points "
          f"(one per step: history is downsampled for display, never dropped)")
    return ok


def plot_scaling(sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)) -> None:
    """How a full plot update grows with the history (synthetic steps, no training): the long-run question
    answered in seconds. Prints the update's CPU time and the plots' memory per history size."""
    from types import SimpleNamespace

    from studio.widgets.training_plots import TrainingPlots

    plots = TrainingPlots()
    plots.resize(1200, 800)
    plots.show()
    window = SimpleNamespace(plots=plots)
    print(f"{'points':>9} {'redraw_ms':>10} {'redraw_cpu_ms':>14} {'history_mb':>11}")
    done = 0
    rng = __import__("random").Random(0)
    for size in sizes:
        chunk = [SimpleNamespace(step=step, loss=1.0 / step + 0.1 * rng.random(), accuracy=rng.random(), lr=1e-3)
                 for step in range(done + 1, size + 1)]
        plots.add_steps(chunk)
        done = size
        wall, cpu = forced_redraw_ms(window)
        arrays = [plots.loss.x, plots.loss.raw, plots.loss.smooth, plots.accuracy.x, plots.accuracy.raw,
                  plots.accuracy.smooth, plots.lr_x, plots.lr_y]
        history_mb = sum(a.capacity for a in arrays) * 8 / 2**20
        print(f"{size:9d} {wall:10.2f} {cpu:14.2f} {history_mb:11.1f}", flush=True)
    plots.close()


def print_memory(when: str) -> None:
    """Where the app's memory goes now: the process tree and PSS by mapping."""
    memories = tree_memory(os.getpid())
    print(f"\nmemory {when}:\n{format_tree(memories)}\n\n{format_breakdown(memories)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to train (default 30)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds ignored at the start (default: 10%% of the run, at least one sample)")
    parser.add_argument("--tolerance", type=float, default=0.10, help="allowed relative change (default 0.10)")
    parser.add_argument("--threads", type=int, default=1, help="train.num_threads (default 1)")
    parser.add_argument("--hidden-channels", type=int, default=None,
                        help="model.hidden_channels (smaller = more steps per second = more plot points)")
    parser.add_argument("--plot-scaling", action="store_true",
                        help="instead of training: time a full plot update with 1k..1M synthetic steps")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    work = Path(tempfile.mkdtemp(prefix="meta-studio-soak-"))
    isolate_settings(app, work / "settings")
    if args.plot_scaling:
        plot_scaling()
        shutil.rmtree(work, ignore_errors=True)
        return 0
    timer = RefreshTimer()
    timer.install()
    window = build_window(work / "runs", args.threads, args.hidden_channels)
    wait_until(app, lambda: window.dataset_panel.index is not None and not window.dataset_panel.is_loading(),
               600, "the built-in data set")
    if window.start_training() is None:
        raise SystemExit(f"cannot start training: {window.config_errors()}")
    wait_until(app, lambda: window.last_step > 0, 600, "the first training step")
    print(f"soak: training {args.minutes:g} min in {window.current_run_dir}; a sample every {args.every:g} s")
    print(HEADER, flush=True)
    samples = sample_loop(app, window, timer, args.minutes, args.every)
    print_memory("while training")
    window.stop_training()
    wait_until(app, lambda: window.worker is None, 300, "the run to stop")
    spare = window.spare_process
    wait_until(app, lambda: spare.process is not None and spare.process.is_alive(), 120,
               "the spare training process kept ready after the run")
    settle_until = time.monotonic() + 10.0  # the spare imports torch after it starts
    wait_until(app, lambda: time.monotonic() > settle_until, 60, "the spare to settle")
    print_memory("idle after the run, a spare training process kept ready")
    warmup = args.warmup if args.warmup is not None else max(args.every, 6.0 * args.minutes)
    ok = verdict(samples, warmup, args.tolerance)
    window.close()
    shutil.rmtree(work, ignore_errors=True)
    print("\nverdict:", "memory and plot-update time stay flat" if ok else "something grows")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
