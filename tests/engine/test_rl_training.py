"""Meta-training, evaluation, policy files and ``meta-engine rl`` (engine/rl): seeded reproducibility, what
each algorithm learns in a few iterations, safe loading, the shipped policies, and bad input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from engine.cli import main as cli_main
from engine.errors import CheckpointError, ConfigError
from engine.rl.config import NavigationConfig, validate_config
from engine.rl.evaluation import adapt_to_goal, evaluate_policies
from engine.rl.store import FILE_NAMES, load_policies, load_policy, save_policy
from engine.rl.training import train_policy

torch.set_num_threads(1)
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "policies"
TINY = dict(meta_iters=3, meta_batch_size=3, trajectories=4, horizon=20, hidden=16)


@pytest.mark.parametrize("algorithm,first_order", [("maml", False), ("maml", True), ("reptile", False),
                                                   ("pretrained", False)])
def test_training_is_seeded_and_reproducible(algorithm: str, first_order: bool) -> None:
    config = NavigationConfig(algorithm=algorithm, first_order=first_order, **TINY)
    first, again = train_policy(config), train_policy(config)
    other = train_policy(NavigationConfig(algorithm=algorithm, first_order=first_order, seed=1, **TINY))
    assert first.iterations_done == 3 and len(first.history) == 3
    for name, tensor in first.params.items():
        torch.testing.assert_close(tensor, again.params[name], rtol=0, atol=0)
    assert first.history == again.history
    assert not torch.equal(first.params["layers.1.weight"], other.params["layers.1.weight"])


def test_first_and_second_order_maml_take_different_steps() -> None:
    second = train_policy(NavigationConfig(algorithm="maml", **TINY))
    first = train_policy(NavigationConfig(algorithm="maml", first_order=True, **TINY))
    assert not torch.allclose(second.params["layers.0.weight"], first.params["layers.0.weight"])


def test_progress_history_and_stop() -> None:
    seen: list[tuple[int, int]] = []
    history: list[tuple[float, float]] = []
    policy = train_policy(NavigationConfig(**TINY), progress=lambda d, t: seen.append((d, t)), history=history)
    assert seen == [(1, 3), (2, 3), (3, 3)] and history == policy.history
    assert all(-200 < before < 0 and -200 < after < 0 for before, after in history)
    stopped = train_policy(NavigationConfig(**TINY), should_stop=lambda: True)
    assert stopped.stopped and stopped.iterations_done == 0


def test_evaluation_is_reproducible_and_the_same_for_every_policy_name() -> None:
    params = train_policy(NavigationConfig(**TINY)).params
    one = evaluate_policies({"a": params}, n_goals=5, trajectories=3)
    two = evaluate_policies({"b": params, "a": params}, n_goals=5, trajectories=3)
    assert one.returns["a"] == two.returns["a"] == two.returns["b"]
    assert sorted(one.returns["a"]) == [0, 1, 2, 3]
    assert all(stat.ci95 > 0 for stat in one.returns["a"].values())


def test_adapting_to_a_goal_gives_paths_and_returns_per_step() -> None:
    policies = load_policies(ASSETS)
    result = adapt_to_goal({k: p.params for k, p in policies.items()}, (0.4, -0.3), steps=3)
    assert set(result.paths) == {"maml", "reptile", "pretrained"}
    assert result.paths["maml"].shape == (4, 101, 2) and result.returns["maml"].shape == (4,)
    episodes = result.episodes["maml"]
    assert episodes.shape == (4, 20, 101, 2) and (episodes[:, :, 0] == 0).all()
    torch.testing.assert_close(result.paths["maml"], episodes.mean(dim=1))
    moves = (episodes[:, :, 1:] - episodes[:, :, :-1]).abs()
    assert moves.max() <= 0.1 + 1e-6
    distance = (episodes[:, :, 1:] - torch.tensor([0.4, -0.3])).norm(dim=-1)
    torch.testing.assert_close(result.returns["maml"], -distance.sum(-1).mean(-1))   # returns of these episodes
    maml = result.paths["maml"]
    assert not torch.allclose(maml[0], maml[1])     # one step changes the path
    goal = torch.tensor([0.4, -0.3])
    assert (maml[1, -1] - goal).norm() < (maml[0, -1] - goal).norm()   # ... towards the goal
    with pytest.raises(ConfigError, match="outside the task family's square"):
        adapt_to_goal({k: p.params for k, p in policies.items()}, (0.4, 0.9))


def test_the_shipped_maml_policy_adapts_in_one_step_and_beats_the_pretrained_one() -> None:
    policies = load_policies(ASSETS)
    evaluation = evaluate_policies({k: p.params for k, p in policies.items()}, n_goals=40)
    maml, pretrained = evaluation.returns["maml"], evaluation.returns["pretrained"]
    assert maml[1].mean - maml[0].mean > 2 * (maml[1].ci95 + maml[0].ci95)
    assert maml[1].mean - pretrained[1].mean > 2 * (maml[1].ci95 + pretrained[1].ci95)
    assert evaluation.returns["reptile"][1].mean > pretrained[1].mean


# -- files --------------------------------------------------------------------------------------------------
def test_a_policy_file_round_trips(tmp_path: Path) -> None:
    policy = train_policy(NavigationConfig(algorithm="reptile", **TINY))
    path = save_policy(tmp_path / "p.pt", policy)
    loaded = load_policy(path)
    assert loaded.kind == "reptile" and loaded.config == policy.config and loaded.iterations_done == 3
    assert [v for row in loaded.history for v in row] == pytest.approx([v for row in policy.history for v in row])
    for name, tensor in policy.params.items():
        assert torch.equal(loaded.params[name], tensor)


def test_corrupt_truncated_and_foreign_files_are_refused_with_the_file_named(tmp_path: Path) -> None:
    good = save_policy(tmp_path / "good.pt", train_policy(NavigationConfig(**TINY)))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a policy at all")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    for path, message in ((garbage, "not a navigation policy file"), (truncated, "not a navigation policy file"),
                          (tmp_path / "missing.pt", "not found")):
        with pytest.raises(CheckpointError, match=message) as caught:
            load_policy(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_files_with_wrong_parameters_are_refused(tmp_path: Path) -> None:
    policy = train_policy(NavigationConfig(**TINY))
    policy.params["layers.1.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r"layers.1.weight should be a float tensor of shape \(16, 16\)"):
        load_policy(_raw_save(tmp_path, policy))
    policy.params["layers.1.weight"] = torch.full((16, 16), float("nan"))
    with pytest.raises(CheckpointError, match="non-finite"):
        load_policy(_raw_save(tmp_path, policy))


def _raw_save(tmp_path: Path, policy) -> Path:
    """Save bypassing the shapes save_policy takes from the config (a file another program wrote)."""
    from engine.io import atomic_torch_save
    from engine.rl.store import FORMAT

    path = tmp_path / "raw.pt"
    atomic_torch_save(path, {"format": FORMAT, "version": 1, "kind": policy.kind, "config": policy.config.to_dict(),
                             "iterations_done": 1, "params": dict(policy.params)})
    assert zipfile.is_zipfile(path)
    return path


def test_zero_meta_iterations_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^rl.meta_iters must be at least 1 \(got 0\)$"):
        validate_config(NavigationConfig(meta_iters=0))


# -- the CLI ------------------------------------------------------------------------------------------------
def test_cli_trains_evaluates_and_saves(tmp_path: Path, capsys) -> None:
    out = tmp_path / "maml.pt"
    code = cli_main(["rl", "--algorithm", "maml", "--meta-iters", "2", "--meta-batch", "2", "--trajectories", "3",
                     "--eval-goals", "4", "--out", str(out), "--quiet", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["evaluation"]["returns"]["maml"]) == {"0", "1", "2", "3"}
    assert report["policies"]["maml"]["iterations_done"] == 2 and report["policies"]["maml"]["file"] == str(out)
    assert load_policy(out).iterations_done == 2


def test_cli_evaluates_the_shipped_policies_and_one_goal(capsys) -> None:
    files = [str(ASSETS / FILE_NAMES[k]) for k in ("maml", "pretrained")]
    assert cli_main(["rl", "--policy", *files[:1], "--policy", files[1], "--eval-goals", "3", "--eval-steps", "1"]) == 0
    text = capsys.readouterr().out
    assert "MAML" in text and "pre-trained" in text and "1 step" in text
    assert cli_main(["rl", "--policy", files[0], "--goal", "0.2,-0.1", "--json"]) == 0
    returns = json.loads(capsys.readouterr().out)["returns"]["maml"]
    assert len(returns) == 4 and returns[1] > returns[0]


@pytest.mark.parametrize("argv,message", [
    (["--meta-iters", "0"], "error: rl.meta_iters must be at least 1 (got 0)"),
    (["--goal", "0.7,0"], "error: --goal: (0.7, 0) is outside the task family's square [-0.5, 0.5]^2"),
    (["--goal", "north"], "error: --goal: expected X,Y (two numbers), got 'north'"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(argv: list[str], message: str, capsys) -> None:
    assert cli_main(["rl", *argv]) == 2
    assert capsys.readouterr().err.strip() == message


def test_cli_refuses_a_corrupt_policy_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 64)
    assert cli_main(["rl", "--policy", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: not a navigation policy file") and "\n" not in err
