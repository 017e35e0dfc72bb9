"""How long the window stands still while the Adapt view opens a model (a run's checkpoint).

Not a test. The real panel (offscreen Qt, the GUI thread single-threaded as in the studio), a fresh
ProtoNet checkpoint of a torchvision backbone at 224 px in a run folder. A 5 ms timer ticks in the GUI
thread; per trial this prints the longest gap between ticks (the freeze a user sees) and the time until
the model is in use, for

* ``set_run`` (what choosing a run does): the file is read, checked and the network built in the
  worker thread (``engine.sessions.adapt.open_model``), then made current in the GUI thread;
* ``load_checkpoint``: the same done here and now in the GUI thread (the Demo button's small model).

Random weights (reading and building do not depend on them).

    python bench/bench_adapt_open.py [--trials 3] [--only resnet50]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_adapt_latency import make_checkpoint  # noqa: E402

BACKBONES = ("resnet18", "resnet50")
TICK_MS = 5


def longest_stall(app: Any, ticks: list[float], action: Callable[[], Any],
                  ready: Callable[[], bool]) -> tuple[float, float]:
    """(longest gap between timer ticks, seconds until ``ready()``) around ``action()``."""
    ticks.clear()
    started = time.perf_counter()
    ticks.append(started)
    action()
    while not ready():
        app.processEvents()
        time.sleep(0.001)
    until_ready = time.perf_counter() - started
    for _ in range(20):  # the tick after the last stall
        app.processEvents()
        time.sleep(0.002)
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    return max(gaps, default=until_ready), until_ready


def measure(app: Any, backbone: str, trials: int, tmp: Path) -> dict[str, list[tuple[float, float]]]:
    from PySide6.QtCore import QTimer

    from studio.panels.adapt_panel import AdaptPanel

    run = tmp / backbone
    checkpoint = make_checkpoint(run / "checkpoints" / "last.pt", backbone, 224, 3)
    panel = AdaptPanel()
    panel.show()
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(TICK_MS)
    figures: dict[str, list[tuple[float, float]]] = {"set_run (worker)": [], "load_checkpoint (GUI thread)": []}
    for _ in range(trials):
        panel.session.model_path = None
        figures["set_run (worker)"].append(longest_stall(
            app, ticks, lambda: panel.set_run(run),
            lambda: panel.session.model_path is not None and not panel.is_busy()))
        panel.session.model_path = None
        figures["load_checkpoint (GUI thread)"].append(longest_stall(
            app, ticks, lambda: panel.load_checkpoint(checkpoint), lambda: True))
    timer.stop()
    panel.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--only", choices=BACKBONES)
    args = parser.parse_args(argv)
    from PySide6.QtWidgets import QApplication

    from studio.jobs.policy import keep_gui_thread_single_threaded

    app = QApplication.instance() or QApplication([])
    keep_gui_thread_single_threaded()
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in [args.only] if args.only else BACKBONES:
            for label, runs in measure(app, backbone, args.trials, Path(tmp)).items():
                stalls = ", ".join(f"{1000 * stall:.0f}" for stall, _ in runs)
                ready = ", ".join(f"{1000 * seconds:.0f}" for _, seconds in runs)
                print(f"{backbone} 224 px, {label}: longest freeze {stalls} ms; model in use after {ready} ms",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
