"""What a race reports: the start notice, one table row per algorithm, the table, and the callbacks.

Every object here is plain data that pickles (paths, strings, numbers, the training callbacks'
frozen dataclasses), so a race can run in another process and send them back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.training.callbacks import StepMetrics, ValidationResult

MIB = 1024 * 1024


@dataclass(frozen=True)
class RaceInfo:
    """Sent once when the race starts (data loaded, run folders open)."""

    race_dir: Path | None
    name: str
    algorithms: list[str]
    total_steps: int
    device: str
    streams: dict[str, str]   # algorithm -> which training-batch stream it reads
    n_train_classes: int
    n_test_classes: int


@dataclass(frozen=True)
class RaceStep:
    """What :meth:`~engine.race.scheduler.Race.steps` yields after each step of one algorithm (its
    validation and checkpoint done): the trainer's :class:`~engine.training.trainer.StepOutcome`,
    tagged with the algorithm. ``train_seconds``: that step alone; ``seconds``: the algorithm's own
    compute time so far."""

    algorithm: str
    metrics: StepMetrics
    train_seconds: float
    seconds: float


@dataclass
class AlgorithmResult:
    """One row of the race table."""

    algorithm: str
    title: str
    status: str                       # finished | stopped | failed
    steps_done: int
    total_steps: int
    batch_kind: str                   # episodes | classes
    train_seconds: float              # own compute time of its training steps
    test_accuracy: float | None = None
    test_ci95: float | None = None
    test_episodes: int = 0
    best_val_accuracy: float | None = None
    peak_memory_bytes: int | None = None
    memory_method: str = ""
    run_dir: str | None = None        # the algorithm's run folder, relative to the race folder
    message: str = ""

    @property
    def peak_memory_mib(self) -> float | None:
        return None if self.peak_memory_bytes is None else self.peak_memory_bytes / MIB

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "AlgorithmResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class RaceResult:
    """The race table and how the race ended (``status``: finished, stopped or failed)."""

    status: str
    rows: list[AlgorithmResult]
    duration_s: float
    device: str
    test_episodes: int
    test_seed: int
    message: str = ""
    race_dir: Path | None = None

    def row(self, algorithm: str) -> AlgorithmResult:
        return next(r for r in self.rows if r.algorithm == algorithm)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "duration_s": self.duration_s, "device": self.device,
                "test_episodes": self.test_episodes, "test_seed": self.test_seed, "message": self.message,
                "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], race_dir: Path | None = None) -> "RaceResult":
        return cls(status=str(raw["status"]), rows=[AlgorithmResult.from_dict(r) for r in raw["rows"]],
                   duration_s=float(raw["duration_s"]), device=str(raw["device"]),
                   test_episodes=int(raw["test_episodes"]), test_seed=int(raw["test_seed"]),
                   message=str(raw.get("message", "")), race_dir=race_dir)


def format_accuracy(row: AlgorithmResult) -> str:
    """A row's test accuracy as "81.25% +- 2.10%" ("-" when it was not evaluated): one rule for the
    CLI's table and the studio's."""
    if row.test_accuracy is None:
        return "-"
    return f"{100 * row.test_accuracy:.2f}% +- {100 * (row.test_ci95 or 0.0):.2f}%"


def format_memory(row: AlgorithmResult) -> str:
    """A row's peak memory as "12.3 MiB" ("-" when it was not measured)."""
    return "-" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / MIB:.1f} MiB"


class RaceCallback:
    """Typed, empty hooks through which a race reports; override what you need.

    ``seconds`` is the algorithm's own compute time so far (the x axis of a time plot).
    """

    def on_race_start(self, info: RaceInfo) -> None: ...

    def on_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None: ...

    def on_validation(self, algorithm: str, result: ValidationResult, seconds: float) -> None: ...

    def on_log(self, message: str, level: str = "info") -> None: ...

    def on_algorithm_trained(self, algorithm: str, status: str) -> None:
        """The algorithm's training ended (``status``: finished, stopped or failed) while others may
        still race; its test evaluation comes when every algorithm is done."""

    def on_evaluation_progress(self, algorithm: str, done: int, total: int) -> None:
        """The final test evaluation of ``algorithm``: ``done`` of ``total`` episodes (0 at its start)."""

    def on_algorithm_finished(self, algorithm: str, row: AlgorithmResult) -> None: ...

    def on_race_finished(self, result: RaceResult) -> None: ...

    def on_failed(self, message: str) -> None: ...


class RaceCallbackList(RaceCallback):
    """Fans each hook out to several race callbacks in order."""

    def __init__(self, callbacks: Sequence[RaceCallback]) -> None:
        self.callbacks = list(callbacks)

    def on_race_start(self, info: RaceInfo) -> None:
        for cb in self.callbacks:
            cb.on_race_start(info)

    def on_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None:
        for cb in self.callbacks:
            cb.on_step(algorithm, metrics, seconds)

    def on_validation(self, algorithm: str, result: ValidationResult, seconds: float) -> None:
        for cb in self.callbacks:
            cb.on_validation(algorithm, result, seconds)

    def on_log(self, message: str, level: str = "info") -> None:
        for cb in self.callbacks:
            cb.on_log(message, level)

    def on_algorithm_trained(self, algorithm: str, status: str) -> None:
        for cb in self.callbacks:
            cb.on_algorithm_trained(algorithm, status)

    def on_evaluation_progress(self, algorithm: str, done: int, total: int) -> None:
        for cb in self.callbacks:
            cb.on_evaluation_progress(algorithm, done, total)

    def on_algorithm_finished(self, algorithm: str, row: AlgorithmResult) -> None:
        for cb in self.callbacks:
            cb.on_algorithm_finished(algorithm, row)

    def on_race_finished(self, result: RaceResult) -> None:
        for cb in self.callbacks:
            cb.on_race_finished(result)

    def on_failed(self, message: str) -> None:
        for cb in self.callbacks:
            cb.on_failed(message)
