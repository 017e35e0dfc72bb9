"""The algorithm registry: config name -> implementation, the only list of algorithms.

Adding an algorithm means one new module (its :class:`~engine.algorithms.base.Algorithm` subclass,
with its capabilities declared as class attributes, and its :class:`~engine.config.AlgorithmConfig`)
plus one :func:`register` call below. The CLI, the config form, the race, the inspector, the
scrubber and the adapt panel then find it through :data:`ALGORITHMS` and :func:`algorithm_class`.
"""

from __future__ import annotations

from engine.algorithms.base import Algorithm
from engine.algorithms.bd_cspn import BDCSPN, BDCSPNConfig
from engine.algorithms.baseline import Baseline, BaselinePlusPlus
from engine.algorithms.boil import BOIL, BOILConfig
from engine.algorithms.feat import FEAT, FEATConfig
from engine.algorithms.maml import MAML, FirstOrderMAML
from engine.algorithms.laplacianshot import LaplacianShot, LaplacianShotConfig
from engine.algorithms.matching import MatchingNetworks
from engine.algorithms.meta_baseline import MetaBaseline, MetaBaselineConfig
from engine.algorithms.meta_sgd import MetaSGD, MetaSGDConfig
from engine.algorithms.pmf import PMF, PMFConfig
from engine.algorithms.protonet import ProtoNet
from engine.algorithms.pt_map import PTMAP, PTMAPConfig
from engine.algorithms.r2d2 import R2D2, R2D2Config
from engine.algorithms.relation import RelationConfig, RelationNetworks
from engine.algorithms.reptile import Reptile
from engine.algorithms.simpleshot import SimpleShot
from engine.algorithms.tim import TIM, TIMConfig
from engine.algorithms.transductive_finetuning import TransductiveFinetuning, TransductiveFinetuningConfig
from engine.config import (ALGORITHM_CONFIGS, AlgorithmConfig, BaselineConfig, BaselinePlusPlusConfig, FOMAMLConfig,
                           MAMLConfig, MatchingConfig, ProtoNetConfig, ReptileConfig, RunConfig, SimpleShotConfig)
from engine.errors import ConfigError
from engine.models.registry import build_backbone
from engine.models.view_averaging import attach_test_views

ALGORITHMS: dict[str, type[Algorithm]] = {}
"""Registered name -> implementation, in the order the views list them."""


def register(config_class: type[AlgorithmConfig], algorithm_class: type[Algorithm]) -> None:
    """Make ``algorithm_class`` trainable as ``config_class.name`` (its hyperparameters: ``config_class``)."""
    name = config_class.name
    if not name:
        raise ValueError(f"{config_class.__name__} needs a name")
    ALGORITHM_CONFIGS[name] = config_class
    ALGORITHMS[name] = algorithm_class


def unregister(name: str) -> None:
    """Remove a registered algorithm (tests that register a throwaway one)."""
    ALGORITHMS.pop(name, None)
    ALGORITHM_CONFIGS.pop(name, None)


for _config, _algorithm in ((ProtoNetConfig, ProtoNet), (MAMLConfig, MAML), (FOMAMLConfig, FirstOrderMAML),
                            (ReptileConfig, Reptile), (MatchingConfig, MatchingNetworks), (BaselineConfig, Baseline),
                            (BaselinePlusPlusConfig, BaselinePlusPlus), (SimpleShotConfig, SimpleShot)):
    register(_config, _algorithm)
register(RelationConfig, RelationNetworks)
register(FEATConfig, FEAT)
for _config, _algorithm in ((TIMConfig, TIM), (PTMAPConfig, PTMAP), (LaplacianShotConfig, LaplacianShot),
                            (BDCSPNConfig, BDCSPN), (TransductiveFinetuningConfig, TransductiveFinetuning)):
    register(_config, _algorithm)  # the transductive methods (engine/algorithms/transductive.py)
for _config, _algorithm in ((MetaSGDConfig, MetaSGD), (R2D2Config, R2D2), (MetaBaselineConfig, MetaBaseline),
                            (BOILConfig, BOIL)):
    register(_config, _algorithm)  # learn2learn's Meta-SGD and R2D2, LibFewShot's Meta-Baseline and BOIL
register(PMFConfig, PMF)  # P>M>F: pre-trained backbone, ProtoNet meta-training, support fine-tuning
assert set(ALGORITHMS) == set(ALGORITHM_CONFIGS), "every configured algorithm needs an implementation"


def algorithm_class(name: str) -> type[Algorithm]:
    """The implementation registered as ``name``; ConfigError naming algorithm.name otherwise."""
    if name not in ALGORITHMS:
        raise ConfigError(f"algorithm.name: unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def display_title(name: str) -> str:
    """The compact display name of the registered algorithm ``name`` ("ProtoNet", "FOMAML"); ``name``
    itself when it is not registered (an old run of a removed algorithm)."""
    if name not in ALGORITHMS:
        return name
    return ALGORITHMS[name].display_title(ALGORITHM_CONFIGS.get(name))


def build_algorithm(config: RunConfig, n_train_classes: int) -> Algorithm:
    """A fresh algorithm for ``config`` with its backbone (and ``model.weights_path`` loaded if set)."""
    name = config.algorithm.name
    cls = algorithm_class(name)
    if n_train_classes < 1:
        raise ConfigError(f"{name} needs at least one training class (got {n_train_classes})")
    if config.model.test_views > 1 and config.model.backbone == "mlp":
        raise ConfigError("model.test_views: test-time views warp images; the mlp backbone takes numbers (use 1)")
    backbone = build_backbone(config.model, in_channels=config.data.channels, image_size=config.data.image_size)
    algorithm = cls(config.algorithm, backbone, n_way=config.task.n_way, n_train_classes=n_train_classes)
    attach_test_views(algorithm.backbone, config.model.test_views)  # what the algorithm embeds through
    return algorithm
