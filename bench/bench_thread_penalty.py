"""Why the studio keeps PyTorch single-threaded in its GUI thread (no Qt involved).

Trains the same short run (ProtoNet on the built-in glyphs, as bench_studio_overhead.py)
three ways, each in a fresh process:

* ``main``: in the main thread (as ``meta-engine train``);
* ``thread``: in a second thread, after the main thread ran one large matrix product
  (as a GUI thread that touched a big tensor once);
* ``thread-guarded``: the same, but the main thread was set to one PyTorch thread first and
  the worker restores the default count (``studio.jobs.policy.keep_gui_thread_single_threaded``
  and ``use_compute_threads``).

On this 2-core machine ``thread`` ran about 30% slower than ``main`` and ``thread-guarded``
as fast as ``main``. Not a test; run:

    python bench/bench_thread_penalty.py [--steps 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def measure(mode: str, steps: int) -> float:
    import torch

    from bench_studio_overhead import _step_clock, bench_config
    from engine.data.dataset import load_data
    from engine.training.trainer import Trainer

    default_threads = torch.get_num_threads()
    if mode == "thread-guarded":
        torch.set_num_threads(1)
    if mode != "main":
        (torch.randn(768, 768) @ torch.randn(768, 768)).sum()  # one large op in the main thread
    result: list[float] = []

    def train() -> None:
        if mode == "thread-guarded":
            torch.set_num_threads(default_threads)
        data = load_data(bench_config(steps, 0).data)
        Trainer(bench_config(10, 0), run_dir=None, data=data).run()  # warm-up
        clock = _step_clock()
        Trainer(bench_config(steps, 0), run_dir=None, callbacks=[clock], data=data).run()
        result.append(clock.steps_per_second())

    if mode == "main":
        train()
    else:
        worker = threading.Thread(target=train)
        worker.start()
        worker.join()
    return result[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=("main", "thread", "thread-guarded"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps({"steps_per_s": measure(args.child, args.steps)}), flush=True)
        return 0
    rates: dict[str, list[float]] = {"main": [], "thread": [], "thread-guarded": []}
    for _ in range(args.repeats):
        for mode in rates:
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(args.steps)],
                                 capture_output=True, text=True, check=True,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)))
            rates[mode].append(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])
            print(f"{mode:15s} {rates[mode][-1]:6.2f} steps/s", flush=True)
    best = {mode: max(values) for mode, values in rates.items()}
    print(f"\nbest of {args.repeats}: " + ", ".join(f"{m} {v:.2f}" for m, v in best.items()))
    print(f"thread / main = {best['thread'] / best['main']:.2f}, "
          f"thread-guarded / main = {best['thread-guarded'] / best['main']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
