"""SimpleShot (Wang et al. 2019): nearest centroid on centred, L2-normalised (CL2N) features; with
``centering`` off, on L2-normalised features alone (the paper's L2N).

Pre-training is Baseline's (linear head over all training classes). The mean
training feature (the "C" of CL2N) is an exponential moving average (momentum
0.02, started from the first batch's mean) of the training features seen in the
pre-training steps, so it follows the network as it trains; it is a buffer of the
``feature_mean`` module and therefore saved in checkpoints.

Prediction: softmax(-DISTANCE_SCALE * ||z(q) - c_k||) where z is the CL2N feature
and c_k the mean CL2N support feature of class k. Distances between unit vectors
lie in [0, 2]; the fixed scale 10 only sharpens the probabilities (the argmax,
hence the accuracy, is that of the plain nearest centroid).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Predictor, ProgressCallback
from engine.algorithms.baseline import ClassifierPretraining
from engine.algorithms.functional import check_support, class_means, eval_mode, squared_euclidean
from engine.config import AlgorithmConfig

MEAN_MOMENTUM = 0.02
DISTANCE_SCALE = 10.0


class FeatureMean(nn.Module):
    """Running mean of training features: buffers ``mean`` [D] and ``batches`` (count of updates)."""

    def __init__(self, n_features: int, momentum: float = MEAN_MOMENTUM) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, features: Tensor) -> None:
        """Fold the mean of [B, D] features into the running mean."""
        batch_mean = features.mean(0)
        if int(self.batches.item()) == 0:
            self.mean.copy_(batch_mean)
        else:
            self.mean.lerp_(batch_mean, self.momentum)
        self.batches += 1


def cl2n(features: Tensor, mean: Tensor) -> Tensor:
    """[N, D] features, [D] mean -> [N, D] centred and L2-normalised features."""
    return F.normalize(features - mean, dim=1)


class CentroidPredictor(Predictor):
    """Nearest CL2N centroid; the backbone runs in eval mode."""

    def __init__(self, backbone: nn.Module, mean: Tensor, prototypes: Tensor) -> None:
        self.backbone = backbone
        self.mean = mean
        self._prototypes = prototypes
        self.n_classes = int(prototypes.shape[0])

    def _cl2n(self, x: Tensor) -> Tensor:
        with torch.no_grad(), eval_mode(self.backbone):
            return cl2n(self.backbone(x.to(self.mean.device)), self.mean)

    def embed(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D] CL2N features."""
        return self._cl2n(x).to(x.device)

    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] -> [Q, n_classes] probabilities."""
        distances = squared_euclidean(self._cl2n(query_x), self._prototypes).sqrt()
        return (-DISTANCE_SCALE * distances).softmax(1).to(query_x.device)

    def prototypes(self) -> Tensor:
        return self._prototypes

    def state(self) -> dict[str, Any]:
        return {"prototypes": self._prototypes.detach().cpu(), "mean": self.mean.detach().cpu()}


class FeatureMeanPretraining(ClassifierPretraining):
    """Classifier pre-training that also keeps the running mean training feature (module ``feature_mean``,
    for CL2N): SimpleShot and the transductive methods."""

    def __init__(self, config: AlgorithmConfig, backbone: nn.Module, *, n_way: int, n_train_classes: int) -> None:
        super().__init__(config, backbone, n_way=n_way, n_train_classes=n_train_classes)
        self.feature_mean = FeatureMean(backbone.out_features)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "feature_mean": self.feature_mean}

    def observe_features(self, features: Tensor) -> None:
        self.feature_mean.update(features)


class SimpleShot(FeatureMeanPretraining):
    """Baseline pre-training plus a running feature mean; nearest-centroid adaptation (no gradient steps)."""
    short_title = "SimpleShot"
    paper = "Wang et al. 2019, SimpleShot: Revisiting Nearest-Neighbor Classification for Few-Shot Learning"
    recipe = {"algorithm.lr": 1e-3, "algorithm.batch_size": 64, "train.lr_schedule": "cosine"}
    one_pass_adaptation = True
    cacheable_features = True

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Prototypes = mean CL2N (L2N without ``centering``) support feature per class."""
        n_classes = check_support(support_x, support_y)
        mean = self.feature_mean.mean.detach().clone()
        if not self.config.centering:
            mean.zero_()
        features = cl2n(self.support_features(support_x), mean)
        prototypes = class_means(features, support_y.to(self.device), n_classes)
        if progress is not None:
            progress(1, 1)
        return CentroidPredictor(self.backbone, mean, prototypes)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        return CentroidPredictor(self.backbone, state["mean"].to(self.device), state["prototypes"].to(self.device))
