"""What a sweep costs on top of training: a trial's steps/s against a plain run's, and Optuna per validation.

1. Steps/s: the same config trained as ``meta-engine train`` trains it (a ``Trainer`` on a run folder)
   and as one trial of a sweep (``engine.sweep.run_sweep``: the run plus the Optuna study in SQLite, a
   report and a pruning question at every validation). Interleaved rounds (train, trial, train, trial,
   ...), the same decoded data set for both; a round's rate is its steps over the seconds from the run's
   start to its end (validations and checkpoints included, set-up not). Reported: the median of each and
   their ratio (issue 20's target: a trial >= 0.97x).
2. Optuna's overhead per validation: ``trial.report`` + ``trial.should_prune`` on the same SQLite study
   (with the trials of part 1 in it, so the median pruner has curves to compare), timed N times.

    python bench/bench_sweep_overhead.py [--steps 100] [--rounds 3] [--reports 200]

Reports; never gates (exits 0).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from engine.config import RunConfig  # noqa: E402
from engine.data.dataset import load_data  # noqa: E402
from engine.sweep import SweepSettings, build_space, dimension_from_text, open_study, run_sweep  # noqa: E402
from engine.training.callbacks import Callback  # noqa: E402
from engine.training.run_store import RunStore  # noqa: E402
from engine.training.trainer import Trainer  # noqa: E402


class RunClock(Callback):
    """Seconds from a run's start (after its set-up) to its end, and its steps."""

    def __init__(self) -> None:
        self.started = self.ended = 0.0
        self.steps = 0

    def on_run_start(self, info) -> None:
        self.started = time.perf_counter()

    def on_finished(self, summary) -> None:
        self.ended = time.perf_counter()
        self.steps = summary.steps_done

    @property
    def rate(self) -> float:
        return self.steps / max(self.ended - self.started, 1e-9)


def bench_config(steps: int) -> RunConfig:
    config = RunConfig()  # ProtoNet, Conv-4, 28-px glyphs, 5-way 1-shot 15 queries, 4 episodes per step
    config.train.steps, config.train.val_every, config.train.val_episodes = steps, max(steps // 5, 1), 20
    config.train.num_threads = 1
    return config


def train_round(config: RunConfig, runs: Path, data) -> float:
    clock = RunClock()
    Trainer(config, run_dir=RunStore(runs).new_run_dir("train"), callbacks=[clock], data=data).run()
    return clock.rate


def trial_round(settings: SweepSettings, data, study) -> float:
    clock = RunClock()
    settings.trials = len(study.get_trials(deepcopy=False)) + 1
    # the searched value is the config's own (a one-point range would be refused): lr in [1e-3, 1e-3 + tiny]
    run_sweep(settings, callbacks=[clock], data_loader=lambda _config: data, study=study)
    return clock.rate


def report_overhead(study, n: int) -> list[float]:
    trial = study.ask()
    seconds = []
    for step in range(1, n + 1):
        started = time.perf_counter()
        trial.report(0.5, step)
        trial.should_prune()
        seconds.append(time.perf_counter() - started)
    study.tell(trial, 0.5)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reports", type=int, default=200)
    args = parser.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    config = bench_config(args.steps)
    data = load_data(config.data, progress=None)
    space = build_space([dimension_from_text("algorithm.lr=0.001:0.0010001", "protonet")])
    settings = SweepSettings(config, space, 1, "bench", runs_root=runs, pruner="median", startup_trials=1)
    study = open_study(settings)
    train_rates, trial_rates = [], []
    train_round(config, runs, data)  # warm-up (allocator, kernels)
    for _ in range(args.rounds):
        train_rates.append(train_round(config, runs, data))
        trial_rates.append(trial_round(settings, data, study))
        print(f"round: train {train_rates[-1]:.2f} steps/s, trial {trial_rates[-1]:.2f} steps/s", flush=True)
    train, trial = statistics.median(train_rates), statistics.median(trial_rates)
    print(f"config: ProtoNet Conv-4 28px glyphs 5-way 1-shot 15q, 4 episodes/step, {args.steps} steps, "
          f"validation every {config.train.val_every} steps (20 episodes), 1 thread, SQLite storage")
    print(f"meta-engine train: {train:.2f} steps/s   sweep trial: {trial:.2f} steps/s   ratio {trial / train:.3f}x "
          f"(target >= 0.97x) [median of {args.rounds} interleaved rounds]")
    seconds = report_overhead(study, args.reports)
    ms = sorted(1000 * s for s in seconds)
    print(f"Optuna per validation (report + should_prune, SQLite, median pruner, {len(study.trials)} trials in the "
          f"study): median {statistics.median(ms):.2f} ms, p95 {ms[int(0.95 * len(ms)) - 1]:.2f} ms, max {ms[-1]:.2f} ms "
          f"(target < 5 ms) over {len(ms)} reports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
