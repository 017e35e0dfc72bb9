"""Time to accuracy: train the Omniglot recipe and stop when it first reaches a target on novel alphabets.

Trains on ``images_background_small1`` (``../shared/datasets/omniglot``, unzipped into a temporary
folder unless ``--data`` names a folder holding both sets) and, every ``--check-every`` steps, evaluates
the checkpoint just written on the 106 characters of small2's alphabets that small1 lacks (600 seeded
5-way 1-shot episodes, ``meta-engine evaluate``'s protocol). The run stops at the first check at or
above ``--target``; the bench prints the training minutes (wall clock, the bench's own checks left
out), the step and the figure with its 95% CI. Every lever of the issue is a flag, so each measurement
is one command (see bench/README.md):

    python bench/bench_time_to_accuracy.py                                  # the README recipe
    python bench/bench_time_to_accuracy.py --lr-schedule cosine --planned-steps 4000 --lr 2e-3

``--dataset glyphs`` measures the studio's default run instead (ProtoNet on the built-in glyphs, every
field at its default, the run's own held-out test classes, target 90%): the same levers apply, and a
lever not given keeps the studio's default.

    python bench/bench_time_to_accuracy.py --dataset glyphs --check-every 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.config import ProtoNetConfig, RunConfig  # noqa: E402
from engine.inference import evaluate_checkpoint  # noqa: E402
from engine.training.callbacks import Callback, CheckpointInfo  # noqa: E402
from engine.training.control import RunControl  # noqa: E402
from engine.training.trainer import Trainer  # noqa: E402

OMNIGLOT = REPO.parent / "shared" / "datasets" / "omniglot"
SETS = ("images_background_small1", "images_background_small2")


def omniglot_folders(data: Path | None, scratch: Path) -> tuple[Path, Path]:
    """(small1, small2) folders: under ``data`` if given, else unzipped from ../shared into ``scratch``."""
    if data is not None:
        return data / SETS[0], data / SETS[1]
    for name in SETS:
        archive = OMNIGLOT / f"{name}.zip"
        if not archive.is_file():
            sys.exit(f"{archive}: not found (the Omniglot zips of ../shared/datasets/omniglot); pass --data DIR")
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(scratch)
    return scratch / SETS[0], scratch / SETS[1]


OMNIGLOT_RECIPE = {"n_way": 20, "n_query": 10, "lr": 1e-3, "lr_schedule": "step", "lr_decay_every": 2000,
                   "planned_steps": 8000, "meta_batch_size": 1}
"""The README's Omniglot recipe, where a lever is not given."""


def recipe(small1: Path | None, args: argparse.Namespace) -> RunConfig:
    """The README's Omniglot recipe (Conv-4 ProtoNet, rotations and affine augmentation; ``small1``), or the
    studio's default run (``small1`` None: the built-in glyphs), with the levers given applied."""
    config = RunConfig(algorithm=ProtoNetConfig(), name="time to accuracy")
    levers = {k: v for k, v in vars(args).items() if v is not None}
    if small1 is not None:
        levers = {**OMNIGLOT_RECIPE, **levers}
        config.data.root = str(small1)
        config.data.augment_rotations = config.data.augment_affine = True
        config.data.train_ratio, config.data.val_ratio = 0.95, 0.04
        config.task.n_shot, config.task.val_n_way = 1, 5
    for field, (section, name) in LEVER_FIELDS.items():
        if field in levers:
            setattr(getattr(config, section), name, levers[field])
    config.train.val_every = 0  # the bench's checks replace validation
    config.train.checkpoint_every = args.check_every
    config.train.seed = args.seed
    return config


LEVER_FIELDS = {"n_way": ("task", "n_way"), "n_query": ("task", "n_query"),
                "meta_batch_size": ("task", "meta_batch_size"), "lr": ("algorithm", "lr"),
                "lr_schedule": ("train", "lr_schedule"),
                "lr_decay_every": ("train", "lr_decay_every"), "planned_steps": ("train", "steps"),
                "precision": ("train", "precision"), "threads": ("train", "num_threads")}
"""Lever flag -> the config field it sets."""


class StopAtTarget(Callback):
    """Evaluates each checkpoint on the novel alphabets; stops the run at the first one at the target."""

    def __init__(self, small2: Path | None, target: float, control: RunControl, episodes: int) -> None:
        self.small2, self.target, self.control, self.episodes = small2, target, control, episodes
        self.check_seconds = 0.0
        self.checks: list[dict[str, float]] = []
        self.started = time.perf_counter()
        self.runtime = ""  # the trainer's line saying which precision the run uses and why

    def on_log(self, message: str, level: str = "info") -> None:
        if not self.runtime and ("auto: " in message or "set in the config" in message):
            self.runtime = message

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        if self.checks and self.checks[-1]["step"] == info.step:  # the last step writes best.pt and last.pt
            return
        before = time.perf_counter()
        minutes = (before - self.started - self.check_seconds) / 60  # data loading counts, the checks do not
        dataset = str(self.small2) if self.small2 is not None else None  # None: the run's own test classes
        result, _ = evaluate_checkpoint(info.path, dataset=dataset, episodes=self.episodes, n_way=5,
                                        n_shot=1, n_query=15, seed=0)
        self.check_seconds += time.perf_counter() - before
        self.checks.append({"step": info.step, "accuracy": result.accuracy, "ci95": result.ci95,
                            "train_minutes": minutes})
        print(f"step {info.step:5d}: {100 * result.accuracy:.2f}% +- {100 * result.ci95:.2f}% "
              f"after {minutes:.2f} min of training", flush=True)
        if result.accuracy >= self.target:
            self.control.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("omniglot", "glyphs"), default="omniglot",
                        help="the Omniglot recipe (default) or the studio's default run on the built-in glyphs")
    parser.add_argument("--data", type=Path, help="a folder holding both unzipped sets (default: unzip ../shared)")
    parser.add_argument("--target", type=float, help="5-way 1-shot accuracy to reach (0.95 Omniglot, 0.90 glyphs)")
    parser.add_argument("--planned-steps", type=int, help="steps the schedule spans; the cap (8000; glyphs 2000)")
    parser.add_argument("--check-every", type=int, default=500, help="steps between checks (500)")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes per check (600)")
    parser.add_argument("--n-way", type=int, help="training way count (20, the recipe; glyphs 5)")
    parser.add_argument("--n-query", type=int, help="training queries per class (10; glyphs 15)")
    parser.add_argument("--meta-batch-size", type=int, help="episodes per step (1; glyphs 4)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (1e-3)")
    parser.add_argument("--lr-schedule", help="constant (glyphs), step (the recipe) or cosine")
    parser.add_argument("--lr-decay-every", type=int, help="step schedule's period (2000)")
    parser.add_argument("--precision", help="auto (default), fp32 or bf16")
    parser.add_argument("--threads", type=int, help="CPU threads (default 0: PyTorch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    glyphs = args.dataset == "glyphs"
    args.target = args.target if args.target is not None else (0.90 if glyphs else 0.95)
    with tempfile.TemporaryDirectory(prefix="meta-studio-tta-") as scratch:
        small1, small2 = (None, None) if glyphs else omniglot_folders(args.data, Path(scratch))
        config = recipe(small1, args)
        control = RunControl()
        checker = StopAtTarget(small2, args.target, control, args.episodes)
        started = time.perf_counter()
        summary = Trainer(config, run_dir=Path(scratch) / "run", callbacks=[checker], control=control).run()
        total = (time.perf_counter() - started) / 60
    reached = next((c for c in checker.checks if c["accuracy"] >= args.target), None)
    last = checker.checks[-1] if checker.checks else None
    verdict = (f"reached {100 * args.target:.0f}% at step {reached['step']} after {reached['train_minutes']:.2f} "
               f"min of training ({100 * reached['accuracy']:.2f}% +- {100 * reached['ci95']:.2f}%)"
               if reached else f"did not reach {100 * args.target:.0f}% in {config.train.steps} steps")
    print(f"{verdict}; {total:.2f} min in all with {checker.check_seconds / 60:.2f} min of checks; "
          f"run {summary.status}; levers: {vars(args)}\nthe run's log: {checker.runtime}")
    if args.json:
        args.json.write_text(json.dumps({"levers": {k: str(v) for k, v in vars(args).items()}, "checks": checker.checks,
                                         "reached": reached, "last": last, "total_minutes": total}, indent=1))
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())
