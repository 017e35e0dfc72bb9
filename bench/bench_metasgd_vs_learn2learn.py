"""Meta-SGD (second- and first-order) 5-way 1-shot 15-query, meta-batch 16, one inner step: the maths of
Meta Studio against learn2learn 0.2.0's ``MetaSGD``, and tasks/s of the training step.

learn2learn: ``MetaSGD(model, lr=inner_lr, first_order=...)``; per task ``clone()``, ``adapt(support
loss)``, query loss ``/ meta_batch`` ``.backward()``; one outer Adam step over the model's weights AND the
learned rates (``meta_sgd.parameters()``), as its Meta-SGD example does. Ours: ``build_algorithm`` for
meta_sgd and ``meta_train_step(tasks)``.

Same model: learn2learn wraps the textbook Conv-4 of ``common.textbook_conv4`` (BatchNorm with batch
statistics, as ours) + a Linear head, with our initial weights copied in; the learned rates of both are set to
the same random values in [0.05, 0.5] (all equal at the start would hide a rate applied to the wrong weight).
Same tasks: seeded random 28x28 episodes (``--data glyphs`` for glyph episodes), shared by both.

Maths checks (strict float32, no TF32), on the path our ``meta_train_step`` takes (task loop, or vmap on a
GPU): after one inner step, the adapted query logits agree (1e-4 relative); on one meta-batch from the same
weights the meta-loss agrees (1e-4) and every meta-gradient, the rates' included, agrees (1e-4 relative);
copies of both trained 3 meta-steps on the same tasks agree on the meta-loss of fresh tasks.
``--check-only`` runs the checks without the timing (the test in tests/engine/test_meta_sgd.py).

Deliberate difference: none in the maths. learn2learn keeps its rates in a ParameterList in parameter order;
ours are a ParameterDict keyed by parameter name (network ``inner_lrs`` of the checkpoint).
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

import common
from engine.algorithms.meta_sgd import MetaSGDConfig

N_WAY, N_SHOT, N_QUERY = 5, 1, 15
INNER_LR, OUTER_LR = 0.1, 1e-3
RATE_RANGE = (0.05, 0.5)


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=4, warmup=1, rounds=2)
    parser.add_argument("--meta-batch", type=int, default=16)
    parser.add_argument("--data", choices=("random", "glyphs"), default="random")
    parser.add_argument("--variants", default="so,fo", help="comma list of so (second order), fo (first order)")
    parser.add_argument("--check-only", action="store_true", help="the maths checks only (small meta-batch)")
    args = parser.parse_args()
    device = common.setup(args)
    l2l = common.peer_or_exit("learn2learn")
    if args.check_only:
        args.meta_batch = min(args.meta_batch, 4)
    summary = [run_variant(args, device, l2l, v) for v in args.variants.split(",") if v]
    print("\n== summary ==")
    for line in summary:
        print(line)


def variant_name(variant: str, meta_batch: int) -> str:
    return f"{'second' if variant == 'so' else 'first'}-order Meta-SGD, meta-batch {meta_batch}"


def build_pair(variant: str, meta_batch: int, device: torch.device, seed: int, l2l: Any) -> tuple[Any, Any, Any]:
    """(ours, learn2learn MetaSGD wrapper, its Adam) starting from identical weights and rates."""
    algorithm = MetaSGDConfig(lr=OUTER_LR, inner_lr=INNER_LR, inner_steps=1, test_inner_steps=1,
                                first_order=(variant == "fo"))
    config = common.run_config(algorithm, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, meta_batch=meta_batch,
                               device=device, seed=seed)
    config.train.precision = "fp32"  # the peer runs in float32
    ours = common.build_ours(config, device, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for rate in ours.rates.by_name().values():
            random = torch.rand(rate.shape, generator=generator) * (RATE_RANGE[1] - RATE_RANGE[0]) + RATE_RANGE[0]
            rate.copy_(random.to(rate.device))
    peer_model = torch.nn.Sequential(common.textbook_conv4(batch_statistics=True),
                                     torch.nn.Linear(ours.head.in_features, N_WAY))
    common.copy_in_order(ours.model, peer_model)
    peer = l2l.algorithms.MetaSGD(peer_model.to(device), lr=INNER_LR, first_order=(variant == "fo"))
    with torch.no_grad():
        for peer_rate, rate in zip(peer.lrs, ours.rates.by_name().values()):
            peer_rate.copy_(rate)
    peer_optimizer = torch.optim.Adam(peer.parameters(), lr=OUTER_LR)
    return ours, peer, peer_optimizer


def peer_meta_step(peer: Any, optimizer: torch.optim.Optimizer, tasks: list) -> float:
    """learn2learn's documented Meta-SGD step; returns the mean query loss."""
    optimizer.zero_grad(set_to_none=True)
    total_loss = 0.0
    for task in tasks:
        learner = peer.clone()
        learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
        logits = learner(task.query_x)
        loss = F.cross_entropy(logits, task.query_y)
        (loss / len(tasks)).backward()
        total_loss += loss.item()
        (logits.argmax(1) == task.query_y).float().mean().item()  # the accuracy its example reads
    optimizer.step()
    return total_loss / len(tasks)


def make_tasks(args: Any, n: int, seed: int, device: torch.device) -> list:
    if args.data == "glyphs":
        data = common.glyph_data(args.seed)
        return common.glyph_tasks(data, "train", n, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, seed=seed,
                                  device=device)
    return common.random_tasks(n, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, seed=seed, device=device)


def run_variant(args: Any, device: torch.device, l2l: Any, variant: str) -> str:
    meta_batch = args.meta_batch
    print(f"\n=== {variant_name(variant, meta_batch)} ===")
    ours, peer, peer_optimizer = build_pair(variant, meta_batch, device, args.seed, l2l)
    n_steps = args.warmup + args.steps
    pool = make_tasks(args, n_steps * meta_batch, args.seed, device)
    batches = [pool[i * meta_batch:(i + 1) * meta_batch] for i in range(n_steps)]

    with common.strict_fp32():
        strict = common.nchw_copy(ours)
        check_adapted_logits(strict, peer, batches[0][0])
        check_meta_gradient(strict, peer, batches[0])
        check_training(strict, peer, batches[:3], make_tasks(args, 4, args.seed + 99, device))
    if args.check_only:
        return f"meta-sgd {variant}: maths checked (see the check lines above)"

    timings = common.time_interleaved(
        {"learn2learn": lambda i: peer_meta_step(peer, peer_optimizer, batches[i % n_steps]),
         "ours": lambda i: ours.meta_train_step(batches[i % n_steps])},
        steps=args.steps, warmup=args.warmup, rounds=args.rounds, items_per_step=meta_batch, device=device)
    common.print_table([(t.name, t.rate, 1000.0 / t.rate, t.spread) for t in timings.values()],
                       ("contender", "tasks/s", "ms/task", "round spread"))
    chunk = ours.task_chunk(batches[0])
    print(f"ours ran {'task by task (loop)' if chunk == 0 else f'vmap, {chunk} tasks per call'}")
    line = common.ratio_line(f"meta-sgd {variant} mb{meta_batch} tasks/s", "learn2learn",
                             timings["learn2learn"].rate, timings["ours"].rate, None)
    print(line + "  (target >= 1x, reported, not asserted)")
    return line


def check_adapted_logits(ours: Any, peer: Any, task: Any) -> None:
    """One inner step at the learned rates on a support set: the same query logits."""
    predictor = ours.adapt(task.support_x, task.support_y, steps=1)
    with torch.no_grad():
        ours_logits = functional_call(predictor.model, predictor.params, (task.query_x,))
    learner = copy.deepcopy(peer).clone()
    learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
    peer_logits = learner(task.query_x).detach()
    print(common.check_line("adapted query logits, ||ours - l2l|| / ||l2l||",
                            common.max_rel_diff([ours_logits], [peer_logits]), 1e-4))


def ours_meta_gradient(ours: Any, tasks: list) -> tuple[float, list[torch.Tensor], list[torch.Tensor]]:
    """Our meta-loss, weight meta-gradients and rate meta-gradients (parameter order) on our training path."""
    chunk = ours.task_chunk(tasks)
    result = ours.meta_gradient(tasks, batched=chunk > 0, chunk_size=chunk)
    names = [n for n, _ in ours.model.named_parameters()]
    return result.loss, [result.grads[n] for n in names], [result.grads[f"inner_lr.{n}"] for n in names]


def peer_meta_gradient(peer: Any, tasks: list) -> tuple[float, list[torch.Tensor], list[torch.Tensor]]:
    twin = copy.deepcopy(peer)
    for parameter in twin.parameters():
        parameter.grad = None
    loss = peer_meta_step(twin, torch.optim.SGD(twin.parameters(), lr=0.0), tasks)
    return loss, [p.grad for p in twin.module.parameters()], [r.grad for r in twin.lrs]


def check_meta_gradient(ours: Any, peer: Any, tasks: list) -> None:
    """Meta-loss and meta-gradients (weights and rates) of both libraries on one meta-batch, no step taken."""
    ours_loss, ours_weights, ours_rates = ours_meta_gradient(ours, tasks)
    peer_loss, peer_weights, peer_rates = peer_meta_gradient(peer, tasks)
    path = "vmap" if ours.uses_batched_tasks(tasks) else "loop"
    print(common.check_line(f"meta-loss, |ours ({path}) - learn2learn|", abs(ours_loss - peer_loss), 1e-4))
    print(common.check_line("weight meta-gradients, ||ours - l2l|| / ||l2l||",
                            common.max_rel_diff(ours_weights, peer_weights), 1e-4))
    print(common.check_line("learned-rate meta-gradients, ||ours - l2l|| / ||l2l||",
                            common.max_rel_diff(ours_rates, peer_rates), 1e-4))


def check_training(ours: Any, peer: Any, batches: list, fresh: list) -> None:
    """Copies of both, trained the same meta-steps on the same tasks, agree on fresh tasks' meta-loss."""
    ours, peer = copy.deepcopy(ours), copy.deepcopy(peer)
    optimizer = torch.optim.Adam(peer.parameters(), lr=OUTER_LR)
    for tasks in batches:
        ours.meta_train_step(tasks)
        peer_meta_step(peer, optimizer, tasks)
    ours_loss, peer_loss = ours_meta_gradient(ours, fresh)[0], peer_meta_gradient(peer, fresh)[0]
    gap = abs(ours_loss - peer_loss) / max(abs(peer_loss), 1e-12)
    print(f"after {len(batches)} meta-steps each: meta-loss on fresh tasks  learn2learn {peer_loss:.6f}  "
          f"ours {ours_loss:.6f}")
    print(common.check_line("relative gap", gap, 1e-4))
    rates = common.max_rel_diff(list(ours.rates.by_name().values()), list(peer.lrs))
    print(common.check_line("learned rates after training, ||ours - l2l|| / ||l2l||", rates, 1e-4))


if __name__ == "__main__":
    main()
    sys.exit(0)
