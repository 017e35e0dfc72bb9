"""Transductive fine-tuning (Dhillon et al. 2020), as easyfsl 1.5.0's ``TransductiveFinetuning``.

Prototypes start as the support class means and take ``fine_tuning_steps`` Adam steps (``fine_tuning_lr``) on
CE(support) + mean entropy(queries), both on logits ``temperature * -||f - c_k||``; the queries'
probabilities are softmax(``temperature * -||q - c_k||``) to the fine-tuned prototypes (easyfsl with
``use_softmax=True``).

As easyfsl (and said there), only the prototypes are fine-tuned, not the whole backbone as in the paper;
the backbone stays frozen, so features can be cached. The same maths as easyfsl
(``bench/bench_transductive_vs_easyfsl.py`` checks it); the fine-tuned prototypes stay local to one prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.algorithms.transductive import (
    TransductiveConfig, TransductivePredictor, TransductivePretraining, adam_fine_tuned,
)
from engine.config import param


@dataclass
class TransductiveFinetuningConfig(TransductiveConfig):
    name: ClassVar[str] = "transductive_finetuning"
    title: ClassVar[str] = "Transductive fine-tuning"
    summary: ClassVar[str] = ("Fine-tunes the prototypes on the support labels and on confident (low-entropy) "
                              "predictions for the test images. Dhillon et al. 2020.")

    fine_tuning_steps: int = param(25, "Sets the Adam steps that fine-tune the prototypes at prediction time.",
                                   label="Fine-tuning steps", min=0, max=10000)
    fine_tuning_lr: float = param(5e-5, "Sets the learning rate that fine-tunes the prototypes.",
                                  label="Fine-tuning learning rate", min=0.0, max=100.0, exclusive_min=True)
    temperature: float = param(1.0, "Multiplies the negative distances before the softmax.", label="Temperature",
                               min=0.0, max=1000.0, exclusive_min=True)


def entropy(logits: Tensor) -> Tensor:
    """Mean entropy (0-d) of the softmax of [N, n] logits."""
    probabilities = logits.softmax(dim=1)
    return (-(probabilities * (probabilities + 1e-12).log()).sum(dim=1)).mean()


def finetuning_loss(prototypes: Tensor, support: Tensor, support_labels: Tensor, query: Tensor,
                    temperature: float) -> Tensor:
    """CE of the support + mean entropy of the queries (0-d), logits temperature * -||f - c||."""
    support_logits = temperature * -torch.cdist(support, prototypes)
    query_logits = temperature * -torch.cdist(query, prototypes)
    return F.cross_entropy(support_logits, support_labels) + entropy(query_logits)


class TransductiveFinetuningPredictor(TransductivePredictor):
    """softmax(temperature * -distance) to the prototypes fine-tuned on this query batch."""

    title = "Transductive fine-tuning"
    config: TransductiveFinetuningConfig

    def fine_tuned_prototypes(self, query_features: Tensor) -> Tensor:
        """[Q, D] query features -> [n, D] prototypes after the configured Adam steps."""
        config = self.config

        def loss(prototypes: Tensor) -> Tensor:
            return finetuning_loss(prototypes, self.support_features, self.support_labels, query_features,
                                   config.temperature)

        return adam_fine_tuned(self.prototypes(), loss, steps=config.fine_tuning_steps, lr=config.fine_tuning_lr)

    def infer(self, query_features: Tensor) -> Tensor:
        prototypes = self.fine_tuned_prototypes(query_features)
        return (self.config.temperature * -torch.cdist(query_features, prototypes)).softmax(1)


class TransductiveFinetuning(TransductivePretraining):
    """Classifier pre-training; at prediction time the prototypes are fine-tuned on support and queries together."""

    short_title = "Transductive FT"
    paper = "Dhillon et al. 2020, A Baseline for Few-Shot Image Classification"
    predictor_class = TransductiveFinetuningPredictor
    iterations_field = "fine_tuning_steps"
