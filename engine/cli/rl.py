"""``meta-engine rl``: meta-reinforcement learning on 2-D navigation (Finn et al. 2017, section 5.3).

Trains a policy (MAML, Reptile or the pre-trained baseline), then prints its average return on
held-out goals after 0..3 policy-gradient adaptation steps with 95% CIs. ``--policy FILE`` (repeatable)
evaluates saved policies instead of training, all on the same goals; ``--goal X,Y`` adapts to one
goal only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_OK
from engine.errors import ConfigError


def add_parser(sub: Any) -> None:
    """Register ``rl`` on the subcommand parsers ``sub``."""
    from engine.rl.config import POLICY_KINDS, NavigationConfig as C

    rl = sub.add_parser("rl", help="meta-RL on 2-D point-robot navigation (Finn et al. 2017): train MAML, Reptile "
                                   "or a pre-trained policy, print the return after 0..3 adaptation steps")
    rl.add_argument("--algorithm", choices=POLICY_KINDS, default=C.algorithm, help="what to train (default maml)")
    rl.add_argument("--first-order", action="store_true", help="first-order MAML")
    rl.add_argument("--meta-iters", type=int, default=C.meta_iters, help=f"meta-iterations (default {C.meta_iters})")
    rl.add_argument("--meta-batch", type=int, default=C.meta_batch_size, help="goals per meta-iteration (default 20)")
    rl.add_argument("--trajectories", type=int, default=C.trajectories,
                    help="trajectories per task and gradient step, training and test (default 20)")
    rl.add_argument("--meta-lr", type=float, default=C.meta_lr, help=f"outer Adam learning rate (default {C.meta_lr})")
    rl.add_argument("--inner-lr", type=float, default=C.inner_lr, help="adaptation step size (default 0.1)")
    rl.add_argument("--seed", type=int, default=C.seed, help="seed of the weights, goals and noise (default 0)")
    rl.add_argument("--eval-goals", type=int, default=C.eval_goals, help="held-out goals (default 100)")
    rl.add_argument("--eval-steps", type=int, default=C.eval_steps, help="adaptation steps evaluated (default 3)")
    rl.add_argument("--policy", action="append", default=[], metavar="FILE",
                    help="evaluate this saved policy instead of training (repeatable, e.g. assets/policies/*.pt)")
    rl.add_argument("--goal", metavar="X,Y", help="adapt to this one goal in [-0.5, 0.5]^2 and print its returns")
    rl.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: fastest for this network)")
    rl.add_argument("--out", help="file to save the trained policy in")
    rl.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    rl.add_argument("--json", action="store_true")
    rl.set_defaults(func=cmd_rl)


def parse_goal(text: str) -> tuple[float, float]:
    """``"X,Y"`` -> a goal of the square; ConfigError naming --goal otherwise."""
    from engine.rl.env import check_goal

    parts = text.replace(" ", "").split(",")
    if len(parts) != 2:
        raise ConfigError(f"--goal: expected X,Y (two numbers), got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--goal: expected X,Y (two numbers), got {text!r}") from None
    return check_goal(values, "--goal")


def cmd_rl(args: argparse.Namespace) -> int:
    """Train (or load) navigation policies and report their return after 0..k adaptation steps."""
    import torch

    from engine.rl.config import NavigationConfig, validate_config
    from engine.rl.store import load_policy, save_policy
    from engine.rl.training import train_policy

    goal = parse_goal(args.goal) if args.goal is not None else None
    config = validate_config(NavigationConfig(
        algorithm=args.algorithm, first_order=bool(args.first_order), meta_iters=args.meta_iters,
        meta_batch_size=args.meta_batch, trajectories=args.trajectories, meta_lr=args.meta_lr,
        inner_lr=args.inner_lr, seed=args.seed, eval_goals=args.eval_goals, eval_steps=args.eval_steps))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.policy:
        policies = {}
        for path in args.policy:
            policy = load_policy(path)
            policies[policy.kind if policy.kind not in policies else Path(path).stem] = policy
    else:
        policy = train_policy(config, progress=_Progress(config.algorithm, args.quiet))
        policies = {policy.kind: policy}
    saved = str(save_policy(Path(args.out), next(iter(policies.values())))) if args.out and not args.policy else None
    if goal is not None:
        return _report_goal(args, config, goal, policies)
    return _report_evaluation(args, config, policies, saved)


def _report_evaluation(args: argparse.Namespace, config: Any, policies: dict[str, Any], saved: str | None) -> int:
    from engine.rl.evaluation import evaluate_policies, format_table

    evaluation = evaluate_policies({key: p.params for key, p in policies.items()}, n_goals=config.eval_goals,
                                   steps=config.eval_steps, trajectories=config.trajectories,
                                   inner_lr=config.inner_lr, seed=config.eval_seed)
    if args.json:
        print(json.dumps({
            "config": config.to_dict(), "evaluation": evaluation.to_json(),
            "policies": {key: {"kind": p.kind, "title": p.title, "iterations_done": p.iterations_done,
                                      "train_seconds": round(p.train_seconds, 2), "file": saved}
                         for key, p in policies.items()},
        }, indent=2))
    else:
        print(format_table(evaluation, {key: p.title for key, p in policies.items()}))
        for key, p in policies.items():
            print(f"{p.title}: {p.iterations_done} meta-iterations in {p.train_seconds:.0f} s")
        if saved:
            print(f"saved: {saved}")
    return EXIT_OK


def _report_goal(args: argparse.Namespace, config: Any, goal: tuple[float, float], policies: dict[str, Any]) -> int:
    from engine.rl.evaluation import adapt_to_goal

    result = adapt_to_goal({k: p.params for k, p in policies.items()}, goal, steps=config.eval_steps,
                           trajectories=config.trajectories, inner_lr=config.inner_lr, seed=config.eval_seed)
    returns = {k: [round(float(v), 3) for v in r] for k, r in result.returns.items()}
    if args.json:
        print(json.dumps({"goal": list(goal), "returns": returns}, indent=2))
    else:
        for key, values in returns.items():
            print(f"{policies[key].title} at goal ({goal[0]:g}, {goal[1]:g}): return after 0..{config.eval_steps} "
                  f"steps: {', '.join(f'{v:.1f}' for v in values)}")
    return EXIT_OK


class _Progress:
    """``progress(done, total)`` for cmd_rl: a plain line on stderr every few seconds."""

    def __init__(self, algorithm: str, quiet: bool, every_s: float = 5.0) -> None:
        self.algorithm, self.quiet, self.every_s = algorithm, quiet, every_s
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self.last < self.every_s and done != total):
            return
        self.last = now
        elapsed = now - self.started
        eta = elapsed / max(done, 1) * (total - done)
        print(f"{self.algorithm}: meta-iteration {done}/{total}  ({elapsed:.0f} s, eta {eta:.0f} s)",
              file=sys.stderr, flush=True)
