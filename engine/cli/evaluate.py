"""``meta-engine evaluate``: accuracy with its 95% CI on held-out classes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_OK


def add_parser(sub: Any) -> None:
    """Register ``evaluate`` on the subcommand parsers ``sub``."""
    ev = sub.add_parser("evaluate", help="accuracy with 95%% CI on held-out classes")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--dataset", help="another data set folder (default: the checkpoint's)")
    ev.add_argument("--episodes", type=int, default=600)
    ev.add_argument("--n-way", type=int, default=5)
    ev.add_argument("--n-shot", type=int, default=1)
    ev.add_argument("--n-query", type=int, default=15)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--classes", choices=("auto", "test", "all", "novel"), default="auto",
                    help="test: the run's test classes; novel: classes of groups unseen in training; "
                         "all: every class; auto: test on the run's own data set, novel on another")
    ev.add_argument("--groups", help="comma-separated groups (alphabets) to evaluate on")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.inference import evaluate_checkpoint

    result, scope = evaluate_checkpoint(Path(args.checkpoint), dataset=args.dataset, episodes=args.episodes,
                                        n_way=args.n_way, n_shot=args.n_shot, n_query=args.n_query,
                                        seed=args.seed, device=args.device, classes=args.classes,
                                        groups=args.groups)
    if args.json:
        print(json.dumps({**result.to_json(), "classes": scope}, indent=2))
    else:
        print(f"{result.n_way}-way {result.n_shot}-shot accuracy on {scope}: {100 * result.accuracy:.2f}% "
              f"+- {100 * result.ci95:.2f}% (95% CI, {result.n_episodes} episodes)")
    return EXIT_OK
