"""Make the navigation policies shipped in ``assets/policies/`` (the Navigation view's policies).

    python -m engine.rl.make_policies                   # writes assets/policies/navigation_*.pt
    python -m engine.rl.make_policies --out /tmp/p --scale 0.1   # a quick try

Trains second-order MAML, Reptile and the pre-trained baseline at the defaults of
:class:`engine.rl.config.NavigationConfig` (seed 0, one CPU thread, so the weights are the same on
every run; the files also record the measured training time, which is not), then evaluates them and
an untrained policy on the 100 held-out goals after 0..3 adaptation steps and prints the table.
Each file is about 46 KB. The run that made the shipped files (2-core machine shared with other jobs,
load 13-15: MAML 441 s, Reptile 259 s, pre-trained 126 s) printed:

    policy                  0 steps        1 step         2 steps        3 steps
    MAML                    -39.8 ± 2.9    -17.8 ± 1.3    -21.8 ± 1.6    -19.6 ± 1.4
    Reptile                 -39.9 ± 2.8    -20.2 ± 2.0    -14.8 ± 0.7    -16.0 ± 0.8
    pre-trained             -38.8 ± 2.8    -36.3 ± 2.7    -34.3 ± 2.6    -32.5 ± 2.6
    untrained (seed 0)     -102.4 ± 2.4    -96.2 ± 2.1    -95.5 ± 2.0    -92.4 ± 2.0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from engine.rl.config import NavigationConfig
from engine.rl.evaluation import evaluate_policies, format_table
from engine.rl.policy import init_params
from engine.rl.store import save_policies
from engine.rl.training import NavigationPolicy, train_policy

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "policies"
META_ITERS = {"maml": 120, "reptile": 100, "pretrained": 200}
"""Meta-iterations per policy: enough for the effect to be clear, short enough for a busy 2-core CPU."""


def make_policies(out: Path = ASSETS, scale: float = 1.0, quiet: bool = False) -> dict[str, NavigationPolicy]:
    """Train, save into ``out`` and evaluate the three policies; returns them."""
    torch.set_num_threads(1)
    policies: dict[str, NavigationPolicy] = {}
    for kind, iterations in META_ITERS.items():
        config = NavigationConfig(algorithm=kind, meta_iters=max(1, round(iterations * scale)))
        started = time.monotonic()

        def progress(done: int, total: int, kind: str = kind) -> None:
            if not quiet and (done % 25 == 0 or done == total):
                print(f"{kind}: {done}/{total} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)

        policies[kind] = train_policy(config, progress)
    paths = save_policies(out, policies)
    defaults = NavigationConfig()
    untrained = init_params(defaults.seed, (defaults.hidden, defaults.hidden))
    evaluation = evaluate_policies({**{k: p.params for k, p in policies.items()}, "untrained": untrained},
                                   n_goals=defaults.eval_goals, steps=defaults.eval_steps,
                                   trajectories=defaults.trajectories, inner_lr=defaults.inner_lr,
                                   seed=defaults.eval_seed)
    print(format_table(evaluation, {"untrained": "untrained (seed 0)"}))
    for kind, policy in policies.items():
        print(f"{policy.title}: {policy.iterations_done} meta-iterations in {policy.train_seconds:.0f} s -> "
              f"{paths[kind]} ({paths[kind].stat().st_size / 1024:.0f} KB)")
    return policies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ASSETS), help=f"folder for the files (default {ASSETS})")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every meta-iteration count (a quick try)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    make_policies(Path(args.out), args.scale, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
