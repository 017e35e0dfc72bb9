"""BOIL (Oh et al. 2021, "Body Only update in Inner Loop"): MAML whose inner loop adapts the body only.

The mirror of ANIL: in the inner loop the backbone (body) takes ``inner_steps`` SGD steps at
``inner_lr`` on the support loss while the linear head stays at its meta-learned value; the outer
loop trains both on the query loss after adaptation (second order through the body's steps, or
first order). Adaptation: ``test_inner_steps`` steps at ``test_inner_lr`` on the body only.
Everything else is MAML's machinery (:mod:`engine.algorithms.maml`): this module only says which
parameters the inner loop moves, through :meth:`MAML.inner_rates` / :meth:`MAML.test_rates`
(a rate per body parameter; the head has none, so it stays fixed).

The head is never adapted, so a support set with more classes than ``n_way`` gets MAML's head rule
(:func:`~engine.algorithms.functional.resized_head`): the extra classes share the mean row of the
trained head and only the body's features can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from engine.algorithms.functional import InnerRates
from engine.algorithms.maml import MAML
from engine.config import AlgorithmConfig, param

BODY_PREFIX = "backbone."


@dataclass
class BOILConfig(AlgorithmConfig):
    name: ClassVar[str] = "boil"
    title: ClassVar[str] = "BOIL"
    summary: ClassVar[str] = ("MAML that adapts only the feature extractor in the inner loop and keeps the "
                              "classifier head fixed there (the mirror of ANIL). Oh et al. 2021.")
    train_fields: ClassVar[tuple[str, ...]] = ("task_batching", "vmap_chunk")
    anil: ClassVar[bool] = False
    """BOIL adapts the body, never the head only (MAML's ANIL switch does not apply)."""

    inner_lr: float = param(0.4, "Sets the learning rate of the body's inner loop during training.",
                            label="Inner learning rate", min=0.0, max=100.0, exclusive_min=True)
    inner_steps: int = param(1, "Sets the gradient steps of the inner loop during training.", label="Inner steps",
                             min=1, max=100)
    test_inner_lr: float = param(0.4, "Sets the learning rate of the body's inner loop at test and adaptation "
                                 "time.", label="Inner learning rate at test", min=0.0, max=100.0,
                                 exclusive_min=True)
    test_inner_steps: int = param(3, "Sets the gradient steps of the inner loop at test and adaptation time.",
                                  label="Inner steps at test", min=0, max=1000)
    first_order: bool = param(False, "Drops the second-order terms of the meta-gradient: cheaper, usually about "
                              "as accurate.", label="First-order")


class BOIL(MAML):
    """MAML over ``backbone`` + ``Linear(out_features, n_way)``; the inner loop moves ``backbone.*`` only."""
    short_title = "BOIL"
    kind = "optimisation"
    paper = "Oh et al. 2021, BOIL: Towards Representation Change for Few-shot Learning"
    inner_loop = True
    meta_gradient_memory = True
    recipe: ClassVar[dict[str, Any]] = {"algorithm.inner_lr": 0.4, "algorithm.test_inner_lr": 0.4}

    def __init__(self, config: BOILConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)  # type: ignore[arg-type]

    def body_names(self) -> list[str]:
        """The names of the body's parameters in ``self.model`` (those the inner loop moves)."""
        return [name for name, _ in self.model.named_parameters() if name.startswith(BODY_PREFIX)]

    def inner_rates(self) -> InnerRates:
        return dict.fromkeys(self.body_names(), float(self.config.inner_lr))

    def test_rates(self, n_classes: int) -> InnerRates:
        return dict.fromkeys(self.body_names(), float(self.config.test_inner_lr))
