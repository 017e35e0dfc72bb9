"""TensorBoard event files of a run: the scalars of ``metrics.jsonl`` and the config as hyperparameters.

With ``train.tensorboard`` on, the trainer adds a :class:`TensorBoardCallback`, which writes into
``<run>/tensorboard/`` while the run trains; :func:`export_run` converts a run that already exists
(``meta-engine runs export --tensorboard``). Both go through :class:`TensorBoardWriter`, so the tags are the
same either way:

    train/loss, train/accuracy, train/lr              every step (the step rows of metrics.jsonl)
    val/accuracy, val/ci95_low, val/ci95_high         every validation (accuracy -+ its 95% CI half-width)

and one hyperparameter entry (the HParams dashboard) with every config field as ``section.field``.
A resumed run purges the events past the step it resumes from, as ``metrics.jsonl`` is truncated there.

The ``tensorboard`` package is optional (the ``tensorboard`` extra): it is imported when a writer is made,
and its absence is a :class:`~engine.errors.ConfigError` naming ``train.tensorboard`` and the install command.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.errors import ConfigError, EngineError
from engine.training.callbacks import Callback, RunInfo, RunSummary, StepMetrics, ValidationResult

TENSORBOARD_DIR = "tensorboard"
STEP_TAGS = {"loss": "train/loss", "accuracy": "train/accuracy", "lr": "train/lr"}
VALIDATION_TAGS = ("val/accuracy", "val/ci95_low", "val/ci95_high")
INSTALL_HINT = "pip install 'meta-studio[tensorboard]' (or pip install tensorboard)"


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"train.tensorboard needs the tensorboard package: {INSTALL_HINT}") from None
    return SummaryWriter


class TensorBoardWriter:
    """Event files in ``log_dir``; ``purge_step`` hides earlier events at or after it (a resumed run)."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        writer_class = _summary_writer_class()
        self.log_dir = Path(log_dir)
        self._writer = writer_class(log_dir=str(self.log_dir), purge_step=purge_step, flush_secs=5)

    def step(self, step: int, loss: float, accuracy: float, lr: float, walltime: float | None = None) -> None:
        for key, value in (("loss", loss), ("accuracy", accuracy), ("lr", lr)):
            if value is not None and not math.isnan(float(value)):
                self._writer.add_scalar(STEP_TAGS[key], float(value), step, walltime=walltime)

    def validation(self, step: int, accuracy: float, ci95: float, walltime: float | None = None) -> None:
        values = (accuracy, accuracy - ci95, accuracy + ci95)
        for tag, value in zip(VALIDATION_TAGS, values):
            self._writer.add_scalar(tag, float(value), step, walltime=walltime)

    def hyperparameters(self, config: RunConfig) -> None:
        """The config as one HParams entry of this run (metrics: the validation tags)."""
        from torch.utils.tensorboard.summary import hparams

        experiment, start, end = hparams(flat_config(config), {tag: 0.0 for tag in VALIDATION_TAGS})
        file_writer = self._writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def flat_config(config: RunConfig) -> dict[str, Any]:
    """``{"section.field": value}`` of the config; values other than numbers, text and booleans as text."""
    flat: dict[str, Any] = {}
    for section, values in config.to_dict().items():
        if not isinstance(values, dict):
            flat[section] = values if isinstance(values, (int, float, str, bool)) else str(values)
            continue
        for name, value in values.items():
            flat[f"{section}.{name}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


class TensorBoardCallback(Callback):
    """Writes a training run's scalars to ``<run>/tensorboard/`` as it trains (nothing without a run folder)."""

    def __init__(self, config: RunConfig) -> None:
        _summary_writer_class()  # fail at set-up, naming the field, when the package is missing
        self.config = config
        self.writer: TensorBoardWriter | None = None

    def on_run_start(self, info: RunInfo) -> None:
        if info.run_dir is None:
            return
        self.writer = TensorBoardWriter(Path(info.run_dir) / TENSORBOARD_DIR,
                                        purge_step=info.start_step + 1 if info.start_step else None)
        if not info.start_step:
            self.writer.hyperparameters(self.config)

    def on_step(self, metrics: StepMetrics) -> None:
        if self.writer is not None:
            self.writer.step(metrics.step, metrics.loss, metrics.accuracy, metrics.lr)

    def on_validation(self, result: ValidationResult) -> None:
        if self.writer is not None:
            self.writer.validation(result.step, result.accuracy, result.ci95)
            self.writer.flush()

    def on_finished(self, summary: RunSummary) -> None:
        self._close()

    def on_failed(self, message: str, summary: RunSummary) -> None:
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def export_run(run_dir: Path, out_dir: Path | None = None) -> Path:
    """Write the event files of an existing run from its ``metrics.jsonl`` and ``config.json`` into ``out_dir``
    (default ``<run>/tensorboard``; earlier event files there are replaced); returns the folder."""
    from engine.training.run_store import RunStore

    run_dir = Path(run_dir)
    store = RunStore(run_dir.parent)
    if store.record(run_dir).status == "running":
        raise EngineError(f"{run_dir}: the run is still training; convert it once it has stopped")
    config = store.read_config(run_dir)
    rows = store.read_metrics(run_dir)
    started = _created_timestamp(store, run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / TENSORBOARD_DIR
    if out_dir.exists():
        if not out_dir.is_dir():
            raise EngineError(f"{out_dir}: not a folder")
        shutil.rmtree(out_dir)
    writer = TensorBoardWriter(out_dir)
    try:
        writer.hyperparameters(config)
        for row in rows:
            _write_row(writer, row, started)
    finally:
        writer.close()
    return out_dir


def _write_row(writer: TensorBoardWriter, row: dict[str, Any], started: float | None) -> None:
    try:
        step = int(row["step"])
        walltime = started + float(row["time"]) if started is not None and "time" in row else None
        if row.get("kind") == "step":
            writer.step(step, float(row["loss"]), float(row.get("accuracy", math.nan)), float(row.get("lr", 0.0)),
                        walltime=walltime)
        elif row.get("kind") == "validation":
            writer.validation(step, float(row["accuracy"]), float(row.get("ci95", 0.0)), walltime=walltime)
    except (KeyError, TypeError, ValueError):
        return  # a malformed row, as read_metrics skips a torn one


def _created_timestamp(store: Any, run_dir: Path) -> float | None:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(store.record(run_dir).created).timestamp()
    except (EngineError, ValueError, TypeError):
        return None
