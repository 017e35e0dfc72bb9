"""BOIL (Oh et al. 2021): the paper's equations in float64, the glyph run and its checkpoint, bad input.

Reference (written out here, not with the engine's helpers): per task, the body theta_b' = theta_b - alpha *
dL_support/dtheta_b while the head theta_h stays as it is; meta-loss = mean over tasks of the query
cross-entropy at (theta_b', theta_h); its gradients w.r.t. body and head (second order through the body's step,
or first order with the inner gradient a constant).
"""

from __future__ import annotations

import pytest
import torch

from engine.algorithms.boil import BOIL, BOILConfig
from engine.algorithms.functional import FunctionalPredictor
from engine.config import RunConfig
from engine.errors import ConfigError
from tests.engine import zoo_checks
from tests.engine.zoo_checks import TinyBody, in_float64, reference_cross_entropy, reference_features, tiny_tasks

N_WAY, INNER_LR, TEST_LR = 3, 0.3, 0.2


def tiny_boil(first_order: bool = False, inner_steps: int = 2) -> BOIL:
    torch.manual_seed(0)
    config = BOILConfig(inner_lr=INNER_LR, inner_steps=inner_steps, first_order=first_order, test_inner_lr=TEST_LR,
                        test_inner_steps=3)
    return in_float64(BOIL(config, TinyBody(), n_way=N_WAY, n_train_classes=10))


def reference_logits(body: dict[str, torch.Tensor], head: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return reference_features(body, x) @ head["weight"].t() + head["bias"]


def reference_adapt_body(body, head, x, y, lr: float, steps: int, second_order: bool):
    for _ in range(steps):
        loss = reference_cross_entropy(reference_logits(body, head, x), y)
        grads = torch.autograd.grad(loss, list(body.values()), create_graph=second_order)
        body = {n: w - lr * g for (n, w), g in zip(body.items(), grads)}
    return body


def leaves(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone().requires_grad_() for n, p in module.named_parameters()}


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batched", [False, True])
def test_meta_gradient_matches_the_paper_equations_in_float64(first_order: bool, batched: bool) -> None:
    algorithm = tiny_boil(first_order=first_order)
    tasks = tiny_tasks(3, seed=1)
    body, head = leaves(algorithm.backbone), leaves(algorithm.head)
    losses = []
    for task in tasks:
        fast = reference_adapt_body(body, head, task.support_x, task.support_y, INNER_LR, 2, not first_order)
        losses.append(reference_cross_entropy(reference_logits(fast, head, task.query_x), task.query_y))
    meta_loss = torch.stack(losses).mean()
    named = {**{f"backbone.{n}": t for n, t in body.items()}, **{f"head.{n}": t for n, t in head.items()}}
    expected = dict(zip(named, torch.autograd.grad(meta_loss, list(named.values()))))

    result = algorithm.meta_gradient(tasks, batched=batched)
    assert abs(result.loss - float(meta_loss.detach())) < 1e-12
    assert set(result.grads) == set(expected)
    for name, grad in expected.items():
        assert torch.allclose(result.grads[name], grad, rtol=1e-9, atol=1e-12), name


def test_adaptation_moves_the_body_only_and_matches_the_reference() -> None:
    algorithm = tiny_boil()
    task = tiny_tasks(1, seed=2)[0]
    predictor = algorithm.adapt(task.support_x, task.support_y)  # test_inner_steps = 3 at test_inner_lr
    assert isinstance(predictor, FunctionalPredictor)
    for name, parameter in algorithm.model.named_parameters():
        changed = not torch.equal(predictor.params[name], parameter.detach())
        assert changed == name.startswith("backbone."), name
    head = {n: p.detach() for n, p in algorithm.head.named_parameters()}
    body = reference_adapt_body(leaves(algorithm.backbone), head, task.support_x, task.support_y, TEST_LR, 3, False)
    expected = reference_logits(body, head, task.query_x).softmax(1).detach()
    assert torch.allclose(predictor.predict(task.query_x), expected, rtol=1e-10, atol=1e-12)


def test_a_training_step_trains_the_head_through_the_outer_loop() -> None:
    algorithm = tiny_boil()
    head_before, body_before = algorithm.head.weight.detach().clone(), algorithm.backbone.hidden.weight.detach().clone()
    algorithm.meta_train_step(tiny_tasks(2, seed=3))
    assert not torch.equal(head_before, algorithm.head.weight)
    assert not torch.equal(body_before, algorithm.backbone.hidden.weight)


def test_boil_is_the_inner_loop_mirror_of_anil() -> None:
    """Same weights, same support set: BOIL's adapted head is the meta-learned one, ANIL's adapted body is."""
    from engine.algorithms.maml import MAML
    from engine.config import MAMLConfig

    boil = tiny_boil()
    anil = in_float64(MAML(MAMLConfig(anil=True, test_inner_steps=3), TinyBody(), n_way=N_WAY, n_train_classes=10))
    anil.model.load_state_dict(boil.model.state_dict())
    task = tiny_tasks(1, seed=4)[0]
    boil_params = boil.adapt(task.support_x, task.support_y).params
    anil_params = anil.adapt(task.support_x, task.support_y).params
    for name, parameter in boil.model.named_parameters():
        head = name.startswith("head.")
        assert torch.equal(boil_params[name], parameter.detach()) == head, name
        assert torch.equal(anil_params[name], parameter.detach()) == (not head), name


# -- acceptance on the glyphs ---------------------------------------------------------------------------------
def test_learns_held_out_glyphs_and_round_trips_its_checkpoint(glyph_root, tmp_path) -> None:
    data = zoo_checks.glyph_data(glyph_root)
    config = zoo_checks.glyph_config(glyph_root, "boil", steps=30)
    algorithm = zoo_checks.train_on_glyphs(config, data, tmp_path / "run")
    accuracy = zoo_checks.held_out_accuracy(algorithm, data)
    assert accuracy > zoo_checks.THRESHOLD, f"BOIL: {accuracy:.3f} on held-out glyph classes (chance 0.2)"
    zoo_checks.assert_checkpoint_round_trip(algorithm, data, tmp_path / "run")


@pytest.mark.parametrize("field, value", [("inner_lr", 0.0), ("test_inner_lr", float("nan")), ("inner_steps", 0)])
def test_bad_settings_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"algorithm.{field}"):
        RunConfig.from_dict({"algorithm": {"name": "boil", field: value}})


def test_anil_is_not_a_setting_of_boil() -> None:
    with pytest.raises(ConfigError, match="algorithm.anil: unknown field"):
        RunConfig.from_dict({"algorithm": {"name": "boil", "anil": True}})
