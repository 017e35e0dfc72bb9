"""Sinusoid regression (engine/regression.py): the batched MLP and MAML step against the reference
implementations, fit trajectories, short training, evaluation, files, bad input and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from engine.algorithms.maml import fit_regression, maml_meta_gradient
from engine.cli import main as cli_main
from engine.data.sinusoid import SinusoidTasks
from engine.errors import CheckpointError, ConfigError
from engine.models.mlp import MLP
from engine.regression import (FILE_NAMES, PARAM_SHAPES, RegressionConfig, RegressionModel, batched_forward,
                               evaluate_regression, fit_trajectory, init_params, load_models, load_regression_model,
                               maml_meta_loss, save_models, save_regression_model, sine_batch,
                               train_maml_regression, train_pretrained_regression, trajectory_mse,
                               validate_regression_config)

torch.set_num_threads(1)
ASSETS = Path(__file__).resolve().parents[2] / "assets"
SHORT = dict(steps=100, meta_batch_size=10)


def mlp_with(params: dict[str, torch.Tensor]) -> MLP:
    model = MLP()
    model.load_state_dict(params)
    return model


@pytest.fixture(scope="module")
def short_maml() -> RegressionModel:
    return train_maml_regression(RegressionConfig(**SHORT))


# -- the batched network and MAML step match the reference implementations ----------------------------------
def test_batched_forward_is_the_mlp_for_each_task() -> None:
    per_task = [init_params(seed) for seed in range(3)]
    x = torch.linspace(-5, 5, 7).reshape(1, 7, 1).expand(3, 7, 1)
    stacked = [torch.stack([p[name] for p in per_task]) for name in PARAM_SHAPES]
    out = batched_forward(stacked, x)
    assert out.shape == (3, 7, 1)
    for t, params in enumerate(per_task):
        torch.testing.assert_close(out[t], mlp_with(params)(x[t]))


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_maml_meta_loss_gives_the_reference_second_order_meta_gradient(inner_steps: int) -> None:
    model = mlp_with(init_params(0))
    x, y = sine_batch(SinusoidTasks(seed=3), 4, 15)
    params = list(model.parameters())
    loss = maml_meta_loss(params, x[:, :5], y[:, :5], x[:, 5:], y[:, 5:], inner_lr=0.01, inner_steps=inner_steps)
    grads = torch.autograd.grad(loss, params)
    reference = maml_meta_gradient(model, list(zip(x[:, :5], y[:, :5], x[:, 5:], y[:, 5:])), inner_lr=0.01,
                                   inner_steps=inner_steps, first_order=False, loss_fn=F.mse_loss)
    assert loss.item() == pytest.approx(reference.loss, rel=1e-5)
    for name, grad in zip(PARAM_SHAPES, grads):
        torch.testing.assert_close(grad, reference.grads[name], rtol=1e-4, atol=1e-6)


def test_init_params_is_seeded_and_leaves_the_global_generator_alone() -> None:
    state = torch.random.get_rng_state()
    a, b, c = init_params(5), init_params(5), init_params(6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[n], b[n]) for n in PARAM_SHAPES)
    assert not torch.equal(a["layers.2.weight"], c["layers.2.weight"])
    assert float(a["layers.2.weight"].abs().max()) <= 1 / math.sqrt(40)   # nn.Linear's default bound


# -- fit_trajectory --------------------------------------------------------------------------------------------
def test_fit_trajectory_step_zero_is_the_unadapted_model_and_follows_fit_regression() -> None:
    params = init_params(1)
    task = SinusoidTasks(seed=2).sample(k_shot=5, k_query=0)
    grid = torch.linspace(-5, 5, 50)
    trajectory = fit_trajectory(params, task.x_support, task.y_support, grid, steps=4, lr=0.02)
    assert trajectory.shape == (5, 50)
    model = mlp_with(params)
    with torch.no_grad():
        torch.testing.assert_close(trajectory[0], model(grid.reshape(-1, 1))[:, 0])
        for step, fitted in enumerate(fit_regression(model, task.x_support, task.y_support, 0.02, 4)):
            expected = functional_call(model, fitted, (grid.reshape(-1, 1),))[:, 0]
            torch.testing.assert_close(trajectory[step], expected, rtol=1e-4, atol=1e-5)
    assert not torch.equal(trajectory[1], trajectory[0])
    assert torch.equal(params["layers.0.weight"], init_params(1)["layers.0.weight"])   # not modified


def test_fit_trajectory_without_points_keeps_the_model_and_rejects_mismatched_sets() -> None:
    trajectory = fit_trajectory(init_params(0), torch.zeros(0), torch.zeros(0), torch.linspace(-5, 5, 9), steps=3)
    assert trajectory.shape == (4, 9) and all(torch.equal(row, trajectory[0]) for row in trajectory)
    with pytest.raises(ConfigError, match="support set"):
        fit_trajectory(init_params(0), torch.zeros(3), torch.zeros(2), torch.zeros(4))


# -- training and evaluation -------------------------------------------------------------------------------------
def test_short_trained_maml_improves_with_a_step_and_fits_its_support_points(short_maml: RegressionModel) -> None:
    assert short_maml.steps_done == SHORT["steps"] and not short_maml.stopped
    assert math.isfinite(short_maml.final_loss)
    evaluation = evaluate_regression({"maml": short_maml}, n_tasks=100, k=5, steps=(0, 1, 10), seed=11)
    mse = evaluation.mse["maml"]
    assert mse[1].mean < mse[0].mean     # averaged over 100 fresh tasks
    support_losses = []
    for task in SinusoidTasks(seed=12).sample_batch(5, k_shot=5, k_query=0):
        trajectory = fit_trajectory(short_maml.params, task.x_support, task.y_support, task.x_support, steps=10)
        support_losses.append(trajectory_mse(trajectory, task.y_support[:, 0]))
    mean_support = torch.stack(support_losses).mean(0)
    assert mean_support[10] < mean_support[1] < mean_support[0]


def test_training_reports_progress_and_stops_when_asked() -> None:
    calls: list[tuple[int, int]] = []
    model = train_pretrained_regression(RegressionConfig(steps=50, meta_batch_size=4),
                                        progress=lambda d, t: calls.append((d, t)),
                                        should_stop=lambda: len(calls) >= 7)
    assert model.stopped and model.steps_done == 7 and calls[-1] == (7, 50)
    before = init_params(0)
    assert not torch.equal(model.params["layers.4.weight"], before["layers.4.weight"])   # it did learn


def test_evaluation_uses_the_same_tasks_for_every_model(short_maml: RegressionModel) -> None:
    evaluation = evaluate_regression({"a": short_maml, "b": short_maml.params}, n_tasks=30, steps=(1, 3), seed=4)
    assert evaluation.mse["a"][3] == evaluation.mse["b"][3]
    assert evaluation.steps == (1, 3) and len(evaluation.per_task["a"][1]) == 30
    # step 0 equals the plain MSE of the untouched model on the same query points
    x, y = sine_batch(SinusoidTasks(seed=4), 30, 5 + 100)
    direct = evaluate_regression({"m": short_maml}, n_tasks=30, steps=(0,), seed=4).mse["m"][0].mean
    with torch.no_grad():
        expected = (mlp_with(short_maml.params)(x[:, 5:]) - y[:, 5:]).pow(2).mean().item()
    assert direct == pytest.approx(expected, rel=1e-5)


def test_shipped_models_reproduce_the_paper_ordering() -> None:
    models = load_models(ASSETS)
    assert {m.kind for m in models.values()} == {"maml", "pretrained"}
    evaluation = evaluate_regression(models, n_tasks=200, k=5, steps=(1, 10), seed=99)
    maml, pretrained = evaluation.mse["maml"], evaluation.mse["pretrained"]
    assert maml[10].mean < maml[1].mean < pretrained[1].mean
    assert maml[10].mean < 1.0 and pretrained[10].mean > 1.5


# -- files -----------------------------------------------------------------------------------------------------
def test_save_load_round_trip(short_maml: RegressionModel, tmp_path: Path) -> None:
    path = save_regression_model(tmp_path / "m.pt", short_maml)
    assert path.stat().st_size < 20_000
    loaded = load_regression_model(path)
    assert loaded.kind == "maml" and loaded.steps_done == short_maml.steps_done
    assert loaded.config == short_maml.config
    for name in PARAM_SHAPES:
        assert torch.equal(loaded.params[name], short_maml.params[name])
    grid = torch.linspace(-5, 5, 11)
    assert torch.equal(loaded.predict(grid), short_maml.predict(grid))
    paths = save_models(tmp_path / "both", {"maml": short_maml, "pretrained": short_maml})
    assert paths["maml"].name == FILE_NAMES["maml"]
    with pytest.raises(CheckpointError, match="expected 'pretrained'"):
        load_models(tmp_path / "both")


def test_bad_files_are_refused_naming_the_file(short_maml: RegressionModel, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint file not found"):
        load_regression_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_regression_model(tmp_path / "junk.pt")
    good = torch.load(save_regression_model(tmp_path / "good.pt", short_maml), weights_only=True)
    cases = {
        "shape": lambda p: p["params"].__setitem__("layers.2.weight", torch.zeros(3, 3)),
        "non-finite": lambda p: p["params"]["layers.0.bias"].fill_(float("nan")),
        "unknown model kind": lambda p: p.__setitem__("kind", "reptile"),
        "regression.steps": lambda p: p["config"].__setitem__("steps", -1),
        "parameters": lambda p: p["params"].pop("layers.4.bias"),
    }
    for expected, corrupt in cases.items():
        payload = {**good, "params": {n: t.clone() for n, t in good["params"].items()}, "config": dict(good["config"])}
        corrupt(payload)
        torch.save(payload, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=expected) as info:
            load_regression_model(tmp_path / "bad.pt")
        assert "bad.pt" in str(info.value)


# -- bad config --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("k_shot", 0), ("meta_batch_size", 2.5), ("inner_lr", 0.0),
                                          ("steps", True), ("meta_lr", float("nan")), ("test_steps", 0)])
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"regression.{field}"):
        validate_regression_config(RegressionConfig(**{field: value}))
    with pytest.raises(ConfigError, match=f"regression.{field}"):
        train_maml_regression(RegressionConfig(**{field: value}))


def test_config_from_dict_rejects_unknown_fields() -> None:
    assert RegressionConfig.from_dict({"k_shot": 10}).k_shot == 10
    with pytest.raises(ConfigError, match="regression.shots: unknown field"):
        RegressionConfig.from_dict({"shots": 10})


# -- CLI ---------------------------------------------------------------------------------------------------------
def test_cli_json_output_on_a_tiny_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["regression", "--k", "3", "--steps", "4", "--eval-tasks", "20", "--out", str(tmp_path),
                     "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["k_shot"] == 3 and report["config"]["steps"] == 4
    evaluation = report["evaluation"]
    assert evaluation["n_tasks"] == 20 and evaluation["k_shot"] == 3 and evaluation["steps"] == [1, 10]
    for name in ("maml", "pretrained"):
        for step in ("1", "10"):
            stat = evaluation["mse"][name][step]
            assert stat["mean"] > 0 and stat["ci95"] >= 0
        assert report["models"][name]["steps_done"] == 4
        assert load_regression_model(report["models"][name]["file"]).kind == name
    assert report["paper"]["maml"] == {"1": 0.67, "10": 0.35}


def test_cli_table_and_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["regression", "--steps", "2", "--eval-tasks", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "MSE after 1 step" in out and "MSE after 10 steps" in out and "0.67 / 0.35" in out
    assert cli_main(["regression", "--k", "0"]) == 2
    assert "regression.k_shot must be at least 1" in capsys.readouterr().err
