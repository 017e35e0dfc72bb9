"""Meta-Baseline (Chen et al. 2021): the cosine nearest-centroid logits against the paper's equations in float64,
the two stages on the glyphs (a Baseline run, then the meta-stage from its backbone) and the checkpoint, bad input.

Reference (written out here, not with the engine's helpers): c_k = mean of the support features of class k,
logit_k(q) = tau * <q / |q|, c_k / |c_k|>, query cross-entropy; gradients w.r.t. the body and tau.
"""

from __future__ import annotations

import pytest
import torch

from engine.algorithms.meta_baseline import MetaBaseline, MetaBaselineConfig
from engine.algorithms.registry import build_algorithm
from engine.config import RunConfig
from engine.errors import CheckpointError, ConfigError
from tests.engine import zoo_checks
from tests.engine.zoo_checks import TinyBody, in_float64, reference_cross_entropy, reference_features, tiny_tasks

N_WAY, TAU = 3, 7.5


def tiny_meta_baseline() -> MetaBaseline:
    torch.manual_seed(0)
    return in_float64(MetaBaseline(MetaBaselineConfig(temperature=TAU), TinyBody(), n_way=N_WAY,
                                   n_train_classes=10))


def reference_logits(body, tau, support_x, support_y, query_x, n: int) -> torch.Tensor:
    support, query = reference_features(body, support_x), reference_features(body, query_x)
    centroids = torch.stack([support[support_y == k].sum(0) / (support_y == k).sum() for k in range(n)])
    centroids = centroids / centroids.pow(2).sum(1, keepdim=True).sqrt()
    query = query / query.pow(2).sum(1, keepdim=True).sqrt()
    return tau * query @ centroids.t()


def test_training_step_loss_and_gradients_match_the_paper_equations_in_float64() -> None:
    algorithm = tiny_meta_baseline()
    tasks = tiny_tasks(2, seed=1)
    body = {n: p.detach().clone().requires_grad_() for n, p in algorithm.backbone.named_parameters()}
    tau = torch.tensor(TAU, dtype=torch.float64, requires_grad=True)
    loss = torch.stack([reference_cross_entropy(reference_logits(body, tau, t.support_x, t.support_y, t.query_x,
                                                                 N_WAY), t.query_y) for t in tasks]).mean()
    grads = torch.autograd.grad(loss, [*body.values(), tau])

    metrics = algorithm.meta_train_step(tasks)  # the gradients stay in .grad after the Adam step
    assert abs(metrics["loss"] - float(loss.detach())) < 1e-6  # metrics are read as float32
    for (name, parameter), grad in zip(algorithm.backbone.named_parameters(), grads):
        assert torch.allclose(parameter.grad, grad, rtol=1e-10, atol=1e-13), name
    assert torch.allclose(algorithm.temperature.value.grad, grads[-1], rtol=1e-10, atol=1e-13)
    assert float(algorithm.temperature.value.detach()) != TAU, "the temperature is learned"


def test_adapted_predictions_are_the_temperature_scaled_cosines_to_the_centroids() -> None:
    algorithm = tiny_meta_baseline()
    task = tiny_tasks(1, seed=2, n_way=4, n_shot=3)[0]
    body = dict(algorithm.backbone.named_parameters())
    with torch.no_grad():
        expected = reference_logits(body, TAU, task.support_x, task.support_y, task.query_x, 4).softmax(1)
    predictor = algorithm.adapt(task.support_x, task.support_y)
    assert torch.allclose(predictor.predict(task.query_x), expected, rtol=1e-10, atol=1e-13)
    support = predictor.embed(task.support_x)
    means = torch.stack([support[task.support_y == k].mean(0) for k in range(4)])
    assert torch.allclose(predictor.prototypes(), means, rtol=1e-10, atol=1e-13)


# -- acceptance on the glyphs: the paper's two stages -----------------------------------------------------------
def test_meta_stage_from_a_baseline_backbone_learns_held_out_glyphs_and_round_trips(glyph_root, tmp_path) -> None:
    data = zoo_checks.glyph_data(glyph_root)
    pretraining = zoo_checks.glyph_config(glyph_root, "baseline", steps=100, batch_size=64)
    baseline = zoo_checks.train_on_glyphs(pretraining, data, tmp_path / "baseline")
    weights = tmp_path / "baseline-backbone.pt"
    torch.save(baseline.backbone.state_dict(), weights)

    config = zoo_checks.glyph_config(glyph_root, "meta_baseline", steps=20)
    config.model.weights_path = str(weights)
    start = build_algorithm(config, len(data.class_ids("train")))
    for key, value in baseline.backbone.state_dict().items():
        assert torch.equal(start.backbone.state_dict()[key], value), key

    algorithm = zoo_checks.train_on_glyphs(config, data, tmp_path / "meta")
    accuracy = zoo_checks.held_out_accuracy(algorithm, data)
    assert accuracy > zoo_checks.THRESHOLD, f"Meta-Baseline: {accuracy:.3f} on held-out glyph classes (chance 0.2)"
    loaded = zoo_checks.assert_checkpoint_round_trip(algorithm, data, tmp_path / "meta")
    assert torch.equal(loaded.temperature.value, algorithm.temperature.value)


def test_starting_weights_of_another_network_are_refused_naming_the_file(tmp_path) -> None:
    from engine.algorithms.functional import use_batch_statistics
    from engine.models.conv4 import Conv4

    weights = tmp_path / "maml-backbone.pt"  # MAML's backbone keeps no running statistics
    torch.save(use_batch_statistics(Conv4(1, 28, 64)).state_dict(), weights)
    config = RunConfig(algorithm=MetaBaselineConfig())
    config.model.weights_path = str(weights)
    with pytest.raises(CheckpointError, match=r"maml-backbone\.pt does not fit the backbone: missing key"):
        build_algorithm(config, 10)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_a_bad_temperature_names_the_field(value: float) -> None:
    with pytest.raises(ConfigError, match="algorithm.temperature"):
        RunConfig.from_dict({"algorithm": {"name": "meta_baseline", "temperature": value}})
