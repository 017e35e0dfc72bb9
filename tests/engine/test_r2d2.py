"""R2D2 (Bertinetto et al. 2019): the closed-form head against the paper's equations in float64, the glyph run
and its checkpoint, bad input.

Reference (written out here, not with the engine's helpers): X the [S, D] support features, Y the [S, n]
one-hot labels, W = X^T (X X^T + lambda I)^-1 Y with an explicit inverse (the engine solves the system), logits
``alpha X_q W + beta``, query cross-entropy; gradients w.r.t. the body, lambda, alpha and beta. The primal form
(X^T X + lambda I)^-1 X^T Y must give the same W (Woodbury).
"""

from __future__ import annotations

import math

import pytest
import torch

from engine.algorithms.r2d2 import R2D2, R2D2Config
from engine.config import RunConfig
from engine.data.types import ClassBatch
from engine.errors import ConfigError
from tests.engine import zoo_checks
from tests.engine.zoo_checks import TinyBody, in_float64, reference_cross_entropy, reference_features, tiny_tasks

N_WAY, LAMBDA, SCALE = 3, 0.7, 3.0


def tiny_r2d2() -> R2D2:
    torch.manual_seed(0)
    algorithm = in_float64(R2D2(R2D2Config(ridge_lambda=LAMBDA, scale=SCALE, lr=1e-3), TinyBody(), n_way=N_WAY,
                                n_train_classes=10))
    with torch.no_grad():
        algorithm.head.bias.fill_(0.25)
        algorithm.head.log_lambda.fill_(math.log(LAMBDA))  # it was made in float32
    return algorithm


def reference_ridge(x: torch.Tensor, labels: torch.Tensor, n: int, lam: torch.Tensor) -> torch.Tensor:
    y = torch.zeros(len(labels), n, dtype=x.dtype)
    y[torch.arange(len(labels)), labels] = 1.0
    return x.t() @ torch.linalg.inv(x @ x.t() + lam * torch.eye(len(x), dtype=x.dtype)) @ y


def test_ridge_weights_are_the_woodbury_form_of_the_primal_solution() -> None:
    algorithm = tiny_r2d2()
    task = tiny_tasks(1, seed=1)[0]
    with torch.no_grad():
        x = reference_features(dict(algorithm.backbone.named_parameters()), task.support_x)
        dual = reference_ridge(x, task.support_y, N_WAY, torch.tensor(LAMBDA, dtype=torch.float64))
        y = torch.nn.functional.one_hot(task.support_y, N_WAY).double()
        primal = torch.linalg.inv(x.t() @ x + LAMBDA * torch.eye(x.shape[1], dtype=x.dtype)) @ x.t() @ y
        engine = algorithm.head.fit(algorithm.backbone(task.support_x), task.support_y, N_WAY)
    assert torch.allclose(dual, primal, rtol=1e-10, atol=1e-12)
    assert torch.allclose(engine, dual, rtol=1e-10, atol=1e-12)


def test_training_step_loss_and_gradients_match_the_paper_equations_in_float64() -> None:
    algorithm = tiny_r2d2()
    tasks = tiny_tasks(2, seed=2)
    body = {n: p.detach().clone().requires_grad_() for n, p in algorithm.backbone.named_parameters()}
    lam = torch.tensor(LAMBDA, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(SCALE, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    losses = []
    for task in tasks:
        w = reference_ridge(reference_features(body, task.support_x), task.support_y, N_WAY, lam)
        logits = alpha * reference_features(body, task.query_x) @ w + beta
        losses.append(reference_cross_entropy(logits, task.query_y))
    loss = torch.stack(losses).mean()
    leaves = [*body.values(), lam, alpha, beta]
    grads = torch.autograd.grad(loss, leaves)

    metrics = algorithm.meta_train_step(tasks)  # the gradients stay in .grad after the Adam step
    assert abs(metrics["loss"] - float(loss.detach())) < 1e-6  # metrics are read as float32
    for (name, parameter), grad in zip(algorithm.backbone.named_parameters(), grads):
        assert torch.allclose(parameter.grad, grad, rtol=1e-9, atol=1e-12), name
    grad_lambda, grad_alpha, grad_beta = grads[-3:]
    # the engine learns log(lambda): d/dlog(lambda) = lambda * d/dlambda
    assert torch.allclose(algorithm.head.log_lambda.grad, LAMBDA * grad_lambda, rtol=1e-9, atol=1e-12)
    assert torch.allclose(algorithm.head.scale.grad, grad_alpha, rtol=1e-9, atol=1e-12)
    assert torch.allclose(algorithm.head.bias.grad, grad_beta, atol=1e-12)  # zero: beta cancels in the softmax
    assert abs(float(grad_alpha)) > 1e-6 and abs(float(grad_lambda)) > 1e-8


def test_adapted_predictions_match_the_closed_form() -> None:
    algorithm = tiny_r2d2()
    task = tiny_tasks(1, seed=3, n_way=4)[0]  # more classes than trained: the head has no per-class weights
    body = dict(algorithm.backbone.named_parameters())
    with torch.no_grad():
        w = reference_ridge(reference_features(body, task.support_x), task.support_y, 4,
                            torch.tensor(LAMBDA, dtype=torch.float64))
        expected = (SCALE * reference_features(body, task.query_x) @ w + 0.25).softmax(1)
    predictor = algorithm.adapt(task.support_x, task.support_y)
    assert predictor.n_classes == 4
    assert torch.allclose(predictor.predict(task.query_x), expected, rtol=1e-10, atol=1e-12)


def test_a_training_step_learns_lambda_and_the_scale() -> None:
    algorithm = tiny_r2d2()
    algorithm.meta_train_step(tiny_tasks(2, seed=4))
    assert not math.isclose(float(algorithm.head.log_lambda.exp()), LAMBDA, rel_tol=1e-9)
    assert not math.isclose(float(algorithm.head.scale), SCALE, rel_tol=1e-9)


# -- acceptance on the glyphs ---------------------------------------------------------------------------------
def test_learns_held_out_glyphs_and_round_trips_its_checkpoint(glyph_root, tmp_path) -> None:
    data = zoo_checks.glyph_data(glyph_root)
    config = zoo_checks.glyph_config(glyph_root, "r2d2", steps=40)
    algorithm = zoo_checks.train_on_glyphs(config, data, tmp_path / "run")
    accuracy = zoo_checks.held_out_accuracy(algorithm, data)
    assert accuracy > zoo_checks.THRESHOLD, f"R2D2: {accuracy:.3f} on held-out glyph classes (chance 0.2)"
    loaded = zoo_checks.assert_checkpoint_round_trip(algorithm, data, tmp_path / "run")
    assert torch.equal(loaded.head.log_lambda, algorithm.head.log_lambda)


@pytest.mark.parametrize("field, value", [("ridge_lambda", 0.0), ("ridge_lambda", float("inf")), ("scale", -1.0)])
def test_bad_settings_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"algorithm.{field}"):
        RunConfig.from_dict({"algorithm": {"name": "r2d2", field: value}})


def test_a_class_batch_is_refused() -> None:
    with pytest.raises(TypeError, match="R2D2 trains on episodes"):
        tiny_r2d2().meta_train_step(ClassBatch(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)))
