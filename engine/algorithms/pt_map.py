"""PT-MAP (Hu et al. 2021): power transform, then optimal-transport MAP, as easyfsl 1.5.0's ``PTMAP``.

Features are power-transformed, ``(relu(f) + 1e-6) ** power_factor``. Then ``fine_tuning_steps`` times:
the queries' soft assignments are the Sinkhorn optimal-transport plan of the cost ``||q - c_k||^2``
(regularisation ``lambda_regularization``; each query carries mass 1, each class Q/n), and the prototypes
move by ``fine_tuning_lr`` towards the mean of support (one-hot) and query (soft) features weighted by their
assignments. The probabilities are the final plan's rows.

Deliberate differences from easyfsl. With ``unit_features`` (the default) the power-transformed features are
L2-normalised, as Eq. (1) of the paper has them; easyfsl omits this, and then exp(-lambda * ||q - c||^2)
underflows to 0 for every class once features are a few units long (a trained Conv-4's are), and its plan is
NaN; with ``unit_features`` off ours is easyfsl's. The other two are equal to easyfsl on an episode (Q a
multiple of n, a converged plan): the class mass is Q / n, where easyfsl takes Q // n (zero when there are
fewer queries than classes, which empties the plan; the adapt view can have any number of test images); and
each row of the returned plan is divided by its sum, so that rows sum to 1 exactly (easyfsl's rows sum to 1
within the Sinkhorn tolerance 1e-6: ours = easyfsl's / its row sums).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.algorithms.transductive import TransductiveConfig, TransductivePredictor, TransductivePretraining, one_hot
from engine.config import param

MAXIMUM_SINKHORN_ITERATIONS = 1000
SINKHORN_TOLERANCE = 1e-6
POWER_OFFSET = 1e-6


@dataclass
class PTMAPConfig(TransductiveConfig):
    name: ClassVar[str] = "pt_map"
    title: ClassVar[str] = "PT-MAP (power transform + optimal transport)"
    summary: ClassVar[str] = ("Power-transforms the features, then alternates optimal-transport assignments of "
                              "the test images to the classes with prototype updates. Hu et al. 2021.")

    fine_tuning_steps: int = param(10, "Sets the alternations of optimal transport and prototype update.",
                                   label="Iterations", min=0, max=1000)
    fine_tuning_lr: float = param(0.2, "Sets how far each update moves the prototypes towards the weighted means.",
                                  label="Prototype step", min=0.0, max=1.0, exclusive_min=True)
    lambda_regularization: float = param(10.0, "Sharpens the transport plan exp(-lambda * cost).",
                                         label="Transport sharpness (lambda)", min=0.0, max=1000.0,
                                         exclusive_min=True)
    unit_features: bool = param(True, "L2-normalises the power-transformed features (the paper's Eq. 1; off: "
                                "easyfsl's PT-MAP, whose transport plan underflows on long features).",
                                label="Unit-length features")
    power_factor: float = param(0.5, "Sets the power of the feature transform (relu(f) + 1e-6) ** power.",
                                label="Power transform", min=0.0, max=10.0, exclusive_min=True)


def power_transform(features: Tensor, power: float) -> Tensor:
    """(relu(features) + 1e-6) ** power."""
    return (features.relu() + POWER_OFFSET).pow(power)


def sinkhorn(cost: Tensor, lambda_regularization: float) -> Tensor:
    """[Q, n] cost -> [Q, n] transport plan: rows of mass 1, columns of mass Q / n (Sinkhorn-Knopp).

    Stops when a row normalisation changes the row sums by less than 1e-6, or after 1000 iterations.
    """
    class_mass = cost.shape[0] / cost.shape[1]
    plan = torch.exp(-lambda_regularization * cost)
    plan /= plan.sum(dim=(0, 1), keepdim=True)
    row_sums = plan.sum(1)
    for _ in range(MAXIMUM_SINKHORN_ITERATIONS):
        plan *= (1 / (row_sums + 1e-10)).unsqueeze(1)
        plan *= (class_mass / (plan.sum(0) + 1e-10)).unsqueeze(0)
        new_row_sums = plan.sum(1)  # the convergence test's row sums are the next iteration's (one sum fewer)
        if torch.max(torch.abs(row_sums - new_row_sums)) < SINKHORN_TOLERANCE:
            break
        row_sums = new_row_sums
    return plan


class PTMAPPredictor(TransductivePredictor):
    """The rows of the transport plan of the queries to prototypes refined on support and queries."""

    title = "PT-MAP"
    config: PTMAPConfig

    def transform(self, features: Tensor) -> Tensor:
        transformed = power_transform(features, self.config.power_factor)
        return F.normalize(transformed, dim=1) if self.config.unit_features else transformed

    def assignments(self, query_features: Tensor, prototypes: Tensor) -> Tensor:
        """[Q, n] soft assignments: the transport plan of the squared distances."""
        return sinkhorn(torch.cdist(query_features, prototypes) ** 2, self.config.lambda_regularization)

    def refined_prototypes(self, query_features: Tensor) -> Tensor:
        """[n, D] prototypes after ``fine_tuning_steps`` assignment-and-update iterations."""
        prototypes = self.prototypes()
        all_features = torch.cat([self.support_features, query_features], 0)
        support_assignments = one_hot(self.support_labels, self.n_classes, query_features.dtype)
        for _ in range(self.config.fine_tuning_steps):
            all_assignments = torch.cat([support_assignments, self.assignments(query_features, prototypes)], 0)
            weighted_means = (all_assignments.T @ all_features) / all_assignments.sum(0).unsqueeze(1)
            prototypes = prototypes + self.config.fine_tuning_lr * (weighted_means - prototypes)
        return prototypes

    def infer(self, query_features: Tensor) -> Tensor:
        plan = self.assignments(query_features, self.refined_prototypes(query_features))
        return plan / plan.sum(1, keepdim=True)


class PTMAP(TransductivePretraining):
    """Classifier pre-training; at prediction time optimal transport of the queries to refined prototypes."""

    short_title = "PT-MAP"
    paper = "Hu et al. 2021, Leveraging the Feature Distribution in Transfer-based Few-Shot Learning"
    predictor_class = PTMAPPredictor
    iterations_field = "fine_tuning_steps"
