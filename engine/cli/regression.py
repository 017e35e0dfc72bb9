"""``meta-engine regression``: sinusoid regression (Finn et al. 2017), MAML against a pre-trained baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, Any

from engine.cli.common import EXIT_OK
from engine.cli.progress import move_to, progress_bar


def add_parser(sub: Any) -> None:
    """Register ``regression`` on the subcommand parsers ``sub``."""
    reg = sub.add_parser("regression", help="sinusoid regression (Finn et al. 2017): train MAML and a pre-trained "
                                            "baseline on the 2x40 MLP, print the K-shot MSE after 1 and 10 "
                                            "fine-tuning steps next to the paper's")
    reg.add_argument("--k", type=int, default=5, help="support points per task, training and test (default 5)")
    reg.add_argument("--steps", type=int, default=70000, help="training steps of each model (default 70000, "
                                                              "the paper's)")
    reg.add_argument("--eval-tasks", type=int, default=600, help="fresh test sines (default 600)")
    reg.add_argument("--seed", type=int, default=0, help="seed of the initialisation and training sines")
    reg.add_argument("--test-lr", type=float, help="SGD step size of MAML's inner loop and of test-time "
                                                    "fine-tuning (default 0.01, the paper's)")
    reg.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: fastest for this network)")
    reg.add_argument("--out", help="folder to save sinusoid_maml.pt and sinusoid_pretrained.pt in")
    reg.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    reg.add_argument("--json", action="store_true")
    reg.set_defaults(func=cmd_regression)


def cmd_regression(args: argparse.Namespace) -> int:
    """Train MAML and the pre-trained baseline on sinusoids, print their K-shot MSE next to the paper's."""
    import torch

    from engine.regression import (PAPER_MSE, RegressionConfig, evaluate_regression, format_table, save_models,
                                   train_both, validate_regression_config)

    config = validate_regression_config(RegressionConfig(
        k_shot=args.k, steps=args.steps, eval_tasks=args.eval_tasks, seed=args.seed,
        inner_lr=args.test_lr if args.test_lr is not None else RegressionConfig.inner_lr))
    if args.threads:
        torch.set_num_threads(args.threads)
    reporter = _RegressionProgress(quiet=args.quiet)
    try:
        models = train_both(config, progress=reporter)
    finally:
        reporter.close()
    evaluation = evaluate_regression(models, n_tasks=config.eval_tasks, k=config.k_shot, steps=(1, config.test_steps),
                                     seed=config.eval_seed, lr=config.inner_lr)
    paths = save_models(Path(args.out), models) if args.out else {}
    if args.json:
        print(json.dumps({
            "config": config.to_dict(), "evaluation": evaluation.to_json(),
            "paper": {name: {str(s): v for s, v in by_step.items()} for name, by_step in PAPER_MSE.items()},
            "models": {name: {"steps_done": m.steps_done, "final_loss": m.final_loss,
                              "train_seconds": round(m.train_seconds, 2), "file": str(paths[name]) if paths else None}
                       for name, m in models.items()},
        }, indent=2))
    else:
        print(format_table(evaluation, models))
        for name, path in paths.items():
            print(f"saved {name}: {path}")
    return EXIT_OK


class _RegressionProgress:
    """``progress(done, total)`` for cmd_regression: a tqdm bar on stderr per model (engine.cli.progress)."""

    def __init__(self, quiet: bool, stream: IO[str] | None = None, every_s: float | None = None) -> None:
        self.quiet, self.stream, self.every_s = quiet, stream or sys.stderr, every_s
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        half = total // 2
        model, position = ("MAML", done) if done <= half else ("pre-trained", done - half)
        if self.bar is None or self.bar.desc != model:
            self.close()
            self.bar = progress_bar(half, model, stream=self.stream, every_s=self.every_s)
        move_to(self.bar, position)
        if done == total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
