"""The policy gradient of engine/rl: returns-to-go, the linear baseline, the REINFORCE estimate against an
independent float64 computation by hand, and MAML's second-order meta-gradient against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.rl.gradient import Batch, discounted_returns, fit_baseline, inner_step, rollout, surrogate
from engine.rl.policy import as_list, batched_log_prob, expand, init_params, param_shapes


def random_batch(tasks: int, trajectories: int, horizon: int, seed: int, dtype=torch.float32) -> Batch:
    g = torch.Generator().manual_seed(seed)
    shape = (tasks, trajectories, horizon)
    return Batch(torch.rand(*shape, 2, generator=g, dtype=dtype) - 0.5, torch.randn(*shape, 2, generator=g, dtype=dtype),
                 -torch.rand(*shape, generator=g, dtype=dtype), torch.randn(*shape, generator=g, dtype=dtype))


def test_returns_to_go_are_the_discounted_sums_of_the_rewards_ahead() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(discounted_returns(rewards, 0.5), torch.tensor([[1 + 1 + 0.75, 2 + 1.5, 3.0]]))
    torch.testing.assert_close(discounted_returns(rewards, 1.0), torch.tensor([[6.0, 5.0, 3.0]]))


def test_the_baseline_is_a_ridge_regression_on_rllabs_features_per_task() -> None:
    batch = random_batch(2, 3, 7, seed=1, dtype=torch.float64)
    returns = discounted_returns(batch.rewards, 0.99)
    fitted = fit_baseline(batch.observations, returns)
    for task in range(2):
        obs = batch.observations[task].reshape(-1, 2).numpy()
        t = np.tile(np.arange(7) / 100.0, 3)[:, None]
        features = np.hstack([obs, obs ** 2, t, t ** 2, t ** 3, np.ones_like(t)])
        target = returns[task].reshape(-1).numpy()
        weights = np.linalg.solve(features.T @ features + 1e-5 * np.eye(8), features.T @ target)
        np.testing.assert_allclose(fitted[task].reshape(-1).numpy(), features @ weights, rtol=1e-7, atol=1e-9)


def hand_policy_gradient(params: dict[str, torch.Tensor], batch: Batch) -> dict[str, np.ndarray]:
    """-mean(A * grad log pi(a|s)) of a 2 -> H -> 2 ReLU Gaussian policy, back-propagated by hand in float64."""
    w0, b0, w1, b1, log_std = (params[n].double().numpy() for n in ("layers.0.weight", "layers.0.bias",
                                                                     "layers.1.weight", "layers.1.bias", "log_std"))
    grads = {n: np.zeros(p.shape) for n, p in params.items()}
    obs = batch.observations.double().reshape(-1, 2).numpy()
    acts = batch.actions.double().reshape(-1, 2).numpy()
    adv = batch.advantages.double().reshape(-1).numpy()
    var = np.exp(2 * log_std)
    for s, a, advantage in zip(obs, acts, adv):
        pre = w0 @ s + b0
        h = np.maximum(pre, 0.0)
        mu = w1 @ h + b1
        d_mu = (a - mu) / var                                  # d log pi / d mu
        d_pre = (w1.T @ d_mu) * (pre > 0)
        scale = -advantage / len(adv)
        grads["layers.1.weight"] += scale * np.outer(d_mu, h)
        grads["layers.1.bias"] += scale * d_mu
        grads["layers.0.weight"] += scale * np.outer(d_pre, s)
        grads["layers.0.bias"] += scale * d_pre
        grads["log_std"] += scale * ((a - mu) ** 2 / var - 1.0)
    return grads


def test_the_policy_gradient_estimate_matches_a_float64_computation_by_hand() -> None:
    params = init_params(5, hidden=(3,))
    params["log_std"] = torch.tensor([-0.3, 0.2])
    batch = random_batch(1, 4, 6, seed=2)
    live = [p.clone().requires_grad_() for p in expand(as_list(params), 1)]
    grads = torch.autograd.grad(surrogate(live, batch).sum(), live)
    expected = hand_policy_gradient(params, batch)
    for name, grad in zip(param_shapes((3,)), grads):
        np.testing.assert_allclose(grad[0].double().numpy(), expected[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_log_prob_is_the_diagonal_gaussian_density() -> None:
    params = init_params(0, hidden=(4,))
    params["log_std"] = torch.tensor([0.1, -0.4])
    obs, acts = torch.randn(1, 5, 2), torch.randn(1, 5, 2)
    stacked = expand(as_list(params), 1)
    from engine.rl.policy import batched_mean

    mean = batched_mean(stacked, obs)
    normal = torch.distributions.Normal(mean, torch.exp(params["log_std"]))
    torch.testing.assert_close(batched_log_prob(stacked, obs, acts), normal.log_prob(acts).sum(-1))


def meta_loss(theta: list[torch.Tensor], pre: Batch, post: Batch, lr: float, *, second_order: bool = True):
    fast = expand(theta, pre.observations.shape[0])
    if second_order:
        fast = inner_step(fast, pre, lr, create_graph=True)
    else:
        stepped = inner_step(fast, pre, lr)
        fast = [w + (s - w).detach() for w, s in zip(fast, stepped)]
    return surrogate(fast, post).mean()


def test_the_second_order_meta_gradient_through_the_surrogate_matches_finite_differences() -> None:
    theta = [p.requires_grad_() for p in as_list(init_params(1, hidden=(4,), dtype=torch.float64))]
    pre, post = random_batch(2, 3, 5, seed=3, dtype=torch.float64), random_batch(2, 3, 5, seed=4, dtype=torch.float64)
    lr = 0.5
    analytic = torch.autograd.grad(meta_loss(theta, pre, post, lr), theta)
    first_order = torch.autograd.grad(meta_loss(theta, pre, post, lr, second_order=False), theta)
    eps = 1e-6
    values = [t.detach().clone() for t in theta]

    def loss_at(index: int, flat_index: int, delta: float) -> float:
        shifted = [v.clone() for v in values]
        shifted[index].view(-1)[flat_index] += delta
        return meta_loss([v.requires_grad_() for v in shifted], pre, post, lr).item()

    numeric = []
    for index, tensor in enumerate(values):
        grad = torch.zeros_like(tensor)
        for flat_index in range(tensor.numel()):
            grad.view(-1)[flat_index] = (loss_at(index, flat_index, eps) - loss_at(index, flat_index, -eps)) / (2 * eps)
        numeric.append(grad)
    for a, n in zip(analytic, numeric):
        torch.testing.assert_close(a, n, rtol=1e-5, atol=1e-7)
    gap = max((f - n).abs().max().item() for f, n in zip(first_order, numeric))
    assert gap > 1e-3      # the second-order term matters here: first-order MAML is a different gradient


def test_rollouts_are_seeded_and_have_the_shapes_of_the_batch() -> None:
    params = expand(as_list(init_params(0, hidden=(8, 8))), 3)
    goals = torch.tensor([[0.1, 0.2], [-0.3, 0.4], [0.5, -0.5]])
    first = rollout(params, goals, 4, torch.Generator().manual_seed(9), horizon=10)
    again = rollout(params, goals, 4, torch.Generator().manual_seed(9), horizon=10)
    assert first.observations.shape == (3, 4, 10, 2) and first.rewards.shape == (3, 4, 10)
    torch.testing.assert_close(first.rewards, again.rewards)
    assert (first.observations[:, :, 0] == 0).all()            # every episode starts at the origin
    steps = (first.observations[:, :, 1:] - first.observations[:, :, :-1]).abs()
    assert steps.max() <= 0.1 + 1e-6                          # clipped velocities
    distance = (first.observations[:, :, 1:] - goals[:, None, None]).norm(dim=-1)
    torch.testing.assert_close(first.rewards[..., :-1], -distance)
    torch.testing.assert_close(first.advantages.reshape(3, -1).mean(1), torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("create_graph", [False, True])
def test_an_inner_step_descends_each_tasks_own_surrogate(create_graph: bool) -> None:
    theta = [p.requires_grad_() for p in as_list(init_params(2, hidden=(5,)))]
    batch = random_batch(2, 3, 4, seed=7)
    fast = inner_step(expand(theta, 2), batch, 0.1, create_graph=create_graph)
    for task in range(2):
        own = Batch(*(t[task:task + 1] for t in (batch.observations, batch.actions, batch.rewards, batch.advantages)))
        single = [p.detach().requires_grad_() for p in expand(theta, 1)]
        grads = torch.autograd.grad(surrogate(single, own).sum(), single)
        for f, p, g in zip(fast, theta, grads):
            torch.testing.assert_close(f[task].detach(), p.detach() - 0.1 * g[0])
