"""Reptile tasks/s: Meta Studio against a plain PyTorch loop written as in Nichol et al. 2018.

Plain loop, per task: ``copy.deepcopy(model)``, a fresh ``Adam(betas=(0, 0.999))``,
``inner_steps`` full-batch steps on the task's support + query images; then
``theta += lr * mean_tasks(phi - theta)``. Ours: ``build_algorithm`` for reptile and
``meta_train_step(tasks)`` with the same settings (5-way 5-shot 15-query, meta-batch 4,
5 inner Adam steps at 1e-3, outer step 0.5).

Same model: the plain loop uses the textbook Conv-4 of ``common.textbook_conv4``
(BatchNorm with batch statistics, as ours) + Linear head with our initial weights copied
in; same seeded random tasks (``--data glyphs`` for glyph episodes).

Maths check (strict float32, no TF32): copies of both, from the same weights, take 3
meta-steps on the same tasks; after each, the reported inner losses and the models' outputs
on fresh images agree within 1e-4.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import common
from engine.config import ReptileConfig

N_WAY, N_SHOT, N_QUERY = 5, 5, 15
INNER_LR, INNER_STEPS, OUTER_LR = 1e-3, 5, 0.5
ADAM_BETAS = (0.0, 0.999)
TARGET = 1.0


def plain_reptile_step(model: nn.Module, tasks: list, *, inner_lr: float, inner_steps: int,
                       outer_lr: float) -> float:
    """One Reptile meta-step as in the paper; returns the mean last-inner-step loss."""
    start = [p.detach().clone() for p in model.parameters()]
    deltas = [torch.zeros_like(p) for p in start]
    losses = []
    for task in tasks:
        fast = copy.deepcopy(model)
        optimizer = torch.optim.Adam(fast.parameters(), lr=inner_lr, betas=ADAM_BETAS)
        x = torch.cat([task.support_x, task.query_x])
        y = torch.cat([task.support_y, task.query_y])
        for _ in range(inner_steps):
            loss = F.cross_entropy(fast(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
        with torch.no_grad():
            for delta, adapted, theta in zip(deltas, fast.parameters(), start):
                delta.add_(adapted - theta)
    with torch.no_grad():
        for parameter, delta in zip(model.parameters(), deltas):
            parameter.add_(delta, alpha=outer_lr / len(tasks))
    return sum(losses) / len(losses)


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=4, warmup=1, rounds=2)
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--data", choices=("random", "glyphs"), default="random")
    args = parser.parse_args()
    device = common.setup(args)
    config = common.run_config(ReptileConfig(lr=OUTER_LR, inner_lr=INNER_LR, inner_steps=INNER_STEPS),
                               n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, meta_batch=args.meta_batch,
                               device=device, seed=args.seed)
    ours = common.build_ours(config, device, args.seed)
    plain = plain_model(ours, device)
    n_steps = args.warmup + args.steps
    pool = make_tasks(args, n_steps * args.meta_batch, args.seed, device)
    batches = [pool[i * args.meta_batch:(i + 1) * args.meta_batch] for i in range(n_steps)]
    probe = make_tasks(args, 1, args.seed + 99, device)[0].query_x

    print("\n== maths check (strict float32): copies from the same weights, same tasks ==")
    with common.strict_fp32(deterministic=True):
        check_maths(common.nchw_copy(ours), plain, batches[:3], probe)

    timings = common.time_interleaved(
        {"plain": lambda i: plain_reptile_step(plain, batches[i % n_steps], inner_lr=INNER_LR,
                                               inner_steps=INNER_STEPS, outer_lr=OUTER_LR),
         "ours": lambda i: ours.meta_train_step(batches[i % n_steps])},
        steps=args.steps, warmup=args.warmup, rounds=args.rounds, items_per_step=args.meta_batch, device=device)
    print(f"\n== timing: {args.warmup} warm-up + {args.steps} timed meta-steps of {args.meta_batch} tasks each ==")
    common.print_table([(t.name, t.rate, 1000.0 / t.rate, t.spread) for t in timings.values()],
                       ("contender", "tasks/s", "ms/task", "round spread"))
    print()
    print(common.ratio_line(f"reptile tasks/s (meta-batch {args.meta_batch}, {INNER_STEPS} inner steps)", "plain",
                            timings["plain"].rate, timings["ours"].rate, TARGET))


def check_maths(ours: Any, plain: nn.Module, batches: list, probe: torch.Tensor) -> None:
    """Inner losses and model outputs of copies of both after each of ``batches`` meta-steps."""
    ours, plain = copy.deepcopy(ours), copy.deepcopy(plain)
    for n, tasks in enumerate(batches, start=1):
        ours_loss = ours.meta_train_step(tasks)["loss"]
        plain_loss = plain_reptile_step(plain, tasks, inner_lr=INNER_LR, inner_steps=INNER_STEPS, outer_lr=OUTER_LR)
        print(common.check_line(f"meta-step {n}: inner loss |ours - plain|", abs(ours_loss - plain_loss), 1e-4))
        print(common.check_line(f"meta-step {n}: outputs max |ours - plain|", output_gap(ours, plain, probe), 1e-4))


def plain_model(ours: Any, device: torch.device) -> nn.Module:
    model = nn.Sequential(common.textbook_conv4(batch_statistics=True), nn.Linear(ours.head.in_features, N_WAY))
    return common.copy_in_order(ours.model, model).to(device)


def output_gap(ours: Any, plain: nn.Module, images: torch.Tensor) -> float:
    with torch.no_grad():
        return common.max_abs_diff(ours.model(images), plain(images))


def make_tasks(args: Any, n: int, seed: int, device: torch.device) -> list:
    if args.data == "glyphs":
        data = common.glyph_data(args.seed)
        return common.glyph_tasks(data, "train", n, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, seed=seed,
                                  device=device)
    return common.random_tasks(n, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, seed=seed, device=device)


if __name__ == "__main__":
    main()
    sys.exit(0)
