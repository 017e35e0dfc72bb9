"""Meta-SGD (Li et al. 2017): the paper's equations in float64, learn2learn 0.2.0 as a peer, the glyph run and
its checkpoint, bad input.

Reference (written out here, not with the engine's helpers): per task, theta' = theta - alpha * dL_support/dtheta
(alpha: one learned rate per weight element, elementwise product), meta-loss = mean over tasks of the query
cross-entropy at theta'; its gradients w.r.t. theta AND alpha. Second order differentiates through the inner
gradient; first order treats it as a constant (alpha keeps its gradient: the step is linear in it).
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.algorithms.meta_sgd import MetaSGD, MetaSGDConfig, rate_key
from engine.config import RunConfig
from engine.errors import CheckpointError, ConfigError
from engine.training.checkpoint import load_algorithm
from tests.engine import zoo_checks
from tests.engine.zoo_checks import (
    TinyBody, in_float64, reference_cross_entropy, reference_features, tiny_tasks,
)

ROOT = Path(__file__).resolve().parents[2]
N_WAY = 3


def tiny_meta_sgd(first_order: bool = False, inner_steps: int = 1, seed: int = 0) -> MetaSGD:
    torch.manual_seed(seed)
    config = MetaSGDConfig(inner_lr=0.3, inner_steps=inner_steps, first_order=first_order, test_inner_steps=2)
    algorithm = in_float64(MetaSGD(config, TinyBody(), n_way=N_WAY, n_train_classes=10))
    with torch.no_grad():  # rates that differ per element, so that a mixed-up rate shows
        for rate in algorithm.rates.parameters():
            rate.uniform_(0.1, 0.6)
    return algorithm


def reference_logits(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    features = reference_features(weights, x, prefix="backbone.")
    return features @ weights["head.weight"].t() + weights["head.bias"]


def reference_adapt(weights, rates, x, y, steps: int, second_order: bool):
    for _ in range(steps):
        loss = reference_cross_entropy(reference_logits(weights, x), y)
        grads = torch.autograd.grad(loss, list(weights.values()), create_graph=second_order)
        weights = {n: w - rates[n] * g for (n, w), g in zip(weights.items(), grads)}
    return weights


def reference_meta_gradient(algorithm: MetaSGD, tasks, steps: int, second_order: bool):
    weights = {n: p.detach().clone().requires_grad_() for n, p in algorithm.model.named_parameters()}
    rates = {n: r.detach().clone().requires_grad_() for n, r in algorithm.rates.by_name().items()}
    losses = []
    for task in tasks:
        fast = reference_adapt(weights, rates, task.support_x, task.support_y, steps, second_order)
        losses.append(reference_cross_entropy(reference_logits(fast, task.query_x), task.query_y))
    meta_loss = torch.stack(losses).mean()
    leaves = {**weights, **{f"inner_lr.{n}": r for n, r in rates.items()}}
    grads = torch.autograd.grad(meta_loss, list(leaves.values()))
    return float(meta_loss.detach()), dict(zip(leaves, grads))


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batched", [False, True])
def test_meta_gradient_matches_the_paper_equations_in_float64(first_order: bool, batched: bool) -> None:
    algorithm = tiny_meta_sgd(first_order=first_order, inner_steps=2)
    tasks = tiny_tasks(3, seed=1)
    loss, grads = reference_meta_gradient(algorithm, tasks, steps=2, second_order=not first_order)
    result = algorithm.meta_gradient(tasks, batched=batched)
    assert abs(result.loss - loss) < 1e-12
    assert set(result.grads) == set(grads)
    assert any(name.startswith("inner_lr.") for name in grads)
    for name, expected in grads.items():
        assert torch.allclose(result.grads[name], expected, rtol=1e-9, atol=1e-12), name


def test_adapted_predictions_use_the_learned_rates() -> None:
    algorithm = tiny_meta_sgd()
    task = tiny_tasks(1, seed=2)[0]
    weights = {n: p.detach().clone().requires_grad_() for n, p in algorithm.model.named_parameters()}
    rates = {n: r.detach() for n, r in algorithm.rates.by_name().items()}
    fast = reference_adapt(weights, rates, task.support_x, task.support_y, steps=2, second_order=False)
    expected = reference_logits(fast, task.query_x).softmax(1)
    got = algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)  # test_inner_steps = 2
    assert torch.allclose(got, expected.detach(), rtol=1e-10, atol=1e-12)


def test_a_training_step_moves_the_rates_and_the_weights() -> None:
    algorithm = tiny_meta_sgd()
    rates_before = [r.detach().clone() for r in algorithm.rates.parameters()]
    head_before = algorithm.head.weight.detach().clone()
    algorithm.meta_train_step(tiny_tasks(2, seed=3))
    assert all(not torch.equal(before, after) for before, after in zip(rates_before, algorithm.rates.parameters()))
    assert not torch.equal(head_before, algorithm.head.weight)


def test_head_rates_follow_the_head_rule_for_more_classes_than_trained() -> None:
    algorithm = tiny_meta_sgd()
    rates = algorithm.test_rates(N_WAY + 2)
    head = algorithm.rates.by_name()["head.weight"].detach()
    assert rates["head.weight"].shape == (N_WAY + 2, head.shape[1])
    assert torch.equal(rates["head.weight"][:N_WAY], head)
    assert torch.allclose(rates["head.weight"][N_WAY:], head.mean(0, keepdim=True).expand(2, -1))


# -- acceptance on the glyphs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def glyph_run(glyph_root, tmp_path_factory):
    data = zoo_checks.glyph_data(glyph_root)
    run_dir = tmp_path_factory.mktemp("meta-sgd") / "run"
    config = zoo_checks.glyph_config(glyph_root, "meta_sgd", steps=30)
    return zoo_checks.train_on_glyphs(config, data, run_dir), data, run_dir


def test_learns_held_out_glyphs_and_round_trips_its_checkpoint(glyph_run) -> None:
    algorithm, data, run_dir = glyph_run
    accuracy = zoo_checks.held_out_accuracy(algorithm, data)
    assert accuracy > zoo_checks.THRESHOLD, f"Meta-SGD: {accuracy:.3f} on held-out glyph classes (chance 0.2)"
    loaded = zoo_checks.assert_checkpoint_round_trip(algorithm, data, run_dir)
    for name, rate in algorithm.rates.by_name().items():
        assert torch.equal(loaded.rates.by_name()[name], rate), name


def test_a_checkpoint_with_a_nan_rate_is_refused_naming_the_file_and_the_rate(glyph_run, tmp_path) -> None:
    _, _, run_dir = glyph_run
    payload = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    payload["algorithm"]["modules"]["inner_lrs"][f"rates.{rate_key('head.weight')}"][0, 0] = float("nan")
    edited = tmp_path / "edited.pt"
    torch.save(payload, edited)
    with pytest.raises(CheckpointError, match=r"edited\.pt.*inner_lrs\.rates\.head-weight.*NaN"):
        load_algorithm(edited)


def test_loading_a_non_finite_rate_directly_names_the_parameter() -> None:
    algorithm = tiny_meta_sgd()
    state = algorithm.state_dict()
    state["modules"]["inner_lrs"][f"rates.{rate_key('backbone.out.bias')}"][1] = float("inf")
    with pytest.raises(CheckpointError, match=r"learned inner learning rate of backbone\.out\.bias"):
        tiny_meta_sgd(seed=1).load_state_dict(state)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0])
def test_a_bad_initial_rate_names_the_field(value: float) -> None:
    with pytest.raises(ConfigError, match="algorithm.inner_lr"):
        RunConfig.from_dict({"algorithm": {"name": "meta_sgd", "inner_lr": value}})
    if not math.isfinite(value):
        with pytest.raises(ConfigError, match="algorithm.inner_lr"):
            MetaSGD(MetaSGDConfig(inner_lr=value), TinyBody(), n_way=N_WAY, n_train_classes=10)


# -- the peer -------------------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("learn2learn") is None,
                    reason="learn2learn 0.2.0 is a bench-only peer (bench/install_peers.sh) and is not installed")
def test_learn2learn_peer_gives_the_same_logits_loss_and_meta_gradients() -> None:
    """bench/bench_metasgd_vs_learn2learn.py --check-only: identical weights and tasks, float32, both orders."""
    command = [sys.executable, str(ROOT / "bench" / "bench_metasgd_vs_learn2learn.py"), "--check-only",
               "--threads", "1", "--meta-batch", "2"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    checks = [line for line in done.stdout.splitlines() if line.startswith("check ")]
    assert len(checks) == 12 and all(line.rstrip().endswith(" OK") for line in checks), done.stdout[-3000:]
