"""The five transductive methods against easyfsl 1.5.0 on identical features (a bench-only peer: skipped without it).

Both sides get the identity as backbone and the same support and query features, so each check sees the method's
maths alone (``bench/bench_transductive_vs_easyfsl.py`` does the same on a pre-trained Conv-4 and times both).
Stated transforms: BD-CSPN at temperature 1 is easyfsl's softmax(cosine); PT-MAP's rows are easyfsl's plan divided
by its row sums, with ``unit_features`` off (easyfsl does not normalise after the power transform).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from engine.algorithms.bd_cspn import BDCSPNConfig
from engine.algorithms.laplacianshot import LaplacianShotConfig
from engine.algorithms.pt_map import PTMAPConfig
from engine.algorithms.registry import algorithm_class
from engine.algorithms.tim import TIMConfig
from engine.algorithms.transductive_finetuning import TransductiveFinetuningConfig

try:
    from easyfsl import methods
except ImportError as error:
    pytest.skip(f"easyfsl (a bench-only peer) is not installed ({error}); bench/install_peers.sh installs it",
                allow_module_level=True)

torch.set_num_threads(1)
N_WAY, N_SHOT, N_QUERY, DIMENSION = 5, 2, 6, 16
PEERS = {"tim": ("TIM", ("fine_tuning_steps", "fine_tuning_lr", "cross_entropy_weight", "marginal_entropy_weight",
                         "conditional_entropy_weight", "temperature")),
         "pt_map": ("PTMAP", ("fine_tuning_steps", "fine_tuning_lr", "lambda_regularization", "power_factor")),
         "laplacianshot": ("LaplacianShot", ("inference_steps", "knn", "lambda_regularization")),
         "bd_cspn": ("BDCSPN", ()),
         "transductive_finetuning": ("TransductiveFinetuning", ("fine_tuning_steps", "fine_tuning_lr", "temperature"))}
CONFIGS = {"tim": TIMConfig(fine_tuning_lr=1e-2), "pt_map": PTMAPConfig(unit_features=False),
           "laplacianshot": LaplacianShotConfig(cl2n=False), "bd_cspn": BDCSPNConfig(temperature=1.0),
           "transductive_finetuning": TransductiveFinetuningConfig(fine_tuning_lr=1e-2)}


def features() -> tuple[Tensor, Tensor, Tensor]:
    """Non-negative [S, D] support features (as after a ReLU), their labels, [Q, D] query features."""
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(N_WAY, DIMENSION, generator=g)
    support_y = torch.arange(N_WAY).repeat_interleave(N_SHOT)
    query_y = torch.arange(N_WAY).repeat_interleave(N_QUERY)
    support = (centres[support_y] + 0.3 * torch.rand(len(support_y), DIMENSION, generator=g)) / 4
    query = (centres[query_y] + 0.3 * torch.rand(len(query_y), DIMENSION, generator=g)) / 4
    return support, support_y, query


def ours(config: Any) -> Tensor:
    support, support_y, query = features()
    identity = nn.Identity()
    identity.out_features = DIMENSION
    algorithm = algorithm_class(config.name)(config, identity, n_way=N_WAY, n_train_classes=3)
    return algorithm.adapt(support, support_y).predict(query)


def peer(config: Any) -> Tensor:
    support, support_y, query = features()
    class_name, fields = PEERS[config.name]
    classifier = getattr(methods, class_name)(None, use_softmax=True, **{f: getattr(config, f) for f in fields})
    with torch.no_grad():
        classifier.process_support_set(support, support_y)
        return classifier(query)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("iterations", [1, 5, None])
def test_probabilities_equal_easyfsl_s_after_the_same_iterations(name: str, iterations: int | None) -> None:
    config = CONFIGS[name]
    steps_field = {"laplacianshot": "inference_steps", "bd_cspn": None}.get(name, "fine_tuning_steps")
    if iterations is not None and steps_field is not None:
        config = dataclasses.replace(config, **{steps_field: iterations})
    expected = peer(config)
    if name == "pt_map":
        expected = expected / expected.sum(1, keepdim=True)
    got = ours(config)
    assert torch.isfinite(got).all() and got.shape == (N_WAY * N_QUERY, N_WAY)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), f"{name}: max |diff| {(got - expected).abs().max():.3g}"


def test_the_fine_tuning_moves_the_prototypes_so_the_comparison_means_something() -> None:
    for name in ("tim", "transductive_finetuning"):
        moved, still = ours(CONFIGS[name]), ours(dataclasses.replace(CONFIGS[name], fine_tuning_steps=0))
        assert (moved - still).abs().max() > 1e-3, name
