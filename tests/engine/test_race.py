"""The algorithm race: one data set, one episode stream, interleaved steps, one table, a folder to reopen."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from engine import cli
from engine.algorithms.registry import ALGORITHMS, display_title
from engine.config import BaselinePlusPlusConfig, MAMLConfig, RunConfig
from engine.data.dataset import load_data
from engine.errors import ConfigError, EngineError
from engine.cli.race import format_table
from engine.race import (CPU_MEMORY_METHOD, RACE_FILE, Race, RaceCallback, RaceConfig, SharedBatchStream,
                         algorithm_configs, delete_race, list_races, load_race, racer_folder, state_bytes)
from engine.training import run_store as rs
from engine.training.checkpoint import load_checkpoint
from engine.training.control import RunControl

STEPS = 6
TEST_EPISODES = 8


def shared_config(root: Path, steps: int = STEPS) -> RunConfig:
    """Tiny shared settings on the 16-class synthetic folder (8 train / 4 val / 4 test classes)."""
    config = RunConfig()
    config.data.root = str(root)
    config.data.train_ratio, config.data.val_ratio = 0.5, 0.25
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 3, 1, 2, 2
    config.model.hidden_channels = 16
    config.train.steps, config.train.val_every, config.train.val_episodes = steps, 3, 3
    config.train.checkpoint_every, config.train.num_threads = 1000, 1
    return config


def race_config(root: Path, steps: int = STEPS) -> RaceConfig:
    algorithms = ["protonet", MAMLConfig(test_inner_steps=1), BaselinePlusPlusConfig(finetune_steps=5)]
    return RaceConfig.from_run_config(shared_config(root, steps), algorithms, test_episodes=TEST_EPISODES)


def batch_digest(batch) -> str:
    """A hash of every tensor of a training batch (list of Tasks or one ClassBatch)."""
    digest = hashlib.sha1()
    for item in batch if isinstance(batch, list) else [batch]:
        for value in vars(item).values():
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Recorder(RaceCallback):
    def __init__(self, stop_at: tuple[str, int] | None = None, control: RunControl | None = None) -> None:
        self.started, self.steps, self.validations, self.finished_rows, self.results, self.failures = \
            [], {}, {}, {}, [], []
        self.stop_at, self.control = stop_at, control
        self.events: list[tuple] = []  # trained and evaluation progress, in order

    def on_algorithm_trained(self, algorithm, status):
        self.events.append(("trained", algorithm, status, len(self.steps.get(algorithm, []))))

    def on_evaluation_progress(self, algorithm, done, total):
        self.events.append(("evaluating", algorithm, done, total))

    def on_race_start(self, info):
        self.started.append(info)

    def on_step(self, algorithm, metrics, seconds):
        self.steps.setdefault(algorithm, []).append((metrics.step, seconds))
        if self.stop_at == (algorithm, metrics.step):
            self.control.stop()

    def on_validation(self, algorithm, result, seconds):
        self.validations.setdefault(algorithm, []).append((result.step, seconds))

    def on_algorithm_finished(self, algorithm, row):
        self.finished_rows[algorithm] = row
        self.events.append(("row", algorithm))

    def on_race_finished(self, result):
        self.results.append(result)

    def on_failed(self, message):
        self.failures.append(message)


@pytest.fixture(scope="module")
def finished_race(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory):
    """One tiny race of ProtoNet, MAML and Baseline++, with the batch each algorithm trained on recorded."""
    seen: dict[str, list[str]] = {}
    originals = {}
    for name in ("protonet", "maml", "baseline++"):
        cls = ALGORITHMS[name]
        originals[name] = cls.meta_train_step

        def recording(self, batch, _original=cls.meta_train_step):
            seen.setdefault(self.config.name, []).append(batch_digest(batch))
            return _original(self, batch)

        cls.meta_train_step = recording
    runs_root = tmp_path_factory.mktemp("runs")
    race_dir = runs_root / "races" / "tiny"
    recorder = Recorder()
    try:
        result = Race(race_config(tiny_flat), race_dir=race_dir, callbacks=[recorder]).run()
    finally:
        for name, original in originals.items():
            ALGORITHMS[name].meta_train_step = original
    return result, recorder, seen, race_dir, runs_root


def test_every_episodic_algorithm_trains_on_the_same_seeded_tasks_at_every_step(finished_race, tiny_flat):
    result, recorder, seen, _, _ = finished_race
    assert result.status == "finished", (result.message, recorder.failures)
    # STEPS training steps, then one more step (on a batch like the first) profiled for the memory column
    training = {name: digests[:STEPS] for name, digests in seen.items()}
    assert all(seen[name][STEPS:] == [training[name][0]] for name in seen)
    assert training["protonet"] == training["maml"]  # step t: identical support and query tensors
    assert len(set(training["protonet"])) == STEPS  # and a new episode batch every step
    config = shared_config(tiny_flat)
    data = load_data(config.data)
    episodes = data.episodes("train", 3, 1, 2, config.train.seed)
    assert training["protonet"] == [batch_digest(episodes.sample_batch(2)) for _ in range(STEPS)]
    # the class-batch algorithm reads its own seeded class-batch stream
    batches = data.class_batches(BaselinePlusPlusConfig().batch_size, config.train.seed)
    assert training["baseline++"] == [batch_digest(batches.sample()) for _ in range(STEPS)]


def test_the_race_reports_one_curve_per_algorithm_in_own_compute_seconds(finished_race):
    result, recorder, _, _, _ = finished_race
    assert set(recorder.steps) == {"protonet", "maml", "baseline++"}
    for name, points in recorder.steps.items():
        assert [step for step, _ in points] == list(range(1, STEPS + 1))
        seconds = [s for _, s in points]
        assert all(b > a for a, b in zip(seconds, seconds[1:])) and seconds[0] > 0
        assert result.row(name).train_seconds == pytest.approx(seconds[-1])
        assert [step for step, _ in recorder.validations[name]] == [3, 6]
    info = recorder.started[0]
    assert info.algorithms == ["protonet", "maml", "baseline++"]
    assert "shared seeded episodes (with maml)" in info.streams["protonet"]
    assert "class batches" in info.streams["baseline++"]


def test_the_table_has_test_accuracy_with_ci_time_and_memory_for_each(finished_race):
    result, recorder, _, _, _ = finished_race
    assert [row.algorithm for row in result.rows] == ["protonet", "maml", "baseline++"]
    assert set(recorder.finished_rows) == {"protonet", "maml", "baseline++"}
    for row in result.rows:
        assert row.status == "finished" and row.steps_done == STEPS
        assert 0.0 <= row.test_accuracy <= 1.0 and row.test_ci95 >= 0.0
        assert row.test_episodes == TEST_EPISODES
        assert row.train_seconds > 0
        assert row.memory_method == CPU_MEMORY_METHOD
        # more than the batch-free weights alone: the profiled step's activations are included
        assert row.peak_memory_bytes > 0
    assert result.row("baseline++").batch_kind == "classes" and result.row("maml").batch_kind == "episodes"
    table = format_table(result)
    for row in result.rows:
        assert row.algorithm in table and f"{100 * row.test_accuracy:.2f}%" in table
    assert "95% CI" in table and "MiB" in table


def test_the_race_folder_reopens_with_its_table_curves_and_run_folders(finished_race):
    result, recorder, _, race_dir, runs_root = finished_race
    saved = load_race(race_dir)
    assert saved.status == "finished" and saved.config.algorithm_names == ["protonet", "maml", "baseline++"]
    assert saved.config.to_dict() == race_config(Path(saved.config.data.root)).to_dict()
    assert [r.to_dict() for r in saved.result.rows] == [r.to_dict() for r in result.rows]
    for name, points in recorder.steps.items():
        curve = saved.curves[name]
        assert curve.step == list(range(1, STEPS + 1))
        assert curve.seconds == pytest.approx([s for _, s in points], abs=1e-5)
        assert curve.val_step == [3, 6]
        run_dir = saved.run_dir(name)
        assert run_dir == race_dir / racer_folder(name)
        record = rs.RunStore(race_dir).record(run_dir)  # each racer is a normal run folder
        assert record.status == "finished" and record.algorithm == name and record.steps_done == STEPS
        assert load_checkpoint(record.last_checkpoint).step == STEPS
        # "<race name>: <short title>", the unnamed race's default name without a "race " prefix
        assert record.name == f"ProtoNet vs MAML vs Baseline++: {display_title(name)}"
    assert saved.name == "ProtoNet vs MAML vs Baseline++"
    assert [(entry.folder, entry.name) for entry in list_races(runs_root)] == [(race_dir, saved.name)]


def test_a_race_saved_with_the_old_default_name_reads_as_todays_default(finished_race, tmp_path):
    """race.json of older versions stored an unnamed race as "race protonet vs maml"."""
    _, _, _, race_dir, _ = finished_race
    copied = tmp_path / "races" / race_dir.name
    shutil.copytree(race_dir, copied)
    raw = json.loads((copied / RACE_FILE).read_text(encoding="utf-8"))
    raw["name"] = "race protonet vs maml vs baseline++"
    (copied / RACE_FILE).write_text(json.dumps(raw), encoding="utf-8")
    assert load_race(copied).name == "ProtoNet vs MAML vs Baseline++"
    assert [entry.name for entry in list_races(tmp_path)] == ["ProtoNet vs MAML vs Baseline++"]
    raw["name"] = "my race"  # a name of its own is kept
    (copied / RACE_FILE).write_text(json.dumps(raw), encoding="utf-8")
    assert load_race(copied).name == "my race" and list_races(tmp_path)[0].name == "my race"


def test_each_racer_reports_the_end_of_its_training_and_the_progress_of_its_evaluation(finished_race):
    _, recorder, _, _, _ = finished_race
    names = ["protonet", "maml", "baseline++"]
    trained = [e for e in recorder.events if e[0] == "trained"]
    assert trained == [("trained", name, "finished", STEPS) for name in names]  # each when its last step is done
    first_evaluation = next(i for i, e in enumerate(recorder.events) if e[0] == "evaluating")
    assert first_evaluation == len(trained)  # training ends before any test evaluation
    for name in names:
        progress = [e[2:] for e in recorder.events if e[0] == "evaluating" and e[1] == name]
        assert progress[0] == (0, TEST_EPISODES) and progress[-1] == (TEST_EPISODES, TEST_EPISODES)
        assert [done for done, _ in progress] == sorted(done for done, _ in progress)
        done_at = recorder.events.index(("evaluating", name, TEST_EPISODES, TEST_EPISODES))
        assert recorder.events[done_at + 1] == ("row", name)  # the row follows its evaluation


def test_the_runs_store_lists_the_races_runs_and_a_race_is_deleted_as_a_whole(finished_race, tmp_path):
    import shutil

    _, _, _, race_dir, runs_root = finished_race
    copy_root = tmp_path / "runs"
    shutil.copytree(runs_root, copy_root)
    store = rs.RunStore(copy_root)
    copied = copy_root / "races" / race_dir.name
    records = store.list_runs()
    assert sorted(r.run_dir for r in records) == sorted(copied / racer_folder(n) for n in
                                                        ["protonet", "maml", "baseline++"])
    assert {r.race_dir for r in records} == {copied}
    with pytest.raises(EngineError, match="deleted with their race"):
        store.delete(records[0].run_dir)
    with pytest.raises(EngineError, match="refusing"):
        delete_race(copy_root, records[0].run_dir)  # a run folder is not a race
    with rs.RunLock(copied / racer_folder("maml")):  # a racer still training: the race is kept
        with pytest.raises(EngineError, match="still running"):
            delete_race(copy_root, copied)
    delete_race(copy_root, copied)
    assert not copied.exists() and store.list_runs() == [] and list_races(copy_root) == []
    assert [p.name for p in (copy_root / "races").iterdir()] == []  # no hidden leftover


def test_a_damaged_race_file_is_named(tmp_path):
    folder = tmp_path / "race"
    folder.mkdir()
    with pytest.raises(EngineError, match="race.json: file not found"):
        load_race(folder)
    (folder / RACE_FILE).write_text("{ half a file", encoding="utf-8")
    with pytest.raises(EngineError, match=r"race\.json: damaged race file"):
        load_race(folder)
    (folder / RACE_FILE).write_text(json.dumps({"format": "something else"}), encoding="utf-8")
    with pytest.raises(EngineError, match=r"race\.json: damaged race file"):
        load_race(folder)
    (tmp_path / "races").mkdir()
    (tmp_path / "races" / "bad").mkdir()
    (tmp_path / "races" / "bad" / RACE_FILE).write_text("[]", encoding="utf-8")
    assert [(e.name, e.status) for e in list_races(tmp_path)] == [("bad", "damaged")]


@pytest.mark.parametrize("algorithms, message", [
    (["protonet"], r"algorithms: a race needs 2 to 6 algorithms \(got 1\)"),
    (["protonet", "maml", "reptile", "matching", "simpleshot", "baseline", "tim"], r"algorithms: .*\(got 7\)"),
    (["protonet", "maml", "protonet"], r"algorithms\[2\]\.name: 'protonet' is in the race twice"),
])
def test_bad_algorithm_lists_are_named(algorithms, message):
    with pytest.raises(ConfigError, match=message):
        RaceConfig.from_run_config(RunConfig(), algorithms).validate()


def test_bad_race_configs_name_the_field():
    with pytest.raises(ConfigError, match=r"algorithms\[1\]\.name: unknown algorithm 'alexnet'"):
        algorithm_configs(["protonet", "alexnet"])
    with pytest.raises(ConfigError, match=r"algorithms\[1\]\.name: unknown algorithm 'alexnet'"):
        RaceConfig.from_dict({"algorithms": [{"name": "protonet"}, {"name": "alexnet"}]})
    with pytest.raises(ConfigError, match=r"algorithms\[1\] \(maml\): algorithm\.inner_lr must be greater than 0"):
        RaceConfig.from_run_config(RunConfig(), ["protonet", MAMLConfig(inner_lr=0.0)]).validate()
    with pytest.raises(ConfigError, match=r"algorithms\[0\]\.bogus: unknown field"):
        RaceConfig.from_dict({"algorithms": [{"name": "protonet", "bogus": 1}, {"name": "maml"}]})
    with pytest.raises(ConfigError, match=r"race\.test_episodes must be at least 1"):
        RaceConfig.from_run_config(RunConfig(), ["protonet", "maml"], test_episodes=0).validate()
    with pytest.raises(ConfigError, match="task.n_way must be at least 2"):
        config = RaceConfig.from_run_config(RunConfig(), ["protonet", "maml"])
        config.task.n_way = 1
        config.validate()
    round_trip = RaceConfig.from_run_config(RunConfig(), ["reptile", "baseline++"], test_episodes=50)
    assert RaceConfig.from_dict(json.loads(json.dumps(round_trip.to_dict()))).to_dict() == round_trip.to_dict()


def test_a_race_that_cannot_start_fails_with_a_message_and_leaves_no_folder(tmp_path):
    config = RaceConfig.from_run_config(shared_config(tmp_path / "no-such-folder"), ["protonet", "maml"])
    recorder = Recorder()
    race_dir = tmp_path / "races" / "r"
    race_dir.mkdir(parents=True)
    result = Race(config, race_dir=race_dir, callbacks=[recorder]).run()
    assert result.status == "failed" and "no-such-folder" in result.message
    assert recorder.failures == [result.message] and not race_dir.exists()


def test_stop_ends_every_algorithm_with_a_checkpoint_and_no_test_evaluation(tiny_flat, tmp_path):
    control = RunControl()
    recorder = Recorder(stop_at=("protonet", 2), control=control)
    algorithms = ["protonet", MAMLConfig(test_inner_steps=1)]
    config = RaceConfig.from_run_config(shared_config(tiny_flat, steps=50), algorithms, test_episodes=5)
    result = Race(config, race_dir=tmp_path / "race", callbacks=[recorder], control=control).run()
    assert result.status == "stopped"
    # protonet stopped after its step 2; maml, next in turn, stopped before its step 2
    assert [(r.algorithm, r.status, r.steps_done) for r in result.rows] == [("protonet", "stopped", 2),
                                                                          ("maml", "stopped", 1)]
    assert all(r.test_accuracy is None for r in result.rows)
    saved = load_race(tmp_path / "race")
    assert saved.status == "stopped" and saved.curves["protonet"].step == [1, 2]
    assert load_checkpoint(saved.run_dir("protonet") / "checkpoints" / "last.pt").step == 2
    assert rs.RunStore(tmp_path / "race").record(saved.run_dir("maml")).status == "stopped"


def test_a_shared_stream_gives_every_reader_the_same_batches_and_forgets_read_ones(tiny_flat):
    data = load_data(shared_config(tiny_flat).data)
    stream = SharedBatchStream(data.episodes("train", 3, 1, 2, 0), meta_batch_size=2)
    first, second = stream.reader(), stream.reader()
    a1, a2 = first.sample_batch(2), first.sample_batch(2)
    assert stream.n_kept == 2
    assert second.sample_batch(2) is a1 and stream.n_kept == 1
    assert second.sample_batch(2) is a2 and stream.n_kept == 0
    assert first.state_dict()["episodes"].equal(second.state_dict()["episodes"])
    second.close()
    first.sample_batch(2)
    assert stream.n_kept == 0  # nobody else will read it
    with pytest.raises(ConfigError, match="task.meta_batch_size"):
        first.sample_batch(3)


def test_state_bytes_counts_weights_and_optimiser_state_once(tiny_flat):
    from engine.algorithms.registry import build_algorithm

    config = shared_config(tiny_flat)
    algorithm = build_algorithm(config, n_train_classes=8)
    weights = sum(p.numel() * p.element_size() for p in algorithm.backbone.parameters())
    buffers = sum(b.numel() * b.element_size() for b in algorithm.backbone.buffers())
    assert state_bytes(algorithm, "cpu") == weights + buffers
    assert state_bytes(algorithm, "cuda") == 0


def test_the_cli_races_and_prints_the_table(tiny_flat, tmp_path, capsys):
    flags = ["--dataset", str(tiny_flat), "--train-ratio", "0.5", "--val-ratio", "0.25", "--n-way", "3",
             "--n-shot", "1", "--n-query", "2", "--meta-batch-size", "1", "--hidden-channels", "16",
             "--steps", "3", "--val-every", "0", "--val-episodes", "2", "--num-threads", "1",
             "--test-episodes", "4"]
    code = cli.main(["race", "--algorithms", "protonet,simpleshot", *flags, "--run-dir", str(tmp_path / "r"),
                     "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    assert report["status"] == "finished" and [r["algorithm"] for r in report["rows"]] == ["protonet", "simpleshot"]
    assert all(r["test_episodes"] == 4 and r["peak_memory_bytes"] > 0 for r in report["rows"])
    assert load_race(tmp_path / "r").status == "finished"
    assert cli.main(["race", "--algorithms", "protonet", *flags, "--run-dir", str(tmp_path / "x")]) == 2
    assert "algorithms: a race needs 2 to 6 algorithms (got 1)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exit_info:  # the help text (with its % signs) formats
        cli.main(["race", "--help"])
    assert exit_info.value.code == 0 and "--algorithms" in capsys.readouterr().out
