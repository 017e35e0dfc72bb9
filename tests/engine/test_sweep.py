"""meta-engine sweep: trials are runs, pruning prunes, the study is Optuna's (read back with its API)."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from engine.cli import main
from engine.sweep import SweepSettings, build_space, dimension_from_text, open_study, run_sweep
from engine.training.run_store import RunStore
from tests.engine.sweep_helpers import TINY_FLAGS, study_of, tiny_glyph_config


def test_a_four_trial_sweep_makes_four_trials_and_four_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["sweep", *TINY_FLAGS, "--steps", "4", "--runs-dir", str(runs), "--trials", "4", "--study", "four", "--pruner", "none",
                 "--param", "algorithm.lr=1e-4:1e-2:log", "--param", "task.n_shot=1:2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    study = study_of(runs, "four")  # Optuna's own API reads the SQLite study back
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert result["best_val_accuracy"] == study.best_value and result["best_params"] == study.best_params
    run_dirs = {t.user_attrs["run_dir"] for t in trials}
    records = RunStore(runs).list_runs()
    assert {str(r.run_dir) for r in records} == run_dirs and len(run_dirs) == 4
    for record in records:
        assert record.status == "finished" and record.steps_done == 4
        assert record.checkpoint("last") is not None
        validations = [row for row in RunStore(runs).read_metrics(record.run_dir) if row["kind"] == "validation"]
        trial = next(t for t in trials if t.user_attrs["run_dir"] == str(record.run_dir))
        assert {row["step"]: row["accuracy"] for row in validations} == trial.intermediate_values  # every validation reported
        assert record.best_val_accuracy == pytest.approx(trial.value)
        config = RunStore(runs).read_config(record.run_dir)
        assert config.algorithm.lr == pytest.approx(trial.params["algorithm.lr"])
        assert config.task.n_shot == trial.params["task.n_shot"]
    assert main(["sweep", "show", "--runs-dir", str(runs), "--study", "four", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    values = [row["best_val_accuracy"] for row in shown["trials"]]
    assert len(values) == 4 and values == sorted(values, reverse=True)  # ranked
    assert {row["run_dir"] for row in shown["trials"]} == run_dirs


def test_the_median_pruner_stops_a_losing_trial_at_its_first_validation(tmp_path):
    runs = tmp_path / "runs"
    space = build_space([dimension_from_text("task.val_n_way=2,8", "protonet")])
    settings = SweepSettings(tiny_glyph_config(steps=6), space, 2, "prune", runs_root=runs, pruner="median",
                             startup_trials=1)
    study = open_study(settings)
    study.enqueue_trial({"task.val_n_way": 2})  # 2-way validation: far above the 8-way trial's accuracy
    study.enqueue_trial({"task.val_n_way": 8})
    run_sweep(settings, study=study)
    first, second = study_of(runs, "prune").get_trials()
    assert first.state == TrialState.COMPLETE and sorted(first.intermediate_values) == [2, 4, 6]
    assert second.state == TrialState.PRUNED
    assert list(second.intermediate_values) == [2] and second.user_attrs["pruned_at_step"] == 2
    record = RunStore(runs).record(second.user_attrs["run_dir"])
    assert record.status == "stopped" and record.steps_done == 2  # stopped early, its checkpoint kept


def test_no_pruner_lets_the_losing_trial_finish(tmp_path):
    runs = tmp_path / "runs"
    space = build_space([dimension_from_text("task.val_n_way=2,8", "protonet")])
    settings = SweepSettings(tiny_glyph_config(steps=4), space, 2, "keep", runs_root=runs, pruner="none",
                             startup_trials=1)
    study = open_study(settings)
    study.enqueue_trial({"task.val_n_way": 2})
    study.enqueue_trial({"task.val_n_way": 8})
    run_sweep(settings, study=study)
    assert [t.state for t in study_of(runs, "keep").get_trials()] == [TrialState.COMPLETE] * 2


def test_a_journal_storage_holds_a_sweep(tmp_path, capsys):
    runs, journal = tmp_path / "runs", tmp_path / "study.journal"
    assert main(["sweep", *TINY_FLAGS, "--steps", "2", "--runs-dir", str(runs), "--trials", "1", "--study", "j",
                 "--storage", f"journal:{journal}", "--param", "algorithm.lr=1e-4:1e-2:log", "--quiet"]) == 0
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="j", storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]
