"""ProtoNet 5-way 5-shot 15-query: episodes/s of Meta Studio against easyfsl 1.5.0.

easyfsl: ``PrototypicalNetworks(backbone)``; per episode ``process_support_set`` then
``forward(query)``, cross-entropy, backward, Adam step (its documented training loop;
``loss.item()`` is read each step, as ours returns float metrics).
Ours: ``build_algorithm`` for protonet and ``meta_train_step([task])`` (meta-batch 1, the
like-for-like episode loop), and also meta-batch 4 (four episodes, one backbone forward).

Same backbone: easyfsl ships no Conv-4, so the peer gets the textbook Conv-4 of
``common.textbook_conv4`` (the same layers as our ``engine.models.Conv4``, written out
plainly) with our initial weights copied in. Same episodes: the built-in
glyph episodes (engine.data, seeded), sampled before timing and shared by both.

Maths checks (same weights, same episode):
  1. eval-mode prediction: easyfsl's prototypes equal ours; its logits are -||q - c|| while
     ours are -||q - c||^2 (Snell et al.), so softmax(-(easyfsl logits)^2) must equal our
     probabilities.
  2. one training step: our loss and gradients equal a reference assembled from easyfsl's
     own ``compute_prototypes`` and ``torch.cdist`` squared, on one backbone forward of the
     support and query images (ours embeds both in one batch, so BatchNorm sees one batch).
  3. after the timed training, both reach comparable accuracy on held-out (val) episodes.
"""

from __future__ import annotations

import copy
import sys

import torch
import torch.nn.functional as F

import common
from engine.config import ProtoNetConfig

N_WAY, N_SHOT, N_QUERY = 5, 5, 15
TARGET = {"cpu": 2.5, "cuda": 1.2}
"""Ours (its default precision) against easyfsl: issue 18's 2.5x on the CPU (1.2x before it, still on CUDA)."""


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=60, warmup=5)
    parser.add_argument("--data", choices=("glyphs", "random"), default="glyphs")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--acc-tolerance", type=float, default=0.05)
    args = parser.parse_args()
    device = common.setup(args)
    easyfsl_methods = common.peer_or_exit("easyfsl.methods")
    easyfsl_utils = common.quiet_import("easyfsl.methods.utils")

    data = common.glyph_data(args.seed) if args.data == "glyphs" else None
    n_pool = args.warmup + args.steps
    train_tasks = episodes(data, "train", n_pool, args.seed, device)
    config = common.run_config(ProtoNetConfig(lr=1e-3), n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY,
                               meta_batch=1, device=device, seed=args.seed)
    ours = common.build_ours(config, device, args.seed)
    ours_mb4 = common.build_ours(config, device, args.seed)
    ours_fp32 = common.build_ours(config, device, args.seed, precision="fp32") \
        if common.ours_precision(device) != "fp32" else None
    peer_backbone = common.copy_in_order(ours.backbone, common.textbook_conv4()).to(device)
    peer = easyfsl_methods.PrototypicalNetworks(peer_backbone).to(device)
    peer_optimizer = torch.optim.Adam(peer.parameters(), lr=1e-3)

    print("\n== maths checks (identical weights, identical episode) ==")
    with common.strict_fp32():
        check_maths(ours, peer, easyfsl_utils.compute_prototypes, train_tasks[0])

    def peer_step(i: int) -> None:
        task = train_tasks[i % n_pool]
        peer.train()
        peer.process_support_set(task.support_x, task.support_y)
        loss = F.cross_entropy(peer(task.query_x), task.query_y)
        peer_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        peer_optimizer.step()
        loss.item()

    def ours_step(i: int) -> None:
        ours.meta_train_step([train_tasks[i % n_pool]])

    def ours_mb4_step(i: int) -> None:
        ours_mb4.meta_train_step([train_tasks[(4 * i + k) % n_pool] for k in range(4)])

    contenders = {"easyfsl": peer_step, "ours mb1": ours_step, "ours mb4": ours_mb4_step}
    if ours_fp32 is not None:  # ours in another precision by default: the ratio with ours forced to fp32 too
        contenders["ours mb1 fp32"] = lambda i: ours_fp32.meta_train_step([train_tasks[i % n_pool]])
    print(f"\n== timing: {args.warmup} warm-up + {args.steps} timed steps each, {args.rounds} interleaved rounds ==")
    timings = common.time_interleaved(
        contenders, steps=args.steps, warmup=args.warmup, rounds=args.rounds,
        items_per_step={name: 4 if name == "ours mb4" else 1 for name in contenders}, device=device)
    common.print_table([(t.name, t.rate, 1000.0 / t.rate, t.spread) for t in timings.values()],
                       ("contender", "episodes/s", "ms/episode", "round spread"))

    if data is not None:
        print(f"\n== accuracy on {args.eval_episodes} held-out (val) episodes after the same training ==")
        eval_tasks = episodes(data, "val", args.eval_episodes, args.seed + 1, device)
        peer_acc = peer_accuracy(peer, eval_tasks)
        ours_acc = ours_accuracy(ours, eval_tasks)
        gap = abs(peer_acc - ours_acc)
        print(f"easyfsl {peer_acc:.3f}  ours {ours_acc:.3f}  "
              f"({'OK' if gap <= args.acc_tolerance else 'MISMATCH'}: |gap| {gap:.3f} <= {args.acc_tolerance})")

    print()
    peer_rate = timings["easyfsl"].rate
    target = TARGET.get(device.type, TARGET["cuda"])
    print(common.ratio_line("protonet episodes/s (meta-batch 1)", "easyfsl", peer_rate,
                            timings["ours mb1"].rate, target))
    print(common.ratio_line("protonet episodes/s (ours meta-batch 4)", "easyfsl", peer_rate,
                            timings["ours mb4"].rate, target))
    if ours_fp32 is not None:  # reported, no target of its own
        print(common.ratio_line("protonet episodes/s (meta-batch 1, ours forced to fp32)", "easyfsl", peer_rate,
                                timings["ours mb1 fp32"].rate, None))
    else:
        print("(ours runs in fp32 here, so the ratio with ours forced to fp32 is the first line)")


def episodes(data, part: str, n: int, seed: int, device: torch.device) -> list:
    if data is None:
        return common.random_tasks(n, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, seed=seed, device=device)
    return common.glyph_tasks(data, part, n, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, seed=seed,
                              device=device)


def check_maths(ours, peer, compute_prototypes, task) -> None:
    """Print the three equality checks on copies (the timed models are left untouched)."""
    # 1. eval-mode prediction
    peer.eval()
    with torch.no_grad():
        peer.process_support_set(task.support_x, task.support_y)
        peer_scores = peer(task.query_x)
    predictor = ours.adapt(task.support_x, task.support_y)
    ours_probs = predictor.predict(task.query_x)
    print(common.check_line("prototypes, max |ours - easyfsl|",
                            common.max_abs_diff(predictor.prototypes(), peer.prototypes), 1e-4))
    print(common.check_line("probabilities, max |ours - softmax(-easyfsl_logits^2)|",
                            common.max_abs_diff(ours_probs, (-peer_scores.pow(2)).softmax(1)), 1e-4))
    # 2. one training step: our loss and gradients against an easyfsl-built reference
    twin = common.nchw_copy(ours)
    reference = copy.deepcopy(peer.backbone).train()
    features = reference(torch.cat([task.support_x, task.query_x]))
    support, query = features[: len(task.support_y)], features[len(task.support_y):]
    logits = -torch.cdist(query, compute_prototypes(support, task.support_y)).pow(2)
    ref_loss = F.cross_entropy(logits, task.query_y)
    ref_grads = torch.autograd.grad(ref_loss, list(reference.parameters()))
    metrics = twin.meta_train_step([task])
    print(common.check_line("training loss, |ours - reference|", abs(metrics["loss"] - ref_loss.detach().item()),
                            1e-4))
    print(common.check_line("gradients, ||ours - reference|| / ||reference||", common.max_rel_diff(
        [p.grad for p in twin.backbone.parameters()], ref_grads), 1e-3))


def peer_accuracy(peer, tasks) -> float:
    peer.eval()
    correct = []
    with torch.no_grad():
        for task in tasks:
            peer.process_support_set(task.support_x, task.support_y)
            correct.append((peer(task.query_x).argmax(1) == task.query_y).float().mean().item())
    return sum(correct) / len(correct)


def ours_accuracy(ours, tasks) -> float:
    correct = []
    for task in tasks:
        probs = ours.adapt(task.support_x, task.support_y).predict(task.query_x)
        correct.append((probs.argmax(1) == task.query_y).float().mean().item())
    return sum(correct) / len(correct)


if __name__ == "__main__":
    main()
    sys.exit(0)
