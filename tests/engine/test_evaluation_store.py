"""A run's stored evaluations: written atomically next to the checkpoints, read back whole, and current only
for the checkpoint file as it was evaluated."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from engine.errors import EngineError
from engine.evaluation import EvaluationResult, Misclassified
from engine.training import run_store as rs
from engine.training.evaluation_store import evaluation_file, load_evaluation, save_evaluation


def _result() -> EvaluationResult:
    confusion = torch.tensor([[3, 1, 0], [0, 4, 0], [2, 0, 2]])
    wrong = [Misclassified(Path("/data/a/1.png"), "a", "b", 0.9, 0), Misclassified(None, "c", "a", 0.6, 1)]
    return EvaluationResult(0.75, 0.05, 2, 3, 1, [0.8, 0.7], ["a", "b", "c"], [0.75, 1.0, 0.5], confusion, wrong)


def _checkpoint(run_dir: Path, which: str = "best") -> Path:
    path = rs.checkpoint_file(run_dir, which)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


def test_a_stored_evaluation_reads_back_whole_with_its_shape_and_checkpoint(tmp_path):
    best = _checkpoint(tmp_path)
    assert load_evaluation(tmp_path, best) is None  # never evaluated
    written = save_evaluation(tmp_path, best, 20, _result(), episodes=2, n_query=5, seed=3, device="cpu")
    assert written == evaluation_file(tmp_path, best) and written.parent == tmp_path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    stored = load_evaluation(tmp_path, best)
    result = stored.result
    assert (result.accuracy, result.ci95, result.n_episodes, result.n_way, result.n_shot) == (0.75, 0.05, 2, 3, 1)
    assert result.class_names == ["a", "b", "c"] and result.per_class_accuracy == [0.75, 1.0, 0.5]
    assert torch.equal(result.confusion, _result().confusion) and result.episode_accuracies == [0.8, 0.7]
    assert [(m.path, m.true_class, m.predicted_class, m.confidence) for m in result.misclassified] == \
        [(Path("/data/a/1.png"), "a", "b", 0.9), (None, "c", "a", 0.6)]
    assert (stored.shape.episodes, stored.shape.n_way, stored.shape.n_shot, stored.shape.n_query) == (2, 3, 1, 5)
    assert (stored.seed, stored.checkpoint_step, stored.checkpoint) == (3, 20, "best.pt")
    assert stored.is_of(best)
    assert load_evaluation(tmp_path, _checkpoint(tmp_path, "last")) is None  # one file per checkpoint


def test_a_stored_evaluation_is_not_current_once_its_checkpoint_changed(tmp_path):
    best = _checkpoint(tmp_path)
    save_evaluation(tmp_path, best, 20, _result(), episodes=2, n_query=5, seed=0)
    info = best.stat()
    os.utime(best, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))  # a resumed run saved a new best
    assert not load_evaluation(tmp_path, best).is_of(best)
    assert not load_evaluation(tmp_path, best).is_of(_checkpoint(tmp_path, "last"))


def test_a_damaged_evaluation_file_is_named(tmp_path):
    best = _checkpoint(tmp_path)
    path = save_evaluation(tmp_path, best, 20, _result(), episodes=2, n_query=5, seed=0)
    path.write_text("{ torn", encoding="utf-8")
    with pytest.raises(EngineError, match="evaluation-best.json: damaged"):
        load_evaluation(tmp_path, best)
    raw = {"format": "meta-studio-evaluation", "version": 1, "checkpoint": "best.pt"}
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(EngineError, match="evaluation-best.json: damaged evaluation file .KeyError"):
        load_evaluation(tmp_path, best)
    with pytest.raises(EngineError, match="not a checkpoint"):
        evaluation_file(tmp_path, tmp_path / "elsewhere.pt")
