"""torch.distributed scale-out: 2 CPU processes (gloo) train exactly what one process trains.

One real launch, ``python -m torch.distributed.run --standalone --nproc-per-node 2``
(torchrun), whose entry point is this module: it joins the process group from
torchrun's environment, then trains every algorithm through the CLI
(``engine.cli.main(["train", ...])``), so the whole path is exercised: rank
detection, rank 0 alone writing and printing, the split of the meta-batch,
gradient / delta / buffer averaging. Each run is compared with a single-process
run of the same config (same total meta-batch).

Adam and float round-off: the conv biases in front of a batch-statistics
BatchNorm (and a few units whose shift the loss ignores) have an exactly zero
gradient in exact arithmetic; their computed gradient is round-off (~1e-9), and
Adam, which divides by the gradient's own magnitude, turns it into steps of +-lr.
Any change of summation order (two processes, other thread counts) flips them. The
same amplification, milder, acts on every gradient element near eps: Adam's step
g / (|g| + eps) changes fastest there, so a round-off difference d in such an element
moves its weight by up to lr * d / (4 eps), and the trajectories drift apart from
there. Both sides of the comparison therefore run Adam with eps = 1e-2
(``well_conditioned_adam``). Measured on a 2-core
AVX-512 EPYC: the largest difference between the two-process and one-process weights
was 6.7e-5 with eps = 1e-4 (over the 1e-5 tolerance), 1.5e-6 with 1e-3, 1.8e-7 with
1e-2; and with eps = 1e-2 the comparison still fails for every algorithm when the
ranks' gradients are summed instead of averaged (checked by breaking that division).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from engine.config import RunConfig
from engine.data.types import Task
from engine.errors import ConfigError
from engine.models.batchnorm import EpisodeBatchNorm2d, batch_statistics, episode_statistics
from engine.models.conv4 import Conv4
from engine.runtime import collective
from engine.training import distributed
from engine.training.checkpoint import load_checkpoint
from engine.training.trainer import Trainer

from .helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]
STEPS = 3
TEST_ADAM_EPS = 1e-2
EXACT = ["protonet", "matching", "fomaml", "maml", "reptile"]   # episodic: equal to one process
DATA_PARALLEL = ["baseline"]    # split batches, per-rank BatchNorm statistics (as DDP without SyncBatchNorm)


@contextlib.contextmanager
def well_conditioned_adam() -> Iterator[None]:
    """Every ``torch.optim.Adam`` built in the block uses eps = TEST_ADAM_EPS (see the module doc)."""
    original = torch.optim.Adam.__init__

    def patched(self, params, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["eps"] = TEST_ADAM_EPS
        original(self, params, *args, **kwargs)

    torch.optim.Adam.__init__ = patched
    try:
        yield
    finally:
        torch.optim.Adam.__init__ = original


def distributed_config(root: Path, algorithm: str) -> RunConfig:
    config = tiny_config(root, algorithm, steps=STEPS)
    config.task.meta_batch_size = 4
    config.train.val_every, config.train.val_episodes, config.train.checkpoint_every = 0, 3, 100
    config.train.num_threads = 1
    config.train.precision = "fp32"  # equality of the maths, not of bf16 rounding (auto may pick bf16 on this CPU)
    if algorithm == "reptile":
        config.algorithm.inner_steps = 2
    if algorithm == "baseline":
        config.algorithm.batch_size = 8
    return config


def final_modules(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt").algorithm_state["modules"]


def assert_same_modules(actual: dict, expected: dict, atol: float = 1e-5) -> None:
    assert actual.keys() == expected.keys()
    for module, state in expected.items():
        for key, value in state.items():
            if value.is_floating_point():
                assert torch.allclose(actual[module][key], value, atol=atol, rtol=1e-4), f"{module}.{key}"
            else:
                assert torch.equal(actual[module][key], value), f"{module}.{key}"


def single_process_run(config: RunConfig, run_dir: Path) -> dict:
    with well_conditioned_adam():
        summary = Trainer(config, run_dir=run_dir).run()
    assert summary.status == "finished", summary.message
    return final_modules(run_dir)


# -- the torchrun launch -----------------------------------------------------------------------------------------
def torchrun_entry(jobs_file: str) -> int:
    """Runs in each of torchrun's processes: join the group once, then ``meta-engine train`` per job."""
    from engine.cli import main

    torch.set_num_threads(1)
    distributed.init_distributed("cpu")
    try:
        with well_conditioned_adam():
            for job in json.loads(Path(jobs_file).read_text()):
                code = main(["train", "--config", job["config"], "--run-dir", job["run_dir"], "--quiet"])
                if code:
                    return code
    finally:
        distributed.cleanup()
    leftover = gloo_threads()
    if leftover:  # they would abort the interpreter's exit now and then (distributed._import_dynamo_first)
        print(f"gloo threads outlived cleanup(): {leftover}", file=sys.stderr)
        return 3
    return 0


def gloo_threads() -> list[str]:
    """Names of this process's native gloo threads (Linux; [] where /proc is missing)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return []
    names = []
    for task in tasks.iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            names.append((task / "comm").read_text().strip())
    return [name for name in names if "gloo" in name]


@pytest.fixture(scope="module")
def torchrun_runs(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Every algorithm of EXACT + DATA_PARALLEL trained by 2 gloo processes; (folder, torchrun's stdout)."""
    out = tmp_path_factory.mktemp("torchrun")
    jobs = []
    for name in EXACT + DATA_PARALLEL:
        config_path = out / f"{name}.json"
        config_path.write_text(json.dumps(distributed_config(tiny_flat, name).to_dict()))
        jobs.append({"config": str(config_path), "run_dir": str(out / name)})
    (out / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "tests.engine.test_distributed", str(out / "jobs.json")]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return out, result.stdout


@pytest.mark.parametrize("name", EXACT)
def test_two_processes_equal_one_process_with_the_same_meta_batch(name: str, torchrun_runs: tuple[Path, str],
                                                                   tiny_flat: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    expected = single_process_run(distributed_config(tiny_flat, name), tmp_path / "single")
    assert_same_modules(final_modules(torchrun_runs[0] / name), expected)


@pytest.mark.parametrize("name", EXACT + DATA_PARALLEL)
def test_rank_zero_alone_writes_and_prints(name: str, torchrun_runs: tuple[Path, str]) -> None:
    out, stdout = torchrun_runs
    run_dir = out / name
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert stdout.splitlines().count(str(run_dir)) == 1  # printed by rank 0 only
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["kind"] == "step"] == list(range(1, STEPS + 1))  # one writer


# -- in-process pieces ---------------------------------------------------------------------------------------------
def test_per_episode_batchnorm_equals_one_forward_per_episode() -> None:
    torch.manual_seed(0)
    backbone = Conv4(1, 28, 8)
    episodes = torch.randn(3, 10, 1, 28, 28)
    twin = Conv4(1, 28, 8)
    twin.load_state_dict(backbone.state_dict())
    with batch_statistics(backbone, groups=3):
        together = backbone(episodes.flatten(0, 1)).unflatten(0, (3, 10))
    separately = torch.stack([twin(x) for x in episodes])
    assert torch.allclose(together, separately, atol=1e-5)
    layers = [m for m in backbone.modules() if isinstance(m, EpisodeBatchNorm2d)]
    assert layers and all(int(layer.num_batches_tracked) == 1 for layer in layers)  # one update per forward


def test_grouped_running_statistics_average_the_episodes() -> None:
    torch.manual_seed(1)
    layer, reference = EpisodeBatchNorm2d(4), torch.nn.BatchNorm2d(4)
    x = torch.randn(2, 6, 4, 5, 5)
    with batch_statistics(layer, groups=2):
        layer(x.flatten(0, 1))
    expected_mean = torch.zeros(4)
    expected_var = torch.zeros(4)
    for episode in x:
        fresh = torch.nn.BatchNorm2d(4)
        fresh(episode)
        expected_mean += fresh.running_mean / 2
        expected_var += fresh.running_var / 2
    assert torch.allclose(layer.running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(layer.running_var, expected_var, atol=1e-6)
    assert reference.running_mean.abs().sum() == 0  # untouched reference: the check above is not vacuous


def test_episodes_one_by_one_update_running_statistics_like_one_grouped_forward() -> None:
    torch.manual_seed(0)
    grouped, one_by_one = Conv4(1, 28, 8), Conv4(1, 28, 8)
    one_by_one.load_state_dict(grouped.state_dict())
    episodes = torch.randn(3, 10, 1, 28, 28)
    with batch_statistics(grouped, groups=3):
        together = grouped(episodes.flatten(0, 1))
    with episode_statistics(one_by_one):
        separately = torch.cat([one_by_one(x) for x in episodes])
    assert torch.allclose(together, separately, atol=1e-5)
    for key, value in grouped.state_dict().items():
        assert torch.allclose(one_by_one.state_dict()[key].float(), value.float(), atol=1e-6), key
    assert int(grouped.state_dict()["blocks.0.1.num_batches_tracked"]) == 1


@pytest.mark.parametrize("one_forward", [True, False])
def test_protonet_tasks_do_not_influence_each_other(one_forward: bool) -> None:
    from engine.algorithms.functional import embed_tasks

    torch.manual_seed(0)
    backbone = Conv4(1, 28, 8)
    g = torch.Generator().manual_seed(0)
    tasks = [Task(torch.randn(4, 1, 28, 28, generator=g), torch.arange(2).repeat(2),
                  torch.randn(6, 1, 28, 28, generator=g), torch.arange(2).repeat(3)) for _ in range(4)]
    all_four = embed_tasks(backbone, tasks, one_forward=one_forward)
    first_two = embed_tasks(backbone, tasks[:2], one_forward=one_forward)
    alone = [backbone(torch.cat([t.support_x, t.query_x])) for t in tasks]
    for (s_all, q_all), (s_two, q_two), reference in zip(all_four[:2], first_two, alone):
        assert torch.allclose(s_all, s_two, atol=1e-5) and torch.allclose(q_all, q_two, atol=1e-5)
        assert torch.allclose(torch.cat([s_all, q_all]), reference, atol=1e-5)


def test_meta_batch_must_split_evenly(tiny_flat: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collective, "current_world", lambda: collective.World(0, 3, 0, "gloo"))
    config = distributed_config(tiny_flat, "protonet")
    summary = Trainer(config).run()
    assert summary.status == "failed"
    assert "task.meta_batch_size" in summary.message and "3" in summary.message
    baseline = distributed_config(tiny_flat, "baseline")
    summary = Trainer(baseline).run()
    assert summary.status == "failed" and "algorithm.batch_size" in summary.message


def test_shard_covers_the_batch_in_equal_slices() -> None:
    worlds = [collective.World(rank, 4, rank, "gloo") for rank in range(4)]
    slices = [collective.shard(8, world) for world in worlds]
    assert [list(range(8))[s] for s in slices] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert collective.shard(8, None) == slice(0, 8)


def test_torchrun_env_detection() -> None:
    assert distributed.torchrun_env({}) is None
    assert distributed.torchrun_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert distributed.torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == (1, 2, 1)
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        distributed.torchrun_env({"RANK": "x", "WORLD_SIZE": "2"})
    assert distributed.init_distributed("cpu", env={}) is None
    assert collective.is_main_process()


def test_torchrun_command_lines() -> None:
    single = distributed.torchrun_command("/runs/my config.json", 4)
    assert single == "torchrun --standalone --nproc-per-node=4 -m engine train --config '/runs/my config.json'"
    multi = distributed.torchrun_command("cfg.json", 8, nnodes=2, rdzv_endpoint="node0:29500")
    assert multi.startswith("torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d "
                            "--rdzv-endpoint=node0:29500 --rdzv-id=meta-studio")
    assert multi.endswith("-m engine train --config cfg.json")
    with pytest.raises(ConfigError, match="rendezvous"):
        distributed.torchrun_command("cfg.json", 8, nnodes=2)
    with pytest.raises(ConfigError):
        distributed.torchrun_command("cfg.json", 0)


if __name__ == "__main__":  # the entry point torchrun runs (see torchrun_runs)
    sys.exit(torchrun_entry(sys.argv[1]))


def test_handoff_problems_name_the_field_that_does_not_split() -> None:
    from engine.config import RunConfig

    episodic = RunConfig.from_dict({"task": {"meta_batch_size": 6}})
    assert distributed.handoff_problems(episodic, 3) == []
    assert "task.meta_batch_size (6)" in distributed.handoff_problems(episodic, 4)[0]
    baseline = RunConfig.from_dict({"algorithm": {"name": "baseline", "batch_size": 64}})
    assert distributed.handoff_problems(baseline, 4) == []
    assert "algorithm.batch_size (64)" in distributed.handoff_problems(baseline, 3)[0]
