"""The race package's seams: it imports without torch, everything a race reports or returns pickles
(so a race can run in the training child process), ``Race.steps()`` is the round-robin one step at a
time, and RaceConfig's shared sections are the run config's own."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import engine.race
from engine.config import RunConfig
from engine.race import SHARED_SECTIONS, Race, RaceCallback, RaceConfig, RaceStep, load_race
from tests.engine.test_race import shared_config

STEPS = 3


def tiny_race(root: Path) -> RaceConfig:
    """ProtoNet against Baseline (two streams: episodes and class batches) on the 16-class folder."""
    config = shared_config(root, STEPS)
    config.task.meta_batch_size = 1
    config.train.val_every, config.train.val_episodes = 2, 2
    return RaceConfig.from_run_config(config, ["protonet", "baseline"], test_episodes=3, name="pickled")


class Collect(RaceCallback):
    """Everything the race sends through its callbacks, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def on_race_start(self, info):
        self.sent.append(("start", info))

    def on_step(self, algorithm, metrics, seconds):
        self.sent.append(("step", (algorithm, metrics, seconds)))

    def on_validation(self, algorithm, result, seconds):
        self.sent.append(("validation", (algorithm, result, seconds)))

    def on_algorithm_finished(self, algorithm, row):
        self.sent.append(("row", (algorithm, row)))

    def on_race_finished(self, result):
        self.sent.append(("finished", result))


@pytest.fixture(scope="module")
def stepped_race(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory):
    config = tiny_race(tiny_flat)
    collect = Collect()
    race = Race(config, race_dir=tmp_path_factory.mktemp("runs") / "races" / "pickled", callbacks=[collect])
    steps = list(race.steps())
    return config, race, steps, collect


def test_importing_the_race_and_the_cli_does_not_import_torch():
    code = "import sys, engine.race, engine.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "False"


def test_steps_yields_one_step_per_algorithm_in_turn_and_sets_the_result(stepped_race):
    config, race, steps, collect = stepped_race
    assert all(isinstance(step, RaceStep) for step in steps)
    assert [(s.algorithm, s.metrics.step) for s in steps] == [
        (name, step) for step in range(1, STEPS + 1) for name in ("protonet", "baseline")]
    assert all(s.train_seconds > 0 and s.seconds >= s.train_seconds for s in steps)
    assert race.result is not None and race.result.status == "finished"
    assert collect.sent[-1] == ("finished", race.result)
    assert load_race(race.race_dir).result.to_dict() == race.result.to_dict()


def test_everything_a_race_sends_or_returns_pickles(stepped_race):
    config, race, steps, collect = stepped_race
    kinds = {kind for kind, _ in collect.sent}
    assert kinds == {"start", "step", "validation", "row", "finished"}
    for kind, payload in collect.sent:
        assert pickle.loads(pickle.dumps(payload)) == payload, kind
    for value in (config, race.result, steps):
        assert pickle.loads(pickle.dumps(value)) == value
    copied = pickle.loads(pickle.dumps(config))
    assert copied.to_dict() == config.to_dict() and copied.run_config(copied.algorithms[1]) == \
        config.run_config(config.algorithms[1])
    info = collect.sent[0][1]
    assert pickle.loads(pickle.dumps(info)).streams == info.streams and info.race_dir == race.race_dir
    result = pickle.loads(pickle.dumps(race.result))
    assert result.to_dict() == race.result.to_dict() and result.race_dir == race.race_dir
    assert [row.test_episodes for row in result.rows] == [3, 3]


def test_race_config_shares_the_run_configs_own_sections():
    run_fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    race_fields = {f.name: f for f in dataclasses.fields(RaceConfig)}
    assert set(SHARED_SECTIONS) == set(run_fields) - {"algorithm", "name"}
    for name in SHARED_SECTIONS:
        assert race_fields[name].default_factory is run_fields[name].default_factory
    run = RunConfig()
    run.task.n_way, run.train.steps = 4, 11
    race = RaceConfig.from_run_config(run, ["protonet", "maml"])
    saved = race.to_dict()
    for name in SHARED_SECTIONS:
        assert saved[name] == run.to_dict()[name]
    assert saved["algorithms"] == [race.run_config(a).to_dict()["algorithm"] for a in race.algorithms]


def test_the_package_declares_what_it_exports():
    assert all(hasattr(engine.race, name) for name in engine.race.__all__)
    used_outside = {"AlgorithmResult", "Race", "RaceCallback", "RaceConfig", "RaceInfo", "RaceResult",
                    "CPU_MEMORY_METHOD", "CUDA_MEMORY_METHOD", "MAX_ALGORITHMS", "MIN_ALGORITHMS",
                    "SHARED_STREAM_NOTE", "SavedRace", "batch_kind", "default_race_name", "format_accuracy",
                    "format_memory", "list_races", "load_race", "new_race_dir", "RACE_FILE", "SharedBatchStream",
                    "algorithm_configs", "racer_folder", "state_bytes"}
    assert used_outside <= set(engine.race.__all__)


def test_a_cuda_step_peak_is_the_peak_above_what_the_other_algorithms_held(monkeypatch):
    """The race's CUDA measurement (engine.training.step_memory), checked with the allocator stubbed."""
    import torch

    from engine.training.step_memory import cuda_step_peak_bytes

    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: calls.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 1000)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 1500)
    value, peak = cuda_step_peak_bytes(lambda: calls.append("step") or 7, "cuda:0", own_bytes=300)
    assert value == 7 and peak == 1500 - (1000 - 300)
    assert calls == ["synchronize", "reset", "step"]
