"""What the transductive methods share (TIM, PT-MAP, LaplacianShot, BD-CSPN, transductive fine-tuning).

As in the papers and in easyfsl 1.5.0's examples, these methods adapt a backbone pre-trained with plain
cross-entropy on the training classes (Baseline's pre-training, :class:`ClassifierPretraining`). The
backbone stays frozen (eval mode, no gradients) at test time, exactly as easyfsl freezes it.

``adapt`` embeds the support set once; :meth:`TransductivePredictor.predict` then embeds the WHOLE query
batch and runs the method's inference on it, so the prediction of one query depends on the others
(``Algorithm.transductive``). A predictor never changes between calls: the same queries always give the
same probabilities, whatever was predicted before (easyfsl's classifiers overwrite their prototypes in
``forward``; ours keep the support's and work on local copies).

Features (easyfsl's ``FewShotClassifier.compute_features``): the backbone's output, or with ``cl2n`` that
output centred on the running mean training feature and L2-normalised (easyfsl's ``feature_centering`` =
that mean, ``feature_normalization=2``), then the method's own transform (PT-MAP's power transform).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Predictor, ProgressCallback
from engine.algorithms.functional import check_support, class_means, eval_mode
from engine.algorithms.simpleshot import FeatureMeanPretraining
from engine.config import AlgorithmConfig, param
from engine.errors import DatasetError

MIN_QUERIES = 2


@dataclass
class TransductiveConfig(AlgorithmConfig):
    """Pre-training (a classifier over the training classes) and the feature transform of the inference."""

    batch_size: int = param(64, "Sets how many images one pre-training batch holds.", label="Images per batch",
                            min=1, max=4096)
    cl2n: bool = param(False, "Centres the features on the mean training feature and L2-normalises them "
                       "(CL2N) before the transductive inference.", label="Centre and normalise features")


def check_query_batch(query_x: Tensor, title: str) -> None:
    """DatasetError (one line naming the input) unless ``query_x`` holds at least two images."""
    count = int(query_x.shape[0]) if query_x.ndim >= 1 else 0
    if count < MIN_QUERIES:
        raise DatasetError(f"query images: {title} is transductive and classifies the test images together; "
                           f"give it at least {MIN_QUERIES} images at once (got {count})")


def adam_fine_tuned(prototypes: Tensor, loss: Callable[[Tensor], Tensor], *, steps: int, lr: float) -> Tensor:
    """A detached copy of [n, D] ``prototypes`` after ``steps`` Adam steps (rate ``lr``) on the 0-d
    ``loss(prototypes)``; the input is not modified (TIM, transductive fine-tuning)."""
    prototypes = prototypes.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([prototypes], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            value = loss(prototypes)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
    return prototypes.detach()


def one_hot(labels: Tensor, n_classes: int, dtype: torch.dtype) -> Tensor:
    """[N] labels -> [N, n_classes] one-hot rows of ``dtype``."""
    return (labels.unsqueeze(1) == torch.arange(n_classes, device=labels.device)).to(dtype)


class TransductivePredictor(Predictor):
    """The support features and labels of one support set; ``predict`` classifies a whole query batch at once.

    support_features: [S, D] features in the method's space (as :meth:`embed` gives them); support_labels:
    [S] in 0..n-1; mean: the [D] centring mean when the features are CL2N, else None.
    """

    title: ClassVar[str] = "this method"

    def __init__(self, backbone: nn.Module, config: AlgorithmConfig, support_features: Tensor,
                 support_labels: Tensor, mean: Tensor | None) -> None:
        self.backbone = backbone
        self.config = config
        self.support_features = support_features
        self.support_labels = support_labels
        self.mean = mean
        self.n_classes = int(support_labels.max().item()) + 1

    # -- features ----------------------------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D] features in the method's space, on the support features' device."""
        device = self.support_features.device
        with torch.no_grad(), eval_mode(self.backbone):
            features = self.backbone(x.to(device)).float()
        if self.mean is not None:
            features = F.normalize(features - self.mean, p=2, dim=1)
        return self.transform(features)

    def transform(self, features: Tensor) -> Tensor:
        """The method's own feature transform (identity; PT-MAP: the power transform)."""
        return features

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x).to(x.device)

    def prototypes(self) -> Tensor:
        """[n, D] mean support feature per class (the starting prototypes of the transductive inference)."""
        return class_means(self.support_features, self.support_labels, self.n_classes)

    # -- prediction ----------------------------------------------------------------------------------------
    def predict(self, query_x: Tensor) -> Tensor:
        """[Q, C, H, W] (Q >= 2, all the test images together) -> [Q, n_classes] probabilities."""
        check_query_batch(query_x, self.title)
        return self.infer(self.features(query_x)).detach().to(query_x.device)

    @abstractmethod
    def infer(self, query_features: Tensor) -> Tensor:
        """[Q, D] query features -> [Q, n_classes] probabilities, using all the queries together."""

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"support_features": self.support_features.detach().cpu(),
                                 "support_labels": self.support_labels.detach().cpu()}
        if self.mean is not None:
            state["mean"] = self.mean.detach().cpu()
        state["iterations"] = {name: int(getattr(self.config, name)) for name in ("fine_tuning_steps",)
                               if hasattr(self.config, name)}
        return state


class TransductivePretraining(FeatureMeanPretraining):
    """Cross-entropy pre-training (with the running mean training feature for CL2N); ``adapt`` embeds the support
    set once and returns a :attr:`predictor_class`, whose ``predict`` runs the transductive inference."""

    kind = "transductive"
    transductive = True
    cacheable_features = True
    predictor_class: ClassVar[type[TransductivePredictor]]
    iterations_field: ClassVar[str] = ""
    """The config field that ``adapt(steps=...)`` overrides: the iterations of the transductive inference
    (TIM, PT-MAP, transductive fine-tuning); empty for the one-pass methods, which ignore ``steps``."""

    def adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              progress: ProgressCallback | None = None) -> Predictor:
        """Embed the support set (frozen backbone); the inference waits for the query batch in ``predict``.

        ``steps``: the iterations of that inference (:attr:`iterations_field`; None: the configured ones).
        """
        check_support(support_x, support_y)
        config = self.config_with(None if steps is None else {self.iterations_field: max(0, int(steps))})
        mean = self.feature_mean.mean.detach().clone() if config.cl2n else None
        support_x = support_x.to(self.device)
        blank = self.predictor_class(self.backbone, config, support_x.new_zeros(0, 1),
                                     torch.zeros(1, dtype=torch.long), mean)
        features = blank.features(support_x)
        if progress is not None:
            progress(1, 1)
        return self.predictor_class(self.backbone, config, features, support_y.to(self.device), mean)

    def config_with(self, iterations: dict[str, int] | None) -> TransductiveConfig:
        """The config, with ``{iterations_field: n}`` applied (for the methods that iterate)."""
        if not iterations or not self.iterations_field:
            return self.config
        return dataclasses.replace(self.config, **iterations)

    def predictor_from_state(self, state: dict[str, Any]) -> Predictor:
        mean = state["mean"].to(self.device) if "mean" in state else None
        config = self.config_with(state.get("iterations"))
        return self.predictor_class(self.backbone, config, state["support_features"].to(self.device),
                                    state["support_labels"].to(self.device), mean)
