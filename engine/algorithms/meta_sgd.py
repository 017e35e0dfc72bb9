"""Meta-SGD (Li et al. 2017): MAML whose inner learning rates are learned, one per parameter element.

The inner step is ``theta' = theta - alpha * grad`` with ``alpha`` a tensor of ``theta``'s shape
(elementwise product), meta-learned with ``theta`` by the outer Adam on the query loss (the rates'
meta-gradient exists for first- and second-order alike: the step is linear in ``alpha``). Adaptation
uses the learned rates for ``test_inner_steps`` steps. Everything else is MAML's machinery
(:mod:`engine.algorithms.maml`: functional inner loop, task loop or vmap, the inner-loop scrubber's
``iter_adapt``): this module only supplies the rates through :meth:`MAML.inner_rates` /
:meth:`MAML.test_rates`.

As learn2learn 0.2.0's ``MetaSGD(model, lr=inner_lr)``: every rate starts at ``inner_lr``
(``bench/bench_metasgd_vs_learn2learn.py`` checks logits, loss and meta-gradients, the rates' included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from engine.algorithms.functional import InnerRates, resized_head
from engine.algorithms.maml import MAML
from engine.config import AlgorithmConfig, param
from engine.errors import CheckpointError, ConfigError


@dataclass
class MetaSGDConfig(AlgorithmConfig):
    name: ClassVar[str] = "meta_sgd"
    title: ClassVar[str] = "Meta-SGD"
    summary: ClassVar[str] = ("MAML that also learns the inner loop's learning rate of every weight (its size and "
                              "direction). Li et al. 2017.")
    train_fields: ClassVar[tuple[str, ...]] = ("task_batching", "vmap_chunk")
    anil: ClassVar[bool] = False
    """Meta-SGD adapts every weight (MAML's ANIL switch does not apply)."""

    inner_lr: float = param(0.1, "Sets the value every learned inner learning rate starts from (the paper draws "
                            "them from 0.005..0.1; learn2learn starts them all at one value, as here).",
                            label="Initial inner learning rate", min=0.0, max=100.0, exclusive_min=True)
    inner_steps: int = param(1, "Sets the gradient steps of the inner loop during training.", label="Inner steps",
                             min=1, max=100)
    test_inner_steps: int = param(1, "Sets the inner-loop steps at test and adaptation time (with the learned "
                                  "rates; they were learned for the training steps).", label="Inner steps at test",
                                  min=0, max=1000)
    first_order: bool = param(False, "Drops the second-order terms of the meta-gradient: cheaper; the rates "
                              "are still learned.", label="First-order")


def rate_key(name: str) -> str:
    """A parameter name as a key of :class:`LearnedRates` (module keys cannot contain dots)."""
    return name.replace(".", "-")


class LearnedRates(nn.Module):
    """One learned inner learning rate per element of each parameter of ``model``, all starting at ``initial``.

    Saved in checkpoints as the network ``inner_lrs`` (keys: the parameter names with ``-`` for ``.``).
    """

    def __init__(self, model: nn.Module, initial: float) -> None:
        super().__init__()
        self.names = [name for name, _ in model.named_parameters()]
        self.rates = nn.ParameterDict({rate_key(name): nn.Parameter(torch.full_like(p, float(initial)))
                                       for name, p in model.named_parameters()})

    def by_name(self) -> dict[str, Tensor]:
        """Parameter name of the model -> its rate tensor (the live parameters, differentiable)."""
        return {name: self.rates[rate_key(name)] for name in self.names}

    def check_finite(self) -> None:
        """CheckpointError naming the first rate that holds NaN or infinite values."""
        for name in self.names:
            if not bool(torch.isfinite(self.rates[rate_key(name)]).all()):
                raise CheckpointError(f"Meta-SGD: the learned inner learning rate of {name} (weight "
                                      f"inner_lrs.rates.{rate_key(name)}) contains NaN or infinite values")


class MetaSGD(MAML):
    """MAML over ``backbone`` + ``Linear(out_features, n_way)`` with learned per-element inner rates.

    Adaptation to ``c != n_way`` classes resizes the head's rates with MAML's head rule
    (:func:`~engine.algorithms.functional.resized_head`), like the head itself.
    """
    short_title = "Meta-SGD"
    kind = "optimisation"
    paper = "Li et al. 2017, Meta-SGD: Learning to Learn Quickly for Few-Shot Learning"
    inner_loop = True
    meta_gradient_memory = True
    recipe: ClassVar[dict[str, Any]] = {"algorithm.inner_lr": 0.1, "algorithm.inner_steps": 1,
                                        "algorithm.test_inner_steps": 1}

    def __init__(self, config: MetaSGDConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)  # type: ignore[arg-type]
        if not math.isfinite(config.inner_lr):
            raise ConfigError(f"algorithm.inner_lr must be a finite number (got {config.inner_lr})")
        self.rates = LearnedRates(self.model, config.inner_lr)
        self.optimizer = torch.optim.Adam([*self.model.parameters(), *self.rates.parameters()], lr=config.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head, "inner_lrs": self.rates}

    def inner_rates(self) -> InnerRates:
        return self.rates.by_name()

    def test_rates(self, n_classes: int) -> InnerRates:
        rates = {name: rate.detach() for name, rate in self.rates.by_name().items()}
        rates["head.weight"], rates["head.bias"] = resized_head(rates["head.weight"], rates["head.bias"], n_classes)
        return rates

    def load_state_dict(self, state: dict[str, Any], *, with_optimizers: bool = True) -> None:
        super().load_state_dict(state, with_optimizers=with_optimizers)
        self.rates.check_finite()
