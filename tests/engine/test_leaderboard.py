"""``meta-engine leaderboard`` on tiny data: the JSON and Markdown tables with their fields, the runs in the run
store, the same seeded test episodes for every algorithm at each shot, a failing algorithm reported in its row
while the others finish, ``--resume`` keeping finished rows, and testing on another folder's unseen classes."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pytest
import torch

from engine.algorithms import registry
from engine.algorithms.protonet import ProtoNet
from engine.cli import main
from engine.config import ProtoNetConfig
from engine.data import sampler as sampler_module
from engine.leaderboard import load_leaderboard, parse_algorithms
from engine.leaderboard import runner
from engine.training.run_store import RunStore
from tests.conftest import write_dataset

torch.set_num_threads(1)
BROKEN = "throwaway-broken"
TINY = ["--steps", "3", "--val-every", "0", "--val-episodes", "2", "--checkpoint-every", "3", "--hidden-channels",
        "8", "--n-way", "3", "--n-query", "2", "--meta-batch-size", "1", "--num-threads", "1", "--episodes", "4",
        "--test-n-query", "3", "--train-ratio", "0.5", "--val-ratio", "0.2", "--image-size", "28"]


@dataclass
class BrokenConfig(ProtoNetConfig):
    name: ClassVar[str] = BROKEN
    title: ClassVar[str] = "Broken test algorithm"


class Broken(ProtoNet):
    short_title = "Broken"

    def meta_train_step(self, batch: Any) -> dict[str, float]:
        raise RuntimeError("this algorithm always fails")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("leaderboard-data"), n_classes=20, n_images=10)


@pytest.fixture
def broken() -> Iterator[str]:
    registry.register(BrokenConfig, Broken)
    yield BROKEN
    registry.unregister(BROKEN)


def leaderboard(capsys: Any, *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["leaderboard", *argv, "--json", "--quiet"])
    return code, json.loads(capsys.readouterr().out)


class EpisodeLog:
    """The test episodes every evaluate() call of the leaderboard drew: one list of (support, query) image
    indices per call, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[dict[str, Any]] = []
        self._inside = False
        real_evaluate, real_sample = runner.evaluate, sampler_module.EpisodeSampler.sample

        def evaluate(*args: Any, **kwargs: Any) -> Any:
            self.calls.append({"n_shot": kwargs["n_shot"], "seed": kwargs["seed"], "episodes": []})
            self._inside = True
            try:
                return real_evaluate(*args, **kwargs)
            finally:
                self._inside = False

        def sample(sampler: Any) -> Any:
            task = real_sample(sampler)
            if self._inside:
                self.calls[-1]["episodes"].append((task.support_index.tolist(), task.query_index.tolist()))
            return task

        monkeypatch.setattr(runner, "evaluate", evaluate)
        monkeypatch.setattr(sampler_module.EpisodeSampler, "sample", sample)


def test_json_markdown_and_runs_of_a_tiny_leaderboard(data_root: Path, tmp_path: Path, capsys: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    log = EpisodeLog(monkeypatch)
    out = tmp_path / "board.json"
    code, printed = leaderboard(capsys, "--dataset", str(data_root), "--algorithms", "protonet,simpleshot",
                                "--out", str(out), "--runs-dir", str(tmp_path / "runs"), *TINY)
    assert code == 0
    assert printed["json_file"] == str(out) and json.loads(out.read_text())["rows"] == printed["rows"]
    rows = {row["algorithm"]: row for row in printed["rows"]}
    assert list(rows) == ["protonet", "simpleshot"]
    for row in rows.values():
        assert row["status"] == "finished" and row["steps_done"] == 3 and row["train_seconds"] > 0
        assert row["peak_memory_bytes"] > 0 and row["memory_method"].startswith("CPU")
        assert [(r["n_way"], r["n_shot"], r["episodes"], r["seed"]) for r in row["results"]] == [(5, 1, 4, 0),
                                                                                              (5, 5, 4, 0)]
        assert all(0.0 <= r["accuracy"] <= 1.0 and r["ci95"] >= 0.0 for r in row["results"])
        assert row["recipe"] == dict(registry.ALGORITHMS[row["algorithm"]].recipe) and row["paper"]
    assert printed["settings"]["shots"] == [1, 5] and printed["settings"]["episodes"] == 4
    runs = {record.algorithm: str(record.run_dir) for record in RunStore(tmp_path / "runs").list_runs()}
    assert runs == {name: row["run_dir"] for name, row in rows.items()}
    markdown = out.with_suffix(".md").read_text()
    assert "| algorithm | kind | 5-way 1-shot | 5-way 5-shot | train time | peak memory | status |" in markdown
    assert sum(line.startswith(("| ProtoNet |", "| SimpleShot |")) for line in markdown.splitlines()) == 2
    assert "meta-engine leaderboard --algorithms protonet,simpleshot --dataset" in markdown

    # every algorithm drew the same seeded episodes at each shot (and the two shots are distinct settings)
    assert [(call["n_shot"], call["seed"]) for call in log.calls] == [(1, 0), (5, 0), (1, 0), (5, 0)]
    one_shot, five_shot = log.calls[0]["episodes"], log.calls[1]["episodes"]
    assert len(one_shot) == 4 and log.calls[2]["episodes"] == one_shot and log.calls[3]["episodes"] == five_shot
    assert all(len(support) == 5 and len(query) == 15 for support, query in one_shot)
    assert all(len(support) == 25 for support, _ in five_shot)


def test_a_failing_algorithm_is_reported_in_its_row_and_the_others_finish(broken: str, data_root: Path,
                                                                          tmp_path: Path, capsys: Any) -> None:
    assert parse_algorithms("all") == list(registry.ALGORITHMS) and broken in parse_algorithms("all")
    out = tmp_path / "board.json"
    code, printed = leaderboard(capsys, "--dataset", str(data_root), "--algorithms", f"{broken},protonet",
                                "--out", str(out), "--runs-dir", str(tmp_path / "runs"), *TINY)
    assert code == 1
    failed, finished = printed["rows"]
    assert failed["algorithm"] == broken and failed["status"] == "failed"
    assert "this algorithm always fails" in failed["message"] and failed["results"] == []
    assert finished["algorithm"] == "protonet" and finished["status"] == "finished" and len(finished["results"]) == 2
    assert "| Broken | metric | - | - |" in out.with_suffix(".md").read_text()

    # --resume keeps the finished row (no new run) and tries the failed algorithm again
    runs_before = len(RunStore(tmp_path / "runs").list_runs())
    code, again = leaderboard(capsys, "--dataset", str(data_root), "--algorithms", f"{broken},protonet",
                              "--out", str(out), "--runs-dir", str(tmp_path / "runs"), "--resume", *TINY)
    assert code == 1 and again["rows"][0]["status"] == "failed" and again["rows"][1] == finished
    assert len(RunStore(tmp_path / "runs").list_runs()) == runs_before + 1  # only the broken one trained again
    assert main(["leaderboard", "--dataset", str(data_root), "--algorithms", "protonet", "--out", str(out),
                 "--runs-dir", str(tmp_path / "runs"), "--resume", *TINY, "--episodes", "5"]) == 2
    assert "made with other settings (episodes)" in capsys.readouterr().err


def test_testing_on_another_folders_unseen_groups(tmp_path: Path, capsys: Any) -> None:
    train_root = write_dataset(tmp_path / "small1", n_classes=12, n_images=10, groups=3)
    other = write_dataset(tmp_path / "other", n_classes=12, n_images=10, groups=4, seed=1)
    test_root = tmp_path / "small2"
    shutil.copytree(train_root / "group00", test_root / "group00")  # seen in training: left out
    for group in ("group01", "group03"):
        shutil.copytree(other / group, test_root / f"novel-{group}")
    out = tmp_path / "board.json"
    code, printed = leaderboard(capsys, "--dataset", str(train_root), "--test-dataset", str(test_root),
                                "--algorithms", "protonet", "--out", str(out), "--runs-dir", str(tmp_path / "runs"),
                                "--train-ratio", "0.6", "--val-ratio", "0.2", "--val-n-way", "2", *TINY[:-6])
    assert code == 0, [row["message"] for row in printed["rows"]]
    assert printed["test_classes"] == f"6 classes unseen in training of {test_root}"
    assert load_leaderboard(out).rows[0].result(5).episodes == 4
    assert printed["command"].startswith(f"meta-engine leaderboard --algorithms protonet --dataset {train_root} "
                                         f"--test-dataset {test_root} ") and "--root" not in printed["command"]
