"""How fast does a race train from the studio's Race view: in the training child process (now) or in
a thread of the window's process (before)?

One fixed race (ProtoNet + MAML, 5-way 1-shot, conv4-32, on the built-in glyphs, ``--steps`` steps
each, CPU) started from the Race view of a real window (offscreen Qt, the race's live curves and the
window's event loop running: the GUI thread's Python work that shares the interpreter lock with a
race trained in a thread). Each measurement runs in a fresh process. Timing: from the first step
batch the view receives to the batch that completes both algorithms' steps (data loading, model
building and the final test evaluation excluded); steps/s counts the steps of both algorithms.

``--gui-busy-ms N`` adds N ms of pure Python to the GUI thread 12 times a second (a timer; the load
:mod:`engine.training.process` measured its interpreter-lock cost with), on top of the window's own.

``--before DIR`` measures the same race with the code in ``DIR`` too (e.g. the studio before races
moved to the child process: ``git archive 24f1681 | tar -x -C /tmp/h2before``), alternating
before / after. Not a test; run:

    python bench/bench_race_process.py [--steps 150] [--repeats 3] [--gui-busy-ms 0] [--before /tmp/h2before]
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
CODE_ENV = "META_STUDIO_BENCH_CODE"  # in a child: the source tree to import the studio from
BUSY_ENV = "META_STUDIO_BENCH_GUI_BUSY_MS"  # in a child: extra Python work in the GUI thread, ms per tick
ALGORITHMS = ["protonet", "maml"]


def race_fields(steps: int) -> dict:
    """The Setup panel's shared settings of the bench race."""
    return {"task.n_way": 5, "task.n_shot": 1, "task.n_query": 15, "task.meta_batch_size": 4,
            "model.hidden_channels": 32, "train.steps": steps, "train.val_every": steps,
            "train.val_episodes": 10, "train.checkpoint_every": steps}


def _busy_python(ms: float) -> None:
    """``ms`` of pure Python (it holds the interpreter lock throughout)."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        sum(range(200))


def measure(steps: int) -> dict:
    """One race from the Race view of a fresh window; steps/s of both algorithms together."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer

    from studio.app import create_application
    from studio.main_window import MainWindow

    app = create_application([])
    app.setOrganizationName("MetaStudioBench")
    window = MainWindow(restore_settings=False, warm_training_process=True)  # as the app
    window.show_error = lambda title, message: print(f"{title}: {message}", file=sys.stderr)
    window.evaluation_panel.auto_evaluate.setChecked(False)
    window.resize(1600, 1000)
    window.show()
    while window.dataset_panel.is_loading():
        app.processEvents()
        time.sleep(0.01)
    for key, value in race_fields(steps).items():
        window.algorithm_panel.field(key).set_value(value)
    window.device_panel.set_device("cpu")
    deadline = time.monotonic() + 5  # the spare training process (if this studio keeps one) starts meanwhile
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    panel = window.views["Race"]
    window.center_tabs.setCurrentWidget(panel)
    panel.set_algorithms(ALGORITHMS)
    panel.test_episodes.setValue(20)
    arrivals: list[tuple[float, int]] = []  # (time, steps received so far)
    worker = panel.start()
    if worker is None:
        raise SystemExit(f"the race view refused to start: {window.config_errors()}")
    worker.steps.connect(lambda batch: arrivals.append((time.perf_counter(), len(batch))))
    busy_ms = float(os.environ.get(BUSY_ENV, "0"))
    busy = QTimer()
    busy.setInterval(1000 // 12)
    busy.timeout.connect(lambda: _busy_python(busy_ms))
    if busy_ms > 0:
        busy.start()
    loop = QEventLoop()
    panel.race_ended.connect(lambda status: loop.quit())
    gui_cpu = time.thread_time()
    loop.exec()
    gui_cpu = time.thread_time() - gui_cpu
    total = sum(n for _, n in arrivals)
    first_time, first_n = arrivals[0]
    last_time = next(t for t, _ in reversed(arrivals))
    in_child = getattr(worker, "process", None) is not None
    window.close()
    return {"steps_per_s": (total - first_n) / max(last_time - first_time, 1e-9), "steps": total,
            "gui_cpu_s": gui_cpu, "in_child_process": in_child,
            "train_seconds": {row.algorithm: row.train_seconds for row in panel.rows.values()}}


def run_child(code: Path, steps: int, home: Path, busy_ms: float) -> dict:
    env = dict(os.environ, META_STUDIO_HOME=str(home / f"race-{time.time_ns()}"), **{BUSY_ENV: str(busy_ms)},
               PYTHONPATH=str(code) + os.pathsep + os.environ.get("PYTHONPATH", ""), **{CODE_ENV: str(code)})
    out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps)], env=env,
                         capture_output=True, text=True, check=False, cwd=str(code))
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"race in {code} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gui-busy-ms", type=float, default=0.0,
                        help="extra pure-Python work in the GUI thread, ms 12 times a second")
    parser.add_argument("--before", type=Path, help="a source tree of the studio to compare with")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.path.insert(0, os.environ.get(CODE_ENV, str(ROOT)))
        print(json.dumps(measure(args.steps)), flush=True)
        return 0

    home = Path(tempfile.mkdtemp(prefix="meta-studio-bench-race-"))
    trees = {"after": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for repeat in range(args.repeats):
        for name, code in trees.items():
            result = run_child(code, args.steps, home, args.gui_busy_ms)
            results[name].append(result)
            where = "child process" if result["in_child_process"] else "thread of the window's process"
            seconds = ", ".join(f"{a} {s:.1f} s" for a, s in result["train_seconds"].items())
            print(f"repeat {repeat + 1} {name:6}: {result['steps_per_s']:6.2f} steps/s ({result['steps']} steps, "
                  f"in a {where}; GUI thread CPU {result['gui_cpu_s']:.1f} s; own compute {seconds})", flush=True)
    busy = f"; GUI thread busy {args.gui_busy_ms:g} ms 12 times a second" if args.gui_busy_ms else ""
    print(f"\nrace of {' + '.join(ALGORITHMS)}, {args.steps} steps each, 5-way 1-shot, conv4-32, built-in glyphs, "
          f"CPU{busy}")
    medians = {name: statistics.median(r["steps_per_s"] for r in rs) for name, rs in results.items()}
    for name, rs in results.items():
        rates = sorted(r["steps_per_s"] for r in rs)
        print(f"{name:6}: median {medians[name]:6.2f} steps/s (range {rates[0]:.2f}-{rates[-1]:.2f}, {len(rs)} runs)")
    if "before" in medians:
        pairs = sorted(a["steps_per_s"] / b["steps_per_s"] for a, b in zip(results["after"], results["before"]))
        print(f"after / before = {medians['after'] / medians['before']:.3f} (median of medians); pair ratios "
              + ", ".join(f"{p:.3f}" for p in pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
