"""TIM, PT-MAP, LaplacianShot, BD-CSPN, transductive fine-tuning: maths and prediction speed against easyfsl 1.5.0.

Both sides adapt the same pre-trained backbone: ours is trained for ``--pretrain-steps`` steps of the
classifier pre-training the five methods share (built-in glyphs, seeded); easyfsl gets the textbook Conv-4
of ``common.textbook_conv4`` with those weights copied in, in eval mode (easyfsl freezes the backbone, as
ours does). Same episodes: seeded glyph test episodes (5-way, ``--n-shot``, 15 queries per class), shared.

easyfsl: the class with ``use_softmax=True`` and our config's hyperparameters; per episode
``process_support_set(support)`` then ``forward(query)`` (its documented inference; it fine-tunes or
iterates inside ``forward``). Ours: ``adapt(support)`` then ``predict(query)``.

Maths checks (strict float32, NCHW):
  0. the features: easyfsl's backbone output equals ours.
  1. every method, on identical FEATURES (both sides' backbone replaced by the identity and fed our features,
     so each check sees the method alone): probabilities equal, after the configured number of iterations,
     and after other numbers (1, 5) too for the iterative ones, also with a fine-tuning learning rate that
     moves the prototypes a long way (TIM, transductive fine-tuning). Stated transforms: BD-CSPN's probabilities
     are softmax(T * cosine) with T = ``temperature`` (easyfsl: T = 1; checked at T = 1 exactly and at T = 10
     against softmax(10 * easyfsl's scores)); PT-MAP's are the transport plan's rows divided by their sums
     (easyfsl: the plan itself), with ``unit_features`` off (easyfsl has no unit normalisation; the features
     are scaled by one constant so that its exp(-lambda d^2) does not underflow to 0, identical for both).
  2. TIM and transductive fine-tuning: the loss and the prototypes' gradient of the first fine-tuning step
     (easyfsl's, recorded from its own ``forward``) against our ``tim_loss`` / ``finetuning_loss``.
  3. PT-MAP's and BD-CSPN's / LaplacianShot's refined prototypes equal easyfsl's (left on its classifier).
  4. held-out accuracy of both on the timed episodes (reported).

Timing: prediction per episode from images (backbone included, as a user runs it) and from features (the
method alone), interleaved rounds, process CPU time on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sys
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

import common
from engine.algorithms.bd_cspn import BDCSPNConfig
from engine.algorithms.laplacianshot import LaplacianShotConfig
from engine.algorithms.pt_map import PTMAPConfig
from engine.algorithms.tim import TIMConfig, tim_loss
from engine.algorithms.transductive import one_hot
from engine.algorithms.transductive_finetuning import TransductiveFinetuningConfig, finetuning_loss

N_WAY, N_QUERY = 5, 15
TOLERANCE = 1e-5
TARGET = 1.0


class Scaled(nn.Module):
    """``module``'s output times a constant (PT-MAP's inputs, identical for both sides)."""

    def __init__(self, module: nn.Module, scale: float) -> None:
        super().__init__()
        self.module, self.scale = module, scale

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x) * self.scale


def peer_kwargs(config: Any) -> dict[str, Any]:
    """easyfsl's constructor arguments from our config."""
    names = {"tim": ("fine_tuning_steps", "fine_tuning_lr", "cross_entropy_weight", "marginal_entropy_weight",
                     "conditional_entropy_weight", "temperature"),
             "pt_map": ("fine_tuning_steps", "fine_tuning_lr", "lambda_regularization", "power_factor"),
             "laplacianshot": ("inference_steps", "knn", "lambda_regularization"),
             "bd_cspn": (), "transductive_finetuning": ("fine_tuning_steps", "fine_tuning_lr", "temperature")}
    return {name: getattr(config, name) for name in names[config.name]}


PEER_CLASSES = {"tim": "TIM", "pt_map": "PTMAP", "laplacianshot": "LaplacianShot", "bd_cspn": "BDCSPN",
                "transductive_finetuning": "TransductiveFinetuning"}


def make_peer(methods: Any, config: Any, backbone: nn.Module | None, mean: Tensor | None, *,
              use_softmax: bool = True) -> Any:
    extra: dict[str, Any] = {}
    if getattr(config, "cl2n", False):
        extra = {"feature_centering": mean, "feature_normalization": 2}
    peer = getattr(methods, PEER_CLASSES[config.name])(backbone, use_softmax=use_softmax, **extra,
                                                       **peer_kwargs(config))
    return peer.eval()


def peer_predict(peer: Any, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
    with torch.no_grad():
        peer.process_support_set(support_x, support_y)
        return peer(query_x)


def ours_with(algorithm: Any, config: Any, backbone: nn.Module | None = None) -> Any:
    """A copy of our pre-trained algorithm with ``config`` (same class) and optionally another backbone."""
    twin = copy.copy(algorithm)
    twin.config = config
    if backbone is not None:
        twin.backbone = backbone
    return twin


def ours_predict(algorithm: Any, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
    with torch.no_grad():
        return algorithm.adapt(support_x, support_y).predict(query_x)


@contextlib.contextmanager
def recorded_backward() -> Iterator[list[Tensor]]:
    """Record every tensor ``backward`` is called on (easyfsl's fine-tuning losses) inside the block."""
    losses: list[Tensor] = []
    original = torch.Tensor.backward

    def spy(self: Tensor, *args: Any, **kwargs: Any) -> Any:
        losses.append(self.detach().clone())
        return original(self, *args, **kwargs)

    torch.Tensor.backward = spy  # type: ignore[method-assign]
    try:
        yield losses
    finally:
        torch.Tensor.backward = original  # type: ignore[method-assign]


# -- the checks -----------------------------------------------------------------------------------------------
def check_probabilities(label: str, ours: Tensor, peer: Tensor) -> None:
    print(common.check_line(f"{label}, max |ours - easyfsl|", common.max_abs_diff(ours, peer), TOLERANCE))


def check_method(name: str, algorithm: Any, methods: Any, features: tuple[Tensor, Tensor, Tensor, Tensor],
                 mean: Tensor) -> None:
    """Checks 1-3 of one method on identical features [S, D], [S], [Q, D] (and the query labels)."""
    support, support_y, query, _ = features
    identity = nn.Identity()
    config = algorithm.config
    variants: list[tuple[str, Any]] = [("configured", config)]
    steps_field = {"tim": "fine_tuning_steps", "pt_map": "fine_tuning_steps", "laplacianshot": "inference_steps",
                   "transductive_finetuning": "fine_tuning_steps"}.get(name)
    if steps_field:
        variants += [(f"{steps_field}={n}", dataclasses.replace(config, **{steps_field: n})) for n in (1, 5)]
    if name in ("tim", "transductive_finetuning"):
        variants.append(("fine_tuning_lr=1e-2", dataclasses.replace(config, fine_tuning_lr=1e-2)))
    if name == "pt_map":
        scale = 1.0 / float(torch.cat([support, query]).relu().sum(1).mean())
        support, query = support * scale, query * scale
        variants = [(label, dataclasses.replace(variant, unit_features=False)) for label, variant in variants]
    if name == "bd_cspn":
        variants = [("temperature=1", dataclasses.replace(config, temperature=1.0)), ("temperature=10", config)]
    for label, variant in variants:
        ours = ours_predict(ours_with(algorithm, variant, identity), support, support_y, query)
        peer = make_peer(methods, variant, None, mean, use_softmax=name != "bd_cspn" or variant.temperature == 1)
        peer_out = peer_predict(peer, support, support_y, query)
        if name == "pt_map":
            peer_out = peer_out / peer_out.sum(1, keepdim=True)
        if name == "bd_cspn" and variant.temperature != 1:
            peer_out = (variant.temperature * peer_out).softmax(1)
        check_probabilities(f"{name} probabilities ({label})", ours, peer_out)
        if name in ("pt_map", "bd_cspn", "laplacianshot") and label in ("configured", "temperature=10"):
            check_prototypes(name, ours_with(algorithm, variant, identity), peer, support, support_y, query)
    if name in ("tim", "transductive_finetuning"):
        check_loss_and_gradient(name, algorithm, methods, support, support_y, query, mean)


def check_prototypes(name: str, algorithm: Any, peer: Any, support: Tensor, support_y: Tensor,
                     query: Tensor) -> None:
    predictor = algorithm.adapt(support, support_y)
    query_features = predictor.features(query)
    ours = predictor.refined_prototypes(query_features) if name == "pt_map" else predictor.rectified(query_features) \
        if name == "bd_cspn" else _laplacian_prototypes(predictor, query_features)
    print(common.check_line(f"{name} refined prototypes, max |ours - easyfsl|",
                            common.max_abs_diff(ours, peer.prototypes), TOLERANCE))


def _laplacian_prototypes(predictor: Any, query_features: Tensor) -> Tensor:
    from engine.algorithms.bd_cspn import rectified_prototypes

    return rectified_prototypes(predictor.support_features, predictor.support_labels, query_features,
                                predictor.prototypes())


def check_loss_and_gradient(name: str, algorithm: Any, methods: Any, support: Tensor, support_y: Tensor,
                            query: Tensor, mean: Tensor) -> None:
    """The first fine-tuning step: easyfsl's loss (recorded) and prototype gradient against ours."""
    config = dataclasses.replace(algorithm.config, fine_tuning_steps=1)
    peer = make_peer(methods, config, None, mean)
    with recorded_backward() as losses:
        peer_predict(peer, support, support_y, query)
    peer_gradient = peer.prototypes.grad
    predictor = ours_with(algorithm, config, nn.Identity()).adapt(support, support_y)
    query_features = predictor.features(query)
    prototypes = predictor.prototypes().clone().requires_grad_(True)
    with torch.enable_grad():
        if name == "tim":
            unit_support, unit_query = (torch.nn.functional.normalize(t, dim=1)
                                        for t in (predictor.support_features, query_features))
            loss = tim_loss(prototypes, unit_support, one_hot(support_y, N_WAY, unit_support.dtype), unit_query,
                            config)
        else:
            loss = finetuning_loss(prototypes, predictor.support_features, support_y, query_features,
                                   config.temperature)
        (gradient,) = torch.autograd.grad(loss, [prototypes])
    print(common.check_line(f"{name} fine-tuning loss (step 1), |ours - easyfsl|",
                            abs(loss.item() - losses[0].item()), TOLERANCE))
    print(common.check_line(f"{name} prototype gradient (step 1), ||ours - easyfsl|| / ||easyfsl||",
                            common.max_rel_diff([gradient], [peer_gradient]), 1e-5))


# -- main -----------------------------------------------------------------------------------------------------
def pretrain(data: Any, device: torch.device, steps: int, seed: int) -> Any:
    """Our TIM (any of the five: the same pre-training) after ``steps`` seeded pre-training steps."""
    config = common.run_config(TIMConfig(batch_size=64), n_way=N_WAY, n_shot=1, n_query=N_QUERY, meta_batch=1,
                               device=device, seed=seed)
    config.train.precision = "fp32"
    algorithm = common.build_ours(config, device, seed, n_train_classes=len(data.class_ids("train")))
    sampler = data.class_batches(64, seed)
    for _ in range(steps):
        algorithm.meta_train_step(sampler.sample())
    algorithm.train(False)
    return algorithm


def configured(pretrained: Any, config: Any) -> Any:
    """Our algorithm for ``config`` with the pre-trained weights (same modules for all five)."""
    from engine.algorithms.registry import algorithm_class

    algorithm = algorithm_class(config.name)(config, pretrained.backbone, n_way=N_WAY,
                                             n_train_classes=pretrained.n_train_classes)
    algorithm.load_state_dict(pretrained.state_dict())
    algorithm.to(pretrained.device)
    algorithm.channels_last = pretrained.channels_last
    algorithm.train(False)
    return algorithm


def accuracy(predict: Callable[[Any], Tensor], tasks: list) -> float:
    correct = [(predict(task).argmax(1) == task.query_y).float().mean().item() for task in tasks]
    return sum(correct) / len(correct)


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=20, warmup=2)
    parser.add_argument("--n-shot", type=int, default=1)
    parser.add_argument("--pretrain-steps", type=int, default=100)
    parser.add_argument("--methods", default="tim,pt_map,laplacianshot,bd_cspn,transductive_finetuning")
    args = parser.parse_args()
    device = common.setup(args)
    methods = common.peer_or_exit("easyfsl.methods")
    data = common.glyph_data(args.seed)
    with common.strict_fp32():
        pretrained = pretrain(data, device, args.pretrain_steps, args.seed)
    tasks = common.glyph_tasks(data, "test", args.warmup + args.steps, n_way=N_WAY, n_shot=args.n_shot,
                               n_query=N_QUERY, seed=args.seed + 1, device=device)
    configs = {"tim": TIMConfig(), "pt_map": PTMAPConfig(), "laplacianshot": LaplacianShotConfig(),
               "bd_cspn": BDCSPNConfig(), "transductive_finetuning": TransductiveFinetuningConfig()}
    mean = pretrained.feature_mean.mean.detach().clone()
    peer_backbone = common.copy_in_order(pretrained.backbone, common.textbook_conv4()).to(device).eval()

    print(f"\n== maths checks (identical weights and inputs; 5-way {args.n_shot}-shot {N_QUERY}-query) ==")
    task = tasks[0]
    with common.strict_fp32():
        ours_backbone = common.nchw_copy(pretrained).backbone.eval()
        with torch.no_grad():
            support, query = ours_backbone(task.support_x), ours_backbone(task.query_x)
            print(common.check_line("backbone features, max |ours - easyfsl|",
                                    common.max_abs_diff(support, peer_backbone(task.support_x)), TOLERANCE))
        for name in args.methods.split(","):
            check_method(name, configured(pretrained, configs[name]), methods,
                         (support, task.support_y, query, task.query_y), mean)

    print(f"\n== prediction time per episode: {args.warmup} warm-up + {args.steps} timed, {args.rounds} rounds ==")
    rows, ratios = [], []
    for name in args.methods.split(","):
        config = configs[name]
        if name == "pt_map":  # easyfsl's plan underflows on unscaled features: both get the same scaled inputs
            config = dataclasses.replace(config, unit_features=False)
            scale = 1.0 / float(ours_predict_features_scale(pretrained, tasks[0]))
            ours = configured(pretrained, config)
            ours.backbone = Scaled(ours.backbone, scale)
            peer = make_peer(methods, config, Scaled(peer_backbone, scale), mean)
        else:
            ours = configured(pretrained, config)
            peer = make_peer(methods, config, peer_backbone, mean)
        timings = time_pair(peer, ours, [(t.support_x, t.support_y, t.query_x) for t in tasks], args, device)
        features = [tuple(embed(ours, x) if x.ndim == 4 else x for x in (t.support_x, t.support_y, t.query_x))
                    for t in tasks]
        method_timings = time_pair(make_peer(methods, config, None, mean), ours_with(ours, config, nn.Identity()),
                                   features, args, device)
        held_out = tasks[args.warmup:]
        peer_acc = accuracy(lambda t, p=peer: peer_predict(p, t.support_x, t.support_y, t.query_x), held_out)
        ours_acc = accuracy(lambda t, o=ours: ours_predict(o, t.support_x, t.support_y, t.query_x), held_out)
        rows.append((name, timings["easyfsl"].rate, timings["ours"].rate, method_timings["easyfsl"].rate,
                     method_timings["ours"].rate, peer_acc, ours_acc,
                     max(t.spread for t in (*timings.values(), *method_timings.values()))))
        ratios.append(common.ratio_line(f"{name} episodes/s (prediction from images)", "easyfsl",
                                        timings["easyfsl"].rate, timings["ours"].rate, TARGET))
        ratios.append(common.ratio_line(f"{name} episodes/s (the method alone, from features)", "easyfsl",
                                        method_timings["easyfsl"].rate, method_timings["ours"].rate, TARGET))
    common.print_table(rows, ("method", "easyfsl ep/s", "ours ep/s", "easyfsl method ep/s", "ours method ep/s",
                              "easyfsl acc", "ours acc", "round spread"))
    print()
    for line in ratios:
        print(line)


def time_pair(peer: Any, ours: Any, inputs: list[tuple[Tensor, Tensor, Tensor]], args: Any,
              device: torch.device) -> dict[str, Any]:
    """Interleaved prediction timings of easyfsl and ours on the same (support, labels, query) inputs."""
    contenders = {"easyfsl": lambda i: peer_predict(peer, *inputs[i % len(inputs)]),
                  "ours": lambda i: ours_predict(ours, *inputs[i % len(inputs)])}
    return common.time_interleaved(contenders, steps=args.steps, warmup=args.warmup, rounds=args.rounds,
                                   items_per_step=1, device=device)


def embed(algorithm: Any, images: Tensor) -> Tensor:
    """Our eval-mode backbone's features of ``images`` (the inputs of the method-alone timing)."""
    with torch.no_grad():
        algorithm.train(False)
        return algorithm.backbone(images)


def ours_predict_features_scale(pretrained: Any, task: Any) -> Tensor:
    """The mean relu-sum of the pre-trained features of one episode (PT-MAP's input scale)."""
    with torch.no_grad():
        features = pretrained.backbone(torch.cat([task.support_x, task.query_x]))
    return features.relu().sum(1).mean()


if __name__ == "__main__":
    main()
    sys.exit(0)
