"""``meta-engine evaluate``: accuracy with its 95% CI on held-out classes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_OK
from engine.config import EVALUATION_PROTOCOLS as PROTOCOLS  # not engine.evaluation_protocols: it imports torch


def add_parser(sub: Any) -> None:
    """Register ``evaluate`` on the subcommand parsers ``sub``."""
    ev = sub.add_parser("evaluate", help="accuracy with 95%% CI on held-out classes")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--dataset", help="another data set folder (default: the checkpoint's)")
    ev.add_argument("--protocol", choices=PROTOCOLS, default="episodes",
                    help="episodes: random N-way episodes over the chosen classes (default 600, 5-way 1-shot "
                         "15-query); within-alphabet: Lake et al. 2015's one-shot test, each episode within one "
                         "alphabet of a nested data set (default 1000 episodes, 20-way 1-shot 1-query); "
                         "reports the error rate")
    ev.add_argument("--episodes", type=int, help="number of seeded episodes (default: the protocol's)")
    ev.add_argument("--n-way", type=int, help="classes per episode (default: the protocol's)")
    ev.add_argument("--n-shot", type=int, help="support images per class (default: the protocol's)")
    ev.add_argument("--n-query", type=int, help="query images per class (default: the protocol's)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--classes", choices=("auto", "test", "all", "novel"), default="auto",
                    help="test: the run's test classes; novel: classes of groups unseen in training; "
                         "all: every class; auto: test on the run's own data set, novel on another")
    ev.add_argument("--groups", help="comma-separated groups (alphabets) to evaluate on")
    ev.add_argument("--exclude-groups", default="", help="comma-separated groups (alphabets) to leave out")
    ev.add_argument("--exclude-groups-of", action="append", default=[], metavar="FOLDER",
                    help="leave out the groups (alphabets) of this nested data set folder, e.g. the training "
                         "data's (repeatable)")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)


PROTOCOL_DEFAULTS = {"episodes": dict(episodes=600, n_way=5, n_shot=1, n_query=15),
                     "within-alphabet": dict(episodes=1000, n_way=20, n_shot=1, n_query=1)}
"""Episode count and shape of each protocol where the command line does not set them."""


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.evaluation_protocols import folder_groups
    from engine.inference import evaluate_checkpoint

    shape = {key: value if getattr(args, key) is None else getattr(args, key)
             for key, value in PROTOCOL_DEFAULTS[args.protocol].items()}
    excluded = {g.strip() for g in args.exclude_groups.split(",") if g.strip()}
    for folder in args.exclude_groups_of:
        excluded |= folder_groups(folder)
    result, scope = evaluate_checkpoint(Path(args.checkpoint), dataset=args.dataset, seed=args.seed,
                                        device=args.device, classes=args.classes, groups=args.groups,
                                        protocol=args.protocol, exclude_groups=sorted(excluded), **shape)
    if args.json:
        print(json.dumps({**result.to_json(), "classes": scope, "protocol": args.protocol,
                          "error_rate": 1 - result.accuracy}, indent=2))
    elif args.protocol == "within-alphabet":
        print(f"{result.n_way}-way {result.n_shot}-shot within-alphabet error rate on {scope}: "
              f"{100 * (1 - result.accuracy):.2f}% +- {100 * result.ci95:.2f}% (95% CI, {result.n_episodes} "
              f"episodes, seed {args.seed})")
    else:
        print(f"{result.n_way}-way {result.n_shot}-shot accuracy on {scope}: {100 * result.accuracy:.2f}% "
              f"+- {100 * result.ci95:.2f}% (95% CI, {result.n_episodes} episodes)")
    return EXIT_OK
