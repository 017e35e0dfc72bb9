"""The race table at the end: one row per racer, its test accuracy on the race's seeded test
episodes (the same for everyone), its peak memory, and how the race as a whole ended."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from engine.config import RunConfig
from engine.errors import EngineError
from engine.race.config import RaceConfig, batch_kind
from engine.race.results import AlgorithmResult
from engine.training.step_memory import CUDA_MEMORY_METHOD, cpu_step_memory

if TYPE_CHECKING:
    from engine.algorithms.base import Algorithm
    from engine.data.dataset import FewShotData
    from engine.training.trainer import Trainer


def racer_row(name: str, config: RunConfig, trainer: Trainer, run_dir: Path | None) -> AlgorithmResult:
    """The row of one racer from its trainer's summary (status "failed" when it has none)."""
    summary = trainer.summary
    return AlgorithmResult(
        algorithm=name, title=config.algorithm.title or name,
        status=summary.status if summary is not None else "failed",
        steps_done=summary.steps_done if summary is not None else 0, total_steps=config.train.steps,
        batch_kind=batch_kind(name), train_seconds=trainer.train_seconds,
        best_val_accuracy=summary.best_val_accuracy if summary is not None else None,
        run_dir=run_dir.name if run_dir is not None and run_dir.is_dir() else None,
        message=summary.message if summary is not None else "")


def evaluate_row(row: AlgorithmResult, algorithm: Algorithm, data: FewShotData, race: RaceConfig,
                 should_stop: Callable[[], bool], progress: Callable[[int, int], None] | None = None) -> None:
    """Test accuracy of the final weights on the race's seeded test episodes (the same for everyone);
    ``progress(done, total)`` at the start and then as :func:`engine.evaluation.evaluate` reports it."""
    from engine.evaluation import evaluate

    task = race.task
    if progress is not None:
        progress(0, race.test_episodes)
    try:
        result = evaluate(algorithm, data, part="test", episodes=race.test_episodes, n_way=task.eval_n_way,
                          n_shot=task.eval_n_shot, n_query=task.n_query, seed=race.test_seed,
                          progress=progress, should_stop=should_stop)
    except EngineError as error:
        row.message = f"test evaluation failed: {error}"
        return
    if result.n_episodes:
        row.test_accuracy, row.test_ci95, row.test_episodes = result.accuracy, result.ci95, result.n_episodes


def measure_row_memory(row: AlgorithmResult, algorithm: Algorithm, device: str, cuda_peak: int,
                       first_batch: Callable[[], Any]) -> None:
    """The row's peak memory: the CUDA peak recorded during its steps, or on the CPU one profiled
    step on ``first_batch()`` (:func:`~engine.training.step_memory.cpu_step_memory`)."""
    if device.startswith("cuda"):
        row.peak_memory_bytes, row.memory_method = int(cuda_peak), CUDA_MEMORY_METHOD
    elif device != "cpu":
        row.memory_method = f"not measured on {device}"
    else:
        row.peak_memory_bytes, row.memory_method = cpu_step_memory(algorithm, first_batch())


def race_status(rows: Sequence[AlgorithmResult], stopped: bool) -> tuple[str, str]:
    """(status, message) of the whole race: stopped, failed (every racer failed) or finished."""
    if stopped:
        status = "stopped"
    elif all(r.status == "failed" for r in rows):
        status = "failed"
    else:
        status = "finished"
    failed = [r.algorithm for r in rows if r.status == "failed"]
    message = f"failed: {', '.join(failed)}" if failed else ""
    if status == "stopped":
        message = "stopped before the end: no test evaluation" + (f"; {message}" if message else "")
    return status, message
