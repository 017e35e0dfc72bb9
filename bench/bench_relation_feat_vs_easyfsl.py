"""Relation Networks and FEAT, 5-way 5-shot 15-query: maths and training-step speed against easyfsl 1.5.0.

easyfsl: ``RelationNetworks(backbone, feature_dimension=64)`` (its ``default_relation_module``) and
``FEAT(backbone, attention_module=MultiHeadAttention(1, 64, 64, 64))``; a training step is easyfsl's
documented loop: ``process_support_set``, ``forward(query)``, the loss (MSE on one-hot relation
scores; cross-entropy for FEAT), backward, Adam step, ``loss.item()``.
Ours: ``build_algorithm`` for relation / feat and ``meta_train_step([task])`` (meta-batch 1).

Same backbone: the textbook Conv-4 of ``common.textbook_conv4`` (without its flatten for
Relation Networks, which compare feature maps) with our initial weights copied in; the relation
module and the attention module are loaded from OUR state dicts (same keys, ``strict=True``).
Same episodes: seeded built-in glyph episodes, sampled before timing and shared.

Maths checks (same weights, same episode, strict float32, NCHW):
  1. eval-mode prediction: Relation Networks: easyfsl's relation scores equal ours, and our
     probabilities are those scores normalised to sum 1; FEAT: easyfsl's adapted prototypes equal
     ours; its logits are -||q - c|| while ours are -||q - c||^2 / T (the paper's), so
     softmax(-(easyfsl logits)^2 / T) must equal our probabilities.
  2. one training step: our loss, gradients (backbone and relation / attention module) and the
     relation module's BatchNorm running statistics equal a reference that runs easyfsl's own
     classes on the features of ONE backbone forward of support and query (ours embeds both in
     one batch, so BatchNorm sees one batch; easyfsl's loop forwards them separately). FEAT's
     dropout is live on both sides with the same seed (the same masks: the same draws in the same order).
  3. after the timed training, held-out (val) accuracy of both (reported).
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import common
from engine.algorithms.feat import FEATConfig
from engine.algorithms.relation import RelationConfig
from engine.data.types import Task

N_WAY, N_SHOT, N_QUERY = 5, 5, 15
TARGET = 1.0
DROPOUT_SEED = 1234


def one_hot(labels: Tensor, n: int) -> Tensor:
    return F.one_hot(labels, n).float()


# -- Relation Networks ------------------------------------------------------------------------------
def relation_peer(ours: Any, easyfsl_methods: Any) -> nn.Module:
    """easyfsl's RelationNetworks with our backbone weights (textbook Conv-4 maps) and our relation module."""
    hidden = ours.encoder.map_channels   # ours.backbone is the view that gives the encoder's feature maps
    backbone = common.copy_in_order(ours.encoder, nn.Sequential(*list(common.textbook_conv4(1, hidden))[:-1]))
    peer = easyfsl_methods.RelationNetworks(backbone, feature_dimension=hidden)
    peer.relation_module.load_state_dict(ours.relation.state_dict(), strict=True)
    return peer.to(ours.device)


def relation_checks(ours: Any, peer: nn.Module, task: Task) -> dict[str, float]:
    """The maths checks of Relation Networks (see the module docstring): name -> difference."""
    results: dict[str, float] = {}
    peer.eval()
    with torch.no_grad():
        peer.process_support_set(task.support_x, task.support_y)
        peer_scores = peer(task.query_x)
    predictor = ours.adapt(task.support_x, task.support_y)
    results["eval relation scores, max |ours - easyfsl|"] = common.max_abs_diff(predictor.scores(task.query_x),
                                                                              peer_scores)
    results["eval probabilities, max |ours - easyfsl scores / row sum|"] = common.max_abs_diff(
        predictor.predict(task.query_x), peer_scores / peer_scores.sum(1, keepdim=True))
    for loss_name in ("mse", "cross_entropy"):
        twin = common.nchw_copy(ours)
        twin.config = dataclasses.replace(twin.config, loss=loss_name)
        reference = copy.deepcopy(peer).train()
        features = reference.backbone(torch.cat([task.support_x, task.query_x]))
        n_support = len(task.support_y)
        on_features = type(peer)(nn.Identity(), feature_dimension=peer.feature_dimension,
                                 relation_module=reference.relation_module).train()
        on_features.process_support_set(features[:n_support], task.support_y)
        scores = on_features(features[n_support:])
        ref_loss = (F.mse_loss(scores, one_hot(task.query_y, scores.shape[1])) if loss_name == "mse"
                    else F.cross_entropy(scores, task.query_y))
        params = list(reference.backbone.parameters()) + list(reference.relation_module.parameters())
        ref_grads = torch.autograd.grad(ref_loss, params)
        metrics = twin.meta_train_step([task])
        ours_params = list(twin.backbone.parameters()) + list(twin.relation.parameters())
        results[f"train loss ({loss_name}), |ours - reference|"] = abs(metrics["loss"] - ref_loss.item())
        results[f"train gradients ({loss_name}), ||ours - reference|| / ||reference||"] = common.max_rel_diff(
            [p.grad for p in ours_params], ref_grads)
        results[f"relation BatchNorm running stats ({loss_name}), max |ours - reference|"] = max(
            common.max_abs_diff(a, b) for a, b in zip(twin.relation.buffers(), reference.relation_module.buffers())
            if a.is_floating_point())
    return results


def relation_peer_step(peer: nn.Module, optimizer: torch.optim.Optimizer, task: Task) -> None:
    peer.train()
    peer.process_support_set(task.support_x, task.support_y)
    loss = F.mse_loss(peer(task.query_x), one_hot(task.query_y, N_WAY))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    loss.item()


# -- FEAT -------------------------------------------------------------------------------------------
def feat_peer(ours: Any, easyfsl_methods: Any, easyfsl_modules: Any) -> nn.Module:
    """easyfsl's FEAT with our backbone weights (textbook Conv-4) and our attention module."""
    dim = ours.attention.dim
    backbone = common.copy_in_order(ours.backbone, common.textbook_conv4(1, ours.backbone.map_channels))
    attention = easyfsl_modules.MultiHeadAttention(1, dim, dim, dim, dropout=ours.config.dropout)
    attention.load_state_dict(ours.attention.state_dict(), strict=True)
    return easyfsl_methods.FEAT(backbone, attention_module=attention).to(ours.device)


def feat_checks(ours: Any, peer: nn.Module, task: Task) -> dict[str, float]:
    """The maths checks of FEAT (see the module docstring): name -> difference."""
    results: dict[str, float] = {}
    temperature = ours.config.temperature
    peer.eval()
    with torch.no_grad():
        peer.process_support_set(task.support_x, task.support_y)
        peer_logits = peer(task.query_x)
    predictor = ours.adapt(task.support_x, task.support_y)
    results["eval adapted prototypes, max |ours - easyfsl|"] = common.max_abs_diff(predictor.prototypes(),
                                                                                 peer.prototypes)
    results["eval probabilities, max |ours - softmax(-easyfsl_logits^2 / T)|"] = common.max_abs_diff(
        predictor.predict(task.query_x), (-peer_logits.pow(2) / temperature).softmax(1))
    twin = common.nchw_copy(ours)
    reference = copy.deepcopy(peer).train()
    features = reference.backbone(torch.cat([task.support_x, task.query_x]))
    n_support = len(task.support_y)
    on_features = type(peer)(nn.Identity(), attention_module=reference.attention_module).train()
    torch.manual_seed(DROPOUT_SEED)
    on_features.process_support_set(features[:n_support], task.support_y)
    ref_loss = F.cross_entropy(-on_features(features[n_support:]).pow(2) / temperature, task.query_y)
    params = list(reference.backbone.parameters()) + list(reference.attention_module.parameters())
    ref_grads = torch.autograd.grad(ref_loss, params)
    torch.manual_seed(DROPOUT_SEED)
    metrics = twin.meta_train_step([task])
    ours_params = list(twin.backbone.parameters()) + list(twin.attention.parameters())
    results["train loss, |ours - reference|"] = abs(metrics["loss"] - ref_loss.item())
    results["train gradients, ||ours - reference|| / ||reference||"] = common.max_rel_diff(
        [p.grad for p in ours_params], ref_grads)
    return results


def feat_peer_step(peer: nn.Module, optimizer: torch.optim.Optimizer, task: Task) -> None:
    peer.train()
    peer.process_support_set(task.support_x, task.support_y)
    loss = F.cross_entropy(peer(task.query_x), task.query_y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    loss.item()


# -- shared -----------------------------------------------------------------------------------------
def tolerance(label: str) -> float:
    """float32 round-off: 1e-4 relative for gradients (sums over thousands of terms), 1e-5 otherwise."""
    return 1e-4 if "gradients" in label else 1e-5


def peer_accuracy(peer: nn.Module, tasks: list[Task]) -> float:
    peer.eval()
    correct = []
    with torch.no_grad():
        for task in tasks:
            peer.process_support_set(task.support_x, task.support_y)
            correct.append((peer(task.query_x).argmax(1) == task.query_y).float().mean().item())
    return sum(correct) / len(correct)


def ours_accuracy(ours: Any, tasks: list[Task]) -> float:
    correct = [(ours.adapt(t.support_x, t.support_y).predict(t.query_x).argmax(1) == t.query_y).float().mean().item()
               for t in tasks]
    return sum(correct) / len(correct)


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=40, warmup=3)
    parser.add_argument("--eval-episodes", type=int, default=100)
    args = parser.parse_args()
    device = common.setup(args)
    easyfsl_methods = common.peer_or_exit("easyfsl.methods")
    easyfsl_modules = common.quiet_import("easyfsl.modules")

    data = common.glyph_data(args.seed)
    n_pool = args.warmup + args.steps
    train_tasks = common.glyph_tasks(data, "train", n_pool, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY,
                                     seed=args.seed, device=device)
    eval_tasks = common.glyph_tasks(data, "val", args.eval_episodes, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY,
                                    seed=args.seed + 1, device=device)
    for name, config, make_peer, checks, peer_step in (
            ("relation", RelationConfig(lr=1e-3), lambda o: relation_peer(o, easyfsl_methods), relation_checks,
             relation_peer_step),
            ("feat", FEATConfig(lr=1e-3), lambda o: feat_peer(o, easyfsl_methods, easyfsl_modules), feat_checks,
             feat_peer_step)):
        run_config = common.run_config(config, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, meta_batch=1,
                                       device=device, seed=args.seed)
        run_config.train.precision = "fp32"   # like for like: the peer runs in float32
        ours = common.build_ours(run_config, device, args.seed)
        peer = make_peer(ours)
        peer_optimizer = torch.optim.Adam(peer.parameters(), lr=1e-3)
        print(f"\n== {name}: maths checks (identical weights, identical episode) ==")
        with common.strict_fp32():
            for label, value in checks(ours, peer, train_tasks[0]).items():
                print(common.check_line(label, value, tolerance(label)))

        print(f"\n== {name}: timing, {args.warmup} warm-up + {args.steps} timed steps each, "
              f"{args.rounds} interleaved rounds ==")
        timings = common.time_interleaved(
            {"easyfsl": lambda i: peer_step(peer, peer_optimizer, train_tasks[i % n_pool]),
             "ours": lambda i: ours.meta_train_step([train_tasks[i % n_pool]])},
            steps=args.steps, warmup=args.warmup, rounds=args.rounds, items_per_step=1, device=device)
        common.print_table([(t.name, t.rate, 1000.0 / t.rate, t.spread) for t in timings.values()],
                           ("contender", "episodes/s", "ms/episode", "round spread"))
        print(f"held-out (val) accuracy after the same training, {args.eval_episodes} episodes: "
              f"easyfsl {peer_accuracy(peer, eval_tasks):.3f}  ours {ours_accuracy(ours, eval_tasks):.3f}")
        print(common.ratio_line(f"{name} training episodes/s (meta-batch 1)", "easyfsl", timings["easyfsl"].rate,
                                timings["ours"].rate, TARGET))


if __name__ == "__main__":
    main()
    sys.exit(0)
