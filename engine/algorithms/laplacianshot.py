"""LaplacianShot (Ziko et al. 2020): Laplacian-regularised assignments, as easyfsl 1.5.0's ``LaplacianShot``.

The prototypes are rectified as BD-CSPN's (:func:`engine.algorithms.bd_cspn.rectified_prototypes`); a_q are the
squared distances of the queries to them and W the k-nearest-neighbour affinity of the queries (W[i, j] = 1
when j is among the ``knn`` nearest queries of i, counting i itself, as easyfsl counts it: knn = 3 gives two
neighbours). Starting from softmax(-a), ``inference_steps`` bound updates y <- softmax(-a + lambda * W y)
(Algorithm 1 of the paper), stopping early when the bound (Eq. 7) changes by at most 1e-6 relative. The
probabilities are the last y.

The same maths as easyfsl (``bench/bench_transductive_vs_easyfsl.py`` checks it). Deliberate differences:
``cl2n`` is on by default (centred, L2-normalised features, as the paper uses; easyfsl's equivalent is
``feature_centering`` = the mean training feature with ``feature_normalization=2``); W is built with one
scatter instead of a Python loop over queries (the same matrix); with fewer queries than ``knn``, every other
query is a neighbour (easyfsl fails).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from engine.algorithms.bd_cspn import rectified_prototypes
from engine.algorithms.transductive import TransductiveConfig, TransductivePredictor, TransductivePretraining
from engine.config import param

BOUND_TOLERANCE = 1e-6


@dataclass
class LaplacianShotConfig(TransductiveConfig):
    name: ClassVar[str] = "laplacianshot"
    title: ClassVar[str] = "LaplacianShot"
    summary: ClassVar[str] = ("Rectified prototypes, then assignments that nearby test images share (Laplacian "
                              "regularisation over their nearest neighbours). Ziko et al. 2020.")

    cl2n: bool = param(True, "Centres the features on the mean training feature and L2-normalises them "
                       "(CL2N) before the transductive inference.", label="Centre and normalise features")
    inference_steps: int = param(20, "Sets the most bound updates of the assignments.", label="Bound updates",
                                 min=0, max=1000)
    knn: int = param(3, "Sets the nearest test images (counting the image itself) that share assignments.",
                     label="Nearest neighbours", min=1, max=1000)
    lambda_regularization: float = param(0.7, "Weights the agreement of neighbouring test images' assignments.",
                                         label="Laplacian weight (lambda)", min=0.0, max=1000.0)


def knn_affinity(features: Tensor, knn: int) -> Tensor:
    """[N, D] -> [N, N] float: W[i, j] = 1 for the ``knn`` nearest of i (i itself included) other than i."""
    k = min(knn, features.shape[0])
    neighbours = torch.cdist(features, features, 2).topk(k, largest=False).indices[:, 1:]
    affinity = torch.zeros(features.shape[0], features.shape[0], dtype=features.dtype, device=features.device)
    return affinity.scatter_(1, neighbours, 1.0)


def upper_bound(assignments: Tensor, scores: Tensor, kernel: Tensor, lambda_regularization: float) -> float:
    """The bound of Eq. (7) for [Q, n] assignments, [Q, n] squared distances and the [Q, Q] kernel."""
    pairwise = kernel.matmul(assignments)
    terms = (scores * assignments) + (-lambda_regularization * pairwise * assignments)
    return (assignments * (assignments + 1e-12).log() + terms).sum().item()


def bound_updates(scores: Tensor, kernel: Tensor, steps: int, lambda_regularization: float) -> Tensor:
    """[Q, n] squared distances, [Q, Q] kernel -> [Q, n] assignments after at most ``steps`` bound updates."""
    previous = float("inf")
    assignments = (-scores).softmax(dim=1)
    for step in range(steps):
        assignments = (-scores - (-lambda_regularization * kernel.matmul(assignments))).softmax(dim=1)
        bound = upper_bound(assignments, scores, kernel, lambda_regularization)
        if step > 1 and abs(bound - previous) <= BOUND_TOLERANCE * abs(previous):
            break
        previous = bound
    return assignments


class LaplacianShotPredictor(TransductivePredictor):
    """Bound updates of Laplacian-regularised assignments to BD-CSPN's rectified prototypes."""

    title = "LaplacianShot"
    config: LaplacianShotConfig

    def infer(self, query_features: Tensor) -> Tensor:
        prototypes = rectified_prototypes(self.support_features, self.support_labels, query_features,
                                          self.prototypes())
        scores = torch.cdist(query_features, prototypes) ** 2
        kernel = knn_affinity(query_features, self.config.knn)
        return bound_updates(scores, kernel, self.config.inference_steps, self.config.lambda_regularization)


class LaplacianShot(TransductivePretraining):
    """Classifier pre-training; at prediction time Laplacian-regularised assignments of the whole query batch."""

    short_title = "LaplacianShot"
    paper = "Ziko et al. 2020, Laplacian Regularized Few-Shot Learning"
    one_pass_adaptation = True
    predictor_class = LaplacianShotPredictor
