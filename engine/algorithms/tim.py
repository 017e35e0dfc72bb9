"""TIM (Boudiaf et al. 2020): transductive information maximisation, as easyfsl 1.5.0's ``TIM`` (TIM-GD).

Prototypes start as the support class means and take ``fine_tuning_steps`` Adam steps (``fine_tuning_lr``)
on ``cross_entropy_weight * CE(support) - (marginal_entropy_weight * H(mean query prediction)
- conditional_entropy_weight * mean H(query prediction))``, every prediction being
softmax(``temperature`` * cosine(feature, prototype)); then the queries' probabilities are
softmax(``temperature`` * cosine) to the fine-tuned prototypes (easyfsl with ``use_softmax=True``).

The same maths as easyfsl (``bench/bench_transductive_vs_easyfsl.py`` checks it: loss equal, gradient and
probabilities within float32 round-off, ~1e-7); the features are unit-normalised once instead of in every step
and the prototypes once per step instead of twice (the same values; backward then sums the two paths' gradients
in another order), and the fine-tuned prototypes stay local to one prediction (easyfsl keeps them on the
classifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.algorithms.transductive import (
    TransductiveConfig, TransductivePredictor, TransductivePretraining, adam_fine_tuned, one_hot,
)
from engine.config import param

ENTROPY_EPSILON = 1e-12


@dataclass
class TIMConfig(TransductiveConfig):
    name: ClassVar[str] = "tim"
    title: ClassVar[str] = "TIM (transductive information maximisation)"
    summary: ClassVar[str] = ("Fine-tunes the prototypes so that predictions on the support set are right and on "
                              "the test set are confident and balanced (mutual information). Boudiaf et al. 2020.")

    fine_tuning_steps: int = param(50, "Sets the Adam steps that fine-tune the prototypes at prediction time.",
                                   label="Fine-tuning steps", min=0, max=10000)
    fine_tuning_lr: float = param(1e-4, "Sets the learning rate that fine-tunes the prototypes.",
                                  label="Fine-tuning learning rate", min=0.0, max=100.0, exclusive_min=True)
    cross_entropy_weight: float = param(1.0, "Weights the support cross-entropy in the fine-tuning loss.",
                                        label="Support cross-entropy weight", min=0.0, max=1000.0)
    marginal_entropy_weight: float = param(1.0, "Weights the entropy of the mean test prediction (balanced "
                                           "classes) in the fine-tuning loss.", label="Marginal entropy weight",
                                           min=0.0, max=1000.0)
    conditional_entropy_weight: float = param(0.1, "Weights the mean entropy of each test prediction (confident "
                                              "predictions) in the fine-tuning loss.",
                                              label="Conditional entropy weight", min=0.0, max=1000.0)
    temperature: float = param(10.0, "Multiplies the cosine similarities before the softmax.", label="Temperature",
                               min=0.0, max=1000.0, exclusive_min=True)


def cosine_logits(unit_features: Tensor, prototypes: Tensor, temperature: float) -> Tensor:
    """[N, D] unit features, [n, D] prototypes -> [N, n] temperature * cosine similarity."""
    return temperature * (unit_features @ F.normalize(prototypes, dim=1).t())


def tim_loss(prototypes: Tensor, support_unit: Tensor, support_one_hot: Tensor, query_unit: Tensor,
             config: TIMConfig) -> Tensor:
    """The TIM-GD objective (0-d) of ``prototypes`` [n, D] given unit support [S, D] / query [Q, D] features."""
    unit_prototypes = F.normalize(prototypes, dim=1)  # once for both sets (easyfsl normalises twice: same values)
    support_logits = config.temperature * (support_unit @ unit_prototypes.t())
    query_probs = (config.temperature * (query_unit @ unit_prototypes.t())).softmax(1)
    cross_entropy = -(support_one_hot * support_logits.log_softmax(1)).sum(1).mean(0)
    conditional_entropy = -(query_probs * torch.log(query_probs + ENTROPY_EPSILON)).sum(1).mean(0)
    marginal = query_probs.mean(0)
    marginal_entropy = -(marginal * torch.log(marginal)).sum(0)
    return config.cross_entropy_weight * cross_entropy - (
        config.marginal_entropy_weight * marginal_entropy - config.conditional_entropy_weight * conditional_entropy)


class TIMPredictor(TransductivePredictor):
    """softmax(temperature * cosine) to the prototypes fine-tuned on this query batch."""

    title = "TIM"
    config: TIMConfig

    def fine_tuned_prototypes(self, query_features: Tensor) -> Tensor:
        """[Q, D] query features -> [n, D] prototypes after the configured Adam steps."""
        config = self.config
        support_unit, query_unit = F.normalize(self.support_features, dim=1), F.normalize(query_features, dim=1)
        support_one_hot = one_hot(self.support_labels, self.n_classes, support_unit.dtype)

        def loss(prototypes: Tensor) -> Tensor:
            return tim_loss(prototypes, support_unit, support_one_hot, query_unit, config)

        return adam_fine_tuned(self.prototypes(), loss, steps=config.fine_tuning_steps, lr=config.fine_tuning_lr)

    def infer(self, query_features: Tensor) -> Tensor:
        prototypes = self.fine_tuned_prototypes(query_features)
        return cosine_logits(F.normalize(query_features, dim=1), prototypes, self.config.temperature).softmax(1)


class TIM(TransductivePretraining):
    """Classifier pre-training; at prediction time the prototypes are fine-tuned on support and queries together."""

    short_title = "TIM"
    paper = "Boudiaf et al. 2020, Transductive Information Maximization for Few-Shot Learning"
    predictor_class = TIMPredictor
    # the defaults are easyfsl's; on the built-in glyphs (5-way 1-shot, Conv-4 32 pre-trained 300 steps, 100 episodes)
    # CL2N features and a 10x larger step lift TIM from 73.6% (SimpleShot's 73.1%) to 77.9%
    recipe = {"algorithm.cl2n": True, "algorithm.fine_tuning_lr": 1e-3}
    iterations_field = "fine_tuning_steps"
