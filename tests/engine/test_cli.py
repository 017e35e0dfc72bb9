import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from engine.cli import main


@pytest.fixture(scope="module")
def trained_run(tiny_flat, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", "--dataset", str(tiny_flat), "--run-dir", str(run_dir), "--steps", "8",
                 "--val-every", "4", "--val-episodes", "4", "--n-way", "3", "--n-shot", "2", "--n-query", "3",
                 "--meta-batch-size", "2", "--hidden-channels", "16", "--train-ratio", "0.5", "--val-ratio", "0.25",
                     "--quiet"])
    assert code == 0, err.getvalue()
    return run_dir, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run[0]


def test_train_writes_a_run_and_prints_its_folder(trained_run):
    run_dir, out, err = trained_run
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert out == f"{run_dir}\n"  # --quiet: the run folder alone, for scripts
    assert "[" not in err and "Traceback" not in err, err  # and no progress bar


def test_train_without_quiet_reports_the_run_as_it_goes(tiny_flat, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--dataset", str(tiny_flat), "--run-dir", str(run_dir), "--steps", "2", "--val-every", "2",
                 "--val-episodes", "2", "--n-way", "3", "--n-shot", "1", "--n-query", "2", "--hidden-channels", "8",
                 "--train-ratio", "0.5", "--val-ratio", "0.25"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{run_dir}\n"
    lines = captured.err.splitlines()
    assert lines[0].startswith(f"run folder: {run_dir}  device: cpu  classes: 8 train / 4 val / 4 test"), lines
    assert any(line.startswith("train: 2/2 (100%) elapsed ") and ", loss " in line for line in lines), lines
    assert any(line.startswith("step 2: validation accuracy ") for line in lines), lines
    assert lines[-1].startswith("finished: 2 steps in ") and "best validation accuracy" in lines[-1], lines


def test_evaluate_json_gives_accuracy_and_ci(trained, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(trained / "checkpoints" / "last.pt"), "--episodes", "20",
                 "--n-way", "3", "--n-shot", "2", "--n-query", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["accuracy"] <= 1.0 and report["ci95"] >= 0.0
    assert report["n_episodes"] == 20 and report["classes"] == "the run's test classes"


def test_predict_embeds_through_the_folded_copy_with_the_same_probabilities(trained, tiny_flat, tmp_path,
                                                                            monkeypatch):
    import engine.evaluation as evaluation
    from engine.inference import predict_folders

    support, query = tmp_path / "support", tmp_path / "query"
    for name in ("class001", "class004"):
        files = sorted((tiny_flat / name).glob("*.png"))
        (support / name).mkdir(parents=True)
        (query / name).mkdir(parents=True)
        for f in files[:2]:
            shutil.copy(f, support / name / f.name)
        shutil.copy(files[2], query / name / files[2].name)
    folded, fold = [], evaluation.folded_for_inference
    monkeypatch.setattr(evaluation, "folded_for_inference",
                        lambda backbone: folded.append(fold(backbone)) or folded[-1])
    checkpoint = trained / "checkpoints" / "last.pt"
    with_copy = predict_folders(checkpoint, support, [query])
    assert len(folded) == 1 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded[0].modules())
    monkeypatch.setattr(evaluation, "folded_for_inference", lambda backbone: backbone)
    plain = predict_folders(checkpoint, support, [query])
    assert [r["file"] for r in with_copy["predictions"]] == [r["file"] for r in plain["predictions"]]
    for a, b in zip(with_copy["predictions"], plain["predictions"]):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_predict_json_names_each_query_file_with_probabilities(trained, tiny_flat, tmp_path, capsys):
    support, query = tmp_path / "support", tmp_path / "query"
    for name in ("class000", "class005", "class009"):
        files = sorted((tiny_flat / name).glob("*.png"))
        (support / name).mkdir(parents=True)
        (query / name).mkdir(parents=True)
        for f in files[:3]:
            shutil.copy(f, support / name / f.name)
        for f in files[3:5]:
            shutil.copy(f, query / name / f.name)
    (support / "class000" / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(trained / "checkpoints" / "last.pt"), "--support", str(support),
                 "--query", str(query), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["class000", "class005", "class009"]
    assert len(report["predictions"]) == 6
    for row in report["predictions"]:
        assert row["predicted"] in report["classes"] and sum(row["probabilities"]) == pytest.approx(1, abs=1e-4)
        assert row["true"] == Path(row["file"]).parent.name  # each query sub-folder names its class
    correct = [row["predicted"] == row["true"] for row in report["predictions"]]
    assert report["accuracy"] == pytest.approx(sum(correct) / 6)


def test_datasets_inspect_lists_classes_and_skips(tiny_nested, capsys):
    assert main(["datasets", "inspect", str(tiny_nested), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "nested" and report["n_classes"] == 16 and report["n_images"] == 160


@pytest.mark.parametrize("argv,needle", [
    (["train", "--n-shot", "0"], "task.n_shot"),
    (["train", "--lr", "-1"], "algorithm.lr"),
    (["train", "--algorithm", "protonet", "--inner-lr", "0.1"], "--inner-lr"),
    (["train", "--config", "/nonexistent/config.json"], "config.json"),
    (["evaluate", "--checkpoint", "/nonexistent/model.pt"], "model.pt"),
    (["datasets", "inspect", "/nonexistent/folder"], "/nonexistent/folder"),
])
def test_bad_input_exits_non_zero_with_a_message_and_no_traceback(argv, needle, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_training_on_an_empty_folder_fails_cleanly(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--dataset", str(tmp_path / "empty"), "--run-dir", str(tmp_path / "r"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "empty" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()
