"""MAML's meta-gradient (production code) against an independent float64 reference.

The reference writes a tiny 2-layer network as plain tensor algebra (no nn.Module,
no functional_call) and computes the meta-gradient
  * for one inner step exactly: d L_q(theta')/d theta = (I - a H_s(theta)) g_q(theta'),
    with theta' = theta - a g_s(theta) and the Hessian-vector product H_s g_q from autograd;
  * for several inner steps and tasks by central finite differences of the meta-loss;
  * first order: g_q(theta') at the adapted weights, nothing else.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.maml import fit_regression, maml_meta_gradient

torch.set_num_threads(1)

NAMES = ["0.weight", "0.bias", "2.weight", "2.bias"]


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def reference_forward(theta: list[Tensor], x: Tensor) -> Tensor:
    w1, b1, w2, b2 = theta
    return torch.tanh(x @ w1.t() + b1) @ w2.t() + b2


def reference_loss(theta: list[Tensor], x: Tensor, y: Tensor) -> Tensor:
    return ((reference_forward(theta, x) - y) ** 2).mean()


def reference_adapt(theta: list[Tensor], x: Tensor, y: Tensor, lr: float, steps: int,
                    create_graph: bool) -> list[Tensor]:
    for _ in range(steps):
        grads = torch.autograd.grad(reference_loss(theta, x, y), theta, create_graph=create_graph)
        theta = [t - lr * g for t, g in zip(theta, grads)]
    return theta


def reference_meta_loss(theta: list[Tensor], tasks, lr: float, steps: int) -> Tensor:
    total = torch.zeros((), dtype=torch.float64)
    for sx, sy, qx, qy in tasks:
        adapted = reference_adapt(theta, sx, sy, lr, steps, create_graph=True)
        total = total + reference_loss(adapted, qx, qy)
    return total / len(tasks)


def make_tasks(n_tasks: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    g = torch.Generator().manual_seed(1)
    tasks = []
    for _ in range(n_tasks):
        sx, qx = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
        sy, qy = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64)
        tasks.append((sx, sy, qx, qy))
    return tasks


def theta_of(model: nn.Module) -> list[Tensor]:
    params = dict(model.named_parameters())
    return [params[n].detach().clone().requires_grad_() for n in NAMES]


def production_gradient(model: nn.Module, tasks, lr: float, steps: int, first_order: bool) -> list[Tensor]:
    result = maml_meta_gradient(model, tasks, inner_lr=lr, inner_steps=steps, first_order=first_order,
                                loss_fn=F.mse_loss)
    return [result.grads[n] for n in NAMES]


def assert_close(actual: list[Tensor], expected: list[Tensor], tol: float) -> None:
    for a, e, name in zip(actual, expected, NAMES):
        assert torch.allclose(a, e, rtol=tol, atol=tol), f"{name}: max error {(a - e).abs().max().item():.2e}"


def test_second_order_one_step_matches_hessian_vector_formula() -> None:
    model, lr = tiny_model(), 0.3
    sx, sy, qx, qy = make_tasks(1)[0]
    theta = theta_of(model)
    g_s = torch.autograd.grad(reference_loss(theta, sx, sy), theta, create_graph=True)
    adapted = [(t - lr * g).detach().requires_grad_() for t, g in zip(theta, g_s)]
    g_q = torch.autograd.grad(reference_loss(adapted, qx, qy), adapted)
    h_g_q = torch.autograd.grad(g_s, theta, grad_outputs=g_q)
    expected = [gq - lr * hv for gq, hv in zip(g_q, h_g_q)]
    actual = production_gradient(model, [(sx, sy, qx, qy)], lr, 1, first_order=False)
    assert_close(actual, expected, 1e-10)
    # the second-order term matters here, so the first-order gradient must differ
    assert max((a - gq).abs().max().item() for a, gq in zip(actual, g_q)) > 1e-4


@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_matches_finite_differences(steps: int) -> None:
    model, lr, tasks = tiny_model(), 0.2, make_tasks(3)
    theta = [t.detach() for t in theta_of(model)]
    expected = []
    eps = 1e-6
    for index, tensor in enumerate(theta):
        grad = torch.zeros_like(tensor)
        for position in range(tensor.numel()):
            values = []
            for sign in (1.0, -1.0):
                shifted = [t.clone().requires_grad_() for t in theta]
                with torch.no_grad():
                    shifted[index].view(-1)[position] += sign * eps
                values.append(reference_meta_loss(shifted, tasks, lr, steps).item())
            grad.view(-1)[position] = (values[0] - values[1]) / (2 * eps)
        expected.append(grad)
    actual = production_gradient(model, tasks, lr, steps, first_order=False)
    assert_close(actual, expected, 1e-7)


@pytest.mark.parametrize("steps", [1, 2])
def test_first_order_is_query_gradient_at_adapted_weights(steps: int) -> None:
    model, lr, tasks = tiny_model(), 0.25, make_tasks(2)
    theta = theta_of(model)
    expected = [torch.zeros_like(t) for t in theta]
    for sx, sy, qx, qy in tasks:
        adapted = [t.detach().requires_grad_() for t in reference_adapt(theta, sx, sy, lr, steps, False)]
        for total, g in zip(expected, torch.autograd.grad(reference_loss(adapted, qx, qy), adapted)):
            total += g / len(tasks)
    actual = production_gradient(model, tasks, lr, steps, first_order=True)
    assert_close(actual, expected, 1e-12)


def test_meta_gradient_reports_mean_query_loss_and_leaves_model_alone() -> None:
    model, lr, tasks = tiny_model(), 0.2, make_tasks(2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = maml_meta_gradient(model, tasks, inner_lr=lr, inner_steps=2, first_order=False, loss_fn=F.mse_loss)
    expected = reference_meta_loss(theta_of(model), tasks, lr, 2).item()
    assert result.loss == pytest.approx(expected, rel=1e-12)
    assert len(result.query_outputs) == 2 and result.query_outputs[0].shape == (7, 2)
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name])
        assert parameter.grad is None


def test_fit_regression_follows_plain_gradient_descent() -> None:
    model, lr = tiny_model(), 0.1
    sx, sy, _, _ = make_tasks(1)[0]
    history = fit_regression(model, sx, sy, lr, 3)
    assert len(history) == 4
    expected = reference_adapt(theta_of(model), sx, sy, lr, 3, create_graph=False)
    for name, value in zip(NAMES, expected):
        assert torch.allclose(history[3][name], value, atol=1e-12)
    assert torch.equal(history[0]["0.weight"], model[0].weight.detach())
    losses = [reference_loss([h[n] for n in NAMES], sx, sy).item() for h in history]
    assert losses[-1] < losses[0]
