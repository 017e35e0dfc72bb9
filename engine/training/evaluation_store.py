"""A run's stored test evaluations: one file per checkpoint in the run folder.

``evaluation-best.json`` and ``evaluation-last.json`` (:func:`evaluation_file`) hold the latest
evaluation of ``checkpoints/best.pt`` and ``checkpoints/last.pt``: the whole
:class:`~engine.evaluation.EvaluationResult` (accuracy and CI, per-class accuracy, confusion
counts, the misclassified query images), the episode shape and seed it was drawn with, and which
version of the checkpoint file it tested (its size and modification time, plus the training step).
Each file is written atomically and has one writer at a time (the process that evaluated), so a
kill never leaves a torn result.

A stored evaluation is the current one of a checkpoint only while that file is unchanged
(:meth:`StoredEvaluation.is_of`: a resumed run that saved a new best is not evaluated yet) and for
the same episode shape (:meth:`StoredEvaluation.shape`); views ask this module, never read the files.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import EpisodeShape
from engine.errors import EngineError
from engine.evaluation import EvaluationResult, Misclassified
from engine.io import atomic_write_json, read_format_json
from engine.training.run_store import CHECKPOINT_DIR

FORMAT = "meta-studio-evaluation"
VERSION = 1
FILE_PATTERN = "evaluation-{}.json"


def evaluation_file(run_dir: Path | str, checkpoint: Path | str) -> Path:
    """Where the evaluation of ``checkpoint`` (a file in the run's checkpoints folder) is stored."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name != CHECKPOINT_DIR:
        raise EngineError(f"{checkpoint}: not a checkpoint of the run folder {run_dir}")
    return Path(run_dir) / FILE_PATTERN.format(checkpoint.stem)


def checkpoint_stamp(checkpoint: Path | str) -> tuple[int, int]:
    """(size, modification time in ns) of a checkpoint file: which version of it was evaluated."""
    info = Path(checkpoint).stat()
    return info.st_size, info.st_mtime_ns


@dataclass
class StoredEvaluation:
    """One stored evaluation of a checkpoint, as read back by :func:`load_evaluation`."""

    result: EvaluationResult
    checkpoint: str                 # the checkpoint file's name (CHECKPOINT_DIR/<name>)
    checkpoint_step: int            # the training step it was saved at
    stamp: tuple[int, int]          # the checkpoint file's (size, mtime_ns) when it was evaluated
    episodes: int                   # episodes asked for (result.n_episodes: evaluated)
    n_query: int
    seed: int
    device: str
    created: str
    path: Path                      # the file it was read from

    @property
    def shape(self) -> EpisodeShape:
        return EpisodeShape(n_way=self.result.n_way, n_shot=self.result.n_shot, n_query=self.n_query,
                            episodes=self.episodes)

    def is_of(self, checkpoint: Path | str) -> bool:
        """Whether this is an evaluation of ``checkpoint`` as the file is now (not of an older version)."""
        checkpoint = Path(checkpoint)
        try:
            return checkpoint.name == self.checkpoint and checkpoint_stamp(checkpoint) == self.stamp
        except OSError:
            return False

    def describe(self) -> str:
        """"600 episodes, 5-way 1-shot, 15 queries, seed 0, checkpoint at step 1,200"."""
        return (f"{self.episodes} episodes, {self.result.n_way}-way {self.result.n_shot}-shot, {self.n_query} "
                f"queries, seed {self.seed}, checkpoint at step {self.checkpoint_step:,}")


def save_evaluation(run_dir: Path | str, checkpoint: Path | str, checkpoint_step: int, result: EvaluationResult,
                    *, episodes: int, n_query: int, seed: int, device: str = "",
                    stamp: tuple[int, int] | None = None) -> Path:
    """Store ``result`` as the evaluation of ``checkpoint`` (replacing the previous one); returns the file.

    ``stamp``: the checkpoint file's :func:`checkpoint_stamp` when it was loaded (default: now); pass it
    so that a checkpoint rewritten during the evaluation is not taken as evaluated."""
    path = evaluation_file(run_dir, checkpoint)
    atomic_write_json(path, {
        "format": FORMAT, "version": VERSION, "checkpoint": Path(checkpoint).name,
        "checkpoint_step": int(checkpoint_step), "stamp": list(stamp or checkpoint_stamp(checkpoint)),
        "episodes": int(episodes), "n_query": int(n_query), "seed": int(seed), "device": device,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "result": _result_to_json(result)}, make_parents=False)
    return path


def load_evaluation(run_dir: Path | str, checkpoint: Path | str) -> StoredEvaluation | None:
    """The stored evaluation of ``checkpoint`` (None: never evaluated); EngineError naming a damaged file."""
    path = evaluation_file(run_dir, checkpoint)
    try:
        raw = read_format_json(path, FORMAT, VERSION, "evaluation file")
    except FileNotFoundError:
        return None
    try:
        size, mtime = raw["stamp"]
        return StoredEvaluation(
            _result_from_json(raw["result"]), str(raw["checkpoint"]), int(raw["checkpoint_step"]),
            (int(size), int(mtime)), int(raw["episodes"]), int(raw["n_query"]), int(raw["seed"]),
            str(raw.get("device", "")), str(raw.get("created", "")), path)
    except (KeyError, TypeError, ValueError) as error:
        raise EngineError(f"{path}: damaged evaluation file ({type(error).__name__}: {error})") from None


def _result_to_json(result: EvaluationResult) -> dict[str, Any]:
    return {
        "accuracy": result.accuracy, "ci95": result.ci95, "n_episodes": result.n_episodes, "n_way": result.n_way,
        "n_shot": result.n_shot, "episode_accuracies": list(result.episode_accuracies),
        "class_names": list(result.class_names), "per_class_accuracy": list(result.per_class_accuracy),
        "confusion": result.confusion.tolist(),
        "misclassified": [{"path": str(m.path) if m.path is not None else None, "true_class": m.true_class,
                           "predicted_class": m.predicted_class, "confidence": m.confidence, "episode": m.episode}
                          for m in result.misclassified]}


def _result_from_json(raw: dict[str, Any]) -> EvaluationResult:
    import torch

    names = [str(n) for n in raw["class_names"]]
    confusion = torch.tensor(raw["confusion"], dtype=torch.long).reshape(len(names), len(names))
    wrong = [Misclassified(Path(m["path"]) if m.get("path") else None, str(m["true_class"]),
                           str(m["predicted_class"]), float(m["confidence"]), int(m["episode"]))
             for m in raw["misclassified"]]
    return EvaluationResult(float(raw["accuracy"]), float(raw["ci95"]), int(raw["n_episodes"]), int(raw["n_way"]),
                            int(raw["n_shot"]), [float(a) for a in raw["episode_accuracies"]], names,
                            [float(a) for a in raw["per_class_accuracy"]], confusion, wrong)
