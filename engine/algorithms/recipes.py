"""Recipes for photos: whole pipelines the algorithm form offers in one choice (dotted config overrides).

A recipe sets the algorithm, the backbone and its pre-trained weights, the training, and colour images
prepared as the weights' own preprocessing says (their crop size, and the share of the resized image the
centre crop keeps, read from torchvision's weights metadata when the recipe is applied); the user's data
folder and everything else stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.algorithms.registry import algorithm_class
from engine.config import RunConfig
from engine.errors import ConfigError
from engine.models.torchvision_backbones import HUB_WEIGHTS, weights_input


@dataclass(frozen=True)
class Recipe:
    """``overrides``: dotted config fields (``"model.backbone"``) -> values; ``algorithm.name`` first."""

    key: str
    title: str
    summary: str
    overrides: dict[str, Any] = field(default_factory=dict)


RECIPES: tuple[Recipe, ...] = (
    Recipe("frozen-imagenet", "Frozen ImageNet features (ResNet-18, ProtoNet)",
           "torchvision's ImageNet ResNet-18 from the hub cache, features frozen (one training step that changes "
           "nothing), prototypes of the support set: the quickest start for photos.",
           {"algorithm.name": "pmf", "algorithm.meta_train": False, "algorithm.finetune_steps": 0,
            "model.backbone": "resnet18", "model.weights_path": HUB_WEIGHTS, "train.steps": 1,
            "train.val_every": 0}),
    Recipe("pmf", "P>M>F: pre-train, meta-train, fine-tune (ResNet-50)",
           "Hu et al. 2022: torchvision's ImageNet ResNet-50, meta-trained as a ProtoNet at a small rate (Adam "
           "1e-5, cosine), then fine-tuned on each support set (20 SGD steps) before classifying.",
           {"algorithm.name": "pmf", "algorithm.lr": 1e-5, "algorithm.meta_train": True,
            "algorithm.finetune_steps": 20, "algorithm.finetune_lr": 1e-3, "model.backbone": "resnet50",
            "model.weights_path": HUB_WEIGHTS, "train.steps": 2000, "train.lr_schedule": "cosine"}),
)
"""The recipes, in the order the algorithm form lists them."""


def recipe(key: str) -> Recipe:
    for candidate in RECIPES:
        if candidate.key == key:
            return candidate
    raise ConfigError(f"recipe: unknown recipe {key!r}; choose one of {', '.join(r.key for r in RECIPES)}")


def apply_recipe(config: RunConfig, key: str) -> RunConfig:
    """A new config: ``config`` with recipe ``key``'s overrides (the algorithm's other fields at defaults)."""
    chosen = recipe(key)
    raw = config.to_dict()
    overrides = {**weights_input(chosen.overrides["model.backbone"]), **chosen.overrides}
    name = overrides.pop("algorithm.name", config.algorithm.name)
    algorithm_class(name)  # registers every algorithm's config; ConfigError naming algorithm.name
    raw["algorithm"] = {"name": name}
    for dotted, value in overrides.items():
        section, _, name = dotted.partition(".")
        raw[section][name] = value
    try:
        return RunConfig.from_dict(raw)
    except ConfigError as error:
        raise ConfigError(f"recipe {key!r}: {error}") from None
