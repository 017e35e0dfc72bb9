"""TensorBoard event files (train.tensorboard, meta-engine runs export --tensorboard) read back with
TensorBoard's own event reader, and meta-engine runs list|show|export --csv."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from engine.cli import main
from engine.errors import ConfigError
from engine.training.run_store import RunLock, read_metrics
from engine.training.tensorboard import TensorBoardCallback
from engine.training.trainer import Trainer

from .helpers import tiny_config


def read_events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def expected_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """What the event files must hold, from metrics.jsonl."""
    rows = read_metrics(run_dir / "metrics.jsonl")
    steps = [r for r in rows if r["kind"] == "step"]
    validations = [r for r in rows if r["kind"] == "validation"]
    return {"train/loss": [(r["step"], r["loss"]) for r in steps],
            "train/accuracy": [(r["step"], r["accuracy"]) for r in steps],
            "train/lr": [(r["step"], r["lr"]) for r in steps],
            "val/accuracy": [(r["step"], r["accuracy"]) for r in validations],
            "val/ci95_low": [(r["step"], r["accuracy"] - r["ci95"]) for r in validations],
            "val/ci95_high": [(r["step"], r["accuracy"] + r["ci95"]) for r in validations]}


def assert_events_match_metrics(events_dir: Path, run_dir: Path) -> None:
    accumulator = read_events(events_dir)
    expected = expected_scalars(run_dir)
    assert set(expected) <= set(accumulator.Tags()["scalars"])
    assert len(expected["train/loss"]) == 12 and len(expected["val/accuracy"]) == 3
    for tag, rows in expected.items():
        got = scalars(accumulator, tag)
        assert [step for step, _ in got] == [step for step, _ in rows], tag
        assert [value for _, value in got] == pytest.approx([value for _, value in rows], rel=1e-6, abs=1e-7), tag
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["task.n_way"].number_value == 3
    assert hparams["algorithm.name"].string_value == "protonet"
    assert hparams["train.steps"].number_value == json.loads((run_dir / "config.json").read_text())["train"]["steps"]


def test_train_tensorboard_writes_the_scalars_of_metrics_jsonl_and_the_config(tiny_flat: Path,
                                                                              tmp_path: Path) -> None:
    config = tiny_config(tiny_flat)
    config.train.tensorboard = True
    run_dir = tmp_path / "run"
    summary = Trainer(config, run_dir=run_dir).run()
    assert summary.status == "finished", summary.message
    assert_events_match_metrics(run_dir / "tensorboard", run_dir)


def test_tensorboard_is_off_by_default(tiny_flat: Path, tmp_path: Path) -> None:
    summary = Trainer(tiny_config(tiny_flat, steps=4), run_dir=tmp_path / "run").run()
    assert summary.status == "finished" and not (tmp_path / "run" / "tensorboard").exists()


def test_runs_export_tensorboard_converts_an_existing_run(tiny_flat: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "runs" / "first"
    assert Trainer(tiny_config(tiny_flat), run_dir=run_dir).run().status == "finished"
    assert not (run_dir / "tensorboard").exists()
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(tmp_path / "runs"), "export", "--tensorboard", "first"]) == 0
    assert f"{run_dir}: TensorBoard event files in {run_dir / 'tensorboard'}" in capsys.readouterr().out
    assert_events_match_metrics(run_dir / "tensorboard", run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "status": "running"}))
    with RunLock(run_dir):  # as the process training it holds it
        assert main(["runs", "--runs-dir", str(tmp_path / "runs"), "export", "--tensorboard", "first"]) == 2
    assert "the run is still training" in capsys.readouterr().err


def test_missing_tensorboard_package_names_the_field_and_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"train.tensorboard needs the tensorboard package: pip install"):
        TensorBoardCallback(tiny_config("unused"))


def test_runs_list_show_and_export_csv_read_the_run_store(tiny_flat: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    for name in ("alpha", "beta"):
        config = tiny_config(tiny_flat, steps=4)
        config.name = name
        assert Trainer(config, run_dir=runs / name).run().status == "finished"
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs), "list", "--csv"]) == 0
    listed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(row["name"] for row in listed) == ["alpha", "beta"]
    assert all(row["status"] == "finished" and row["steps_done"] == "4" for row in listed)
    assert main(["runs", "--runs-dir", str(runs), "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["name", "algorithm", "status"] and len(table) == 3
    assert main(["runs", "--runs-dir", str(runs), "show", "alpha"]) == 0
    shown = capsys.readouterr().out
    assert "name: alpha" in shown and "status: finished" in shown and '"n_way": 3' in shown
    assert main(["runs", "--runs-dir", str(runs), "export", "--csv", "alpha", str(runs / "beta")]) == 0
    metrics = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    for name in ("alpha", "beta"):
        jsonl = read_metrics(runs / name / "metrics.jsonl")
        mine = [row for row in metrics if row["run"] == str(runs / name)]
        assert [(r["kind"], int(r["step"])) for r in mine] == [(r["kind"], r["step"]) for r in jsonl]
        assert [float(r["accuracy"]) for r in mine] == [r["accuracy"] for r in jsonl]
    assert main(["runs", "--runs-dir", str(runs), "show", "gamma"]) == 2
    assert "gamma: no such run folder" in capsys.readouterr().err
