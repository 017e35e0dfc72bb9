"""Plain callbacks through which the trainer reports; no Qt anywhere.

Subclass :class:`Callback` and override the hooks you need; every hook is a
no-op by default. The studio's ``studio/jobs/engine_run.py`` turns these calls into Qt
signals; the CLI turns them into a progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class RunInfo:
    """Sent once when a run starts (or resumes)."""

    run_dir: Path | None
    total_steps: int
    start_step: int
    device: str
    n_train_classes: int
    n_val_classes: int
    n_test_classes: int


@dataclass(frozen=True)
class StepMetrics:
    """Metrics of one meta-training step."""

    step: int
    total_steps: int
    loss: float
    accuracy: float
    lr: float
    episodes_per_second: float
    elapsed_s: float
    eta_s: float


@dataclass(frozen=True)
class ValidationResult:
    """Mean accuracy over ``n_episodes`` validation episodes with its 95% CI half-width."""

    step: int
    accuracy: float
    ci95: float
    n_episodes: int
    is_best: bool


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path
    is_best: bool


@dataclass(frozen=True)
class RunSummary:
    """Sent when a run ends; ``status`` is finished, stopped or failed."""

    run_dir: Path | None
    status: str
    steps_done: int
    best_val_accuracy: float | None
    best_step: int | None
    duration_s: float
    message: str = ""


class Callback:
    """Typed, empty hooks; override what you need."""

    def on_run_start(self, info: RunInfo) -> None: ...

    def on_step(self, metrics: StepMetrics) -> None: ...

    def on_validation(self, result: ValidationResult) -> None: ...

    def on_checkpoint(self, info: CheckpointInfo) -> None: ...

    def on_log(self, message: str, level: str = "info") -> None: ...

    def on_finished(self, summary: RunSummary) -> None: ...

    def on_failed(self, message: str, summary: RunSummary) -> None: ...


@dataclass
class CallbackList(Callback):
    """Fans each hook out to several callbacks in order."""

    callbacks: Sequence[Callback] = field(default_factory=tuple)

    def on_run_start(self, info: RunInfo) -> None:
        for cb in self.callbacks:
            cb.on_run_start(info)

    def on_step(self, metrics: StepMetrics) -> None:
        for cb in self.callbacks:
            cb.on_step(metrics)

    def on_validation(self, result: ValidationResult) -> None:
        for cb in self.callbacks:
            cb.on_validation(result)

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(info)

    def on_log(self, message: str, level: str = "info") -> None:
        for cb in self.callbacks:
            cb.on_log(message, level)

    def on_finished(self, summary: RunSummary) -> None:
        for cb in self.callbacks:
            cb.on_finished(summary)

    def on_failed(self, message: str, summary: RunSummary) -> None:
        for cb in self.callbacks:
            cb.on_failed(message, summary)
