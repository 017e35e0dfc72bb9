"""BD-CSPN (Liu et al. 2020): prototype rectification, as easyfsl 1.5.0's ``BDCSPN``.

The query features are shifted by (mean support feature - mean query feature); each class's rectified
prototype is the mean of its support features and of the (shifted) queries predicted in it, weighted by
exp(cosine to the class-mean prototype) and normalised per class. The queries' probabilities are
softmax(``temperature`` * cosine(query, rectified prototype)).

The same maths as easyfsl (``bench/bench_transductive_vs_easyfsl.py`` checks it), with one deliberate
difference: easyfsl's probabilities (``use_softmax=True``) are softmax(cosine), a softmax at temperature 1
over values in [-1, 1], so its most confident answer among 5 classes is below 0.65; ours are
softmax(``temperature`` * cosine) with temperature 10 by default (temperature 1 gives easyfsl's exactly;
the ranking, hence every prediction and accuracy, is the same for any temperature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from engine.algorithms.transductive import TransductiveConfig, TransductivePredictor, TransductivePretraining, one_hot
from engine.config import param


@dataclass
class BDCSPNConfig(TransductiveConfig):
    name: ClassVar[str] = "bd_cspn"
    title: ClassVar[str] = "BD-CSPN (prototype rectification)"
    summary: ClassVar[str] = ("Rectifies each class prototype with the test images predicted in it, after shifting "
                              "the test features onto the support's; cosine classifier. Liu et al. 2020.")

    temperature: float = param(10.0, "Multiplies the cosine similarities before the softmax (1 gives easyfsl's "
                               "probabilities; predictions do not change).", label="Temperature", min=0.0,
                               max=1000.0, exclusive_min=True)


def cosine(features: Tensor, prototypes: Tensor) -> Tensor:
    """[N, D], [n, D] -> [N, n] cosine similarities."""
    return F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).t()


def rectified_prototypes(support: Tensor, support_labels: Tensor, query: Tensor, prototypes: Tensor) -> Tensor:
    """BD-CSPN's rectification: [S, D] support, [S] labels, [Q, D] queries, [n, D] prototypes -> [n, D]."""
    n_classes = prototypes.shape[0]
    query = query + (support.mean(0, keepdim=True) - query.mean(0, keepdim=True))
    support_one_hot = one_hot(support_labels, n_classes, support.dtype)
    support_weights = support_one_hot * cosine(support, prototypes).exp()
    query_scores = cosine(query, prototypes).exp()
    query_one_hot = one_hot(query_scores.argmax(-1), n_classes, query.dtype)
    query_weights = query_one_hot * query_scores
    normaliser = (support_weights.sum(0) + query_weights.sum(0)).unsqueeze(0)
    return ((support_weights / normaliser) * support_one_hot).t() @ support + \
        ((query_weights / normaliser) * query_one_hot).t() @ query


class BDCSPNPredictor(TransductivePredictor):
    """softmax(temperature * cosine) to the prototypes rectified with this query batch."""

    title = "BD-CSPN"
    config: BDCSPNConfig

    def rectified(self, query_features: Tensor) -> Tensor:
        return rectified_prototypes(self.support_features, self.support_labels, query_features, self.prototypes())

    def infer(self, query_features: Tensor) -> Tensor:
        return (self.config.temperature * cosine(query_features, self.rectified(query_features))).softmax(1)


class BDCSPN(TransductivePretraining):
    """Classifier pre-training; at prediction time prototypes rectified with the queries (one pass)."""

    short_title = "BD-CSPN"
    paper = "Liu et al. 2020, Prototype Rectification for Few-Shot Learning"
    one_pass_adaptation = True
    predictor_class = BDCSPNPredictor
