"""The algorithm registry: config name -> implementation, and the one builder the trainer uses."""

from __future__ import annotations

from engine.algorithms.base import Algorithm
from engine.algorithms.baseline import Baseline, BaselinePlusPlus
from engine.algorithms.maml import MAML
from engine.algorithms.matching import MatchingNetworks
from engine.algorithms.protonet import ProtoNet
from engine.algorithms.reptile import Reptile
from engine.algorithms.simpleshot import SimpleShot
from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.errors import ConfigError
from engine.models.registry import build_backbone

ALGORITHMS: dict[str, type[Algorithm]] = {
    "protonet": ProtoNet,
    "maml": MAML,
    "fomaml": MAML,
    "reptile": Reptile,
    "matching": MatchingNetworks,
    "baseline": Baseline,
    "baseline++": BaselinePlusPlus,
    "simpleshot": SimpleShot,
}
assert set(ALGORITHMS) == set(ALGORITHM_CONFIGS), "every configured algorithm needs an implementation"


def build_algorithm(config: RunConfig, n_train_classes: int) -> Algorithm:
    """A fresh algorithm for ``config`` with its backbone (and ``model.weights_path`` loaded if set)."""
    name = config.algorithm.name
    if name not in ALGORITHMS:
        raise ConfigError(f"algorithm.name: unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    if n_train_classes < 1:
        raise ConfigError(f"{name} needs at least one training class (got {n_train_classes})")
    backbone = build_backbone(config.model, in_channels=config.data.channels, image_size=config.data.image_size)
    return ALGORITHMS[name](config.algorithm, backbone, n_way=config.task.n_way, n_train_classes=n_train_classes)
