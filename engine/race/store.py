"""Race folders: where races live, what a running race writes, and reading them back.

A race folder (``<runs root>/races/<name>/``) holds ``race.json`` (config, status and result
table, written atomically), ``curves.jsonl`` (one row per algorithm step and validation, with the
own-time seconds) and one normal run folder per algorithm (:func:`racer_folder`), which can be
opened, evaluated or resumed like any run (the run store lists them with their race,
:attr:`~engine.training.run_store.RunRecord.race_dir`). :func:`load_race` reopens it; :func:`list_races`
lists them; :func:`delete_race` deletes one with its runs. Like :mod:`engine.training.run_store` for
runs (its lock, metrics writer and races folder are reused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, EngineError
from engine.io import atomic_write_json, read_format_json
from engine.race.config import RaceConfig, race_name
from engine.race.results import RaceResult
from engine.training import run_store as rs
from engine.training.callbacks import StepMetrics, ValidationResult

FORMAT = "meta-studio-race"
VERSION = 1
RACE_FILE = "race.json"
CURVES_FILE = "curves.jsonl"
RACES_FOLDER = rs.RACES_FOLDER


def races_root(runs_root: Path | str) -> Path:
    """Where races live under a runs root (``<runs>/races``)."""
    return Path(runs_root) / RACES_FOLDER


def new_race_dir(runs_root: Path | str, name: str) -> Path:
    """A fresh, unique race folder under ``<runs_root>/races``."""
    return rs.RunStore(races_root(runs_root)).new_run_dir(name)


def racer_folder(algorithm: str) -> str:
    """The run folder name of an algorithm inside a race folder ("baseline++" -> "baseline-pp")."""
    return algorithm.replace("++", "-pp").replace("+", "-p")


# -- writing ----------------------------------------------------------------------------------------------
class RaceFolderWriter:
    """What a running race writes into its folder: race.json (status, config, table) and curves.jsonl.

    :meth:`open` creates the folder and locks it (TrainingError if another process races there);
    :meth:`close` releases it. ``is_open``: whether the lock is held.
    """

    def __init__(self, folder: Path, config: RaceConfig) -> None:
        self.folder = folder
        self.config = config
        self.created = ""
        self._lock: rs.RunLock | None = None
        self._curves: rs.MetricsWriter | None = None

    @property
    def is_open(self) -> bool:
        return self._lock is not None

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = rs.RunLock(self.folder).acquire()
        self.created = rs.now_iso()
        self.write_status("running", None)
        self._curves = rs.MetricsWriter(self.folder / CURVES_FILE, keep_up_to_step=0)

    def write_status(self, status: str, result: RaceResult | None) -> None:
        """Rewrite race.json atomically with ``status`` and the table so far (None while running)."""
        atomic_write_json(self.folder / RACE_FILE, {
            "format": FORMAT, "version": VERSION, "name": self.config.display_name, "created": self.created,
            "status": status, "algorithms": self.config.algorithm_names, "config": self.config.to_dict(),
            "result": result.to_dict() if result is not None else None,
        })

    def write_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None:
        if self._curves is not None:
            self._curves.write({"kind": "step", "algorithm": algorithm, "step": metrics.step, "loss": metrics.loss,
                                "accuracy": metrics.accuracy, "seconds": round(seconds, 6)})

    def write_validation(self, algorithm: str, result: ValidationResult, seconds: float) -> None:
        if self._curves is not None:
            self._curves.write({"kind": "validation", "algorithm": algorithm, "step": result.step,
                                "accuracy": result.accuracy, "ci95": result.ci95, "episodes": result.n_episodes,
                                "seconds": round(seconds, 6)})

    def remove_if_empty(self) -> None:
        """Remove the folder of a race that failed before writing anything (no empty folder is left)."""
        try:
            self.folder.rmdir()
        except OSError:
            pass

    def close(self) -> None:
        if self._curves is not None:
            self._curves.close()
        if self._lock is not None:
            self._lock.release()


# -- reading ----------------------------------------------------------------------------------------------
@dataclass
class RaceCurve:
    """One algorithm's curves as saved: per-step values and the validation points."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    val_ci95: list[float] = field(default_factory=list)
    val_seconds: list[float] = field(default_factory=list)


@dataclass
class SavedRace:
    """A race folder as read back by :func:`load_race`."""

    folder: Path
    name: str
    created: str
    status: str                      # finished | stopped | failed | running | interrupted
    config: RaceConfig
    result: RaceResult | None
    curves: dict[str, RaceCurve]

    def run_dir(self, algorithm: str) -> Path:
        """The algorithm's run folder (open it with RunStore(folder).record(...), evaluate its checkpoints)."""
        return self.folder / racer_folder(algorithm)


@dataclass(frozen=True)
class RaceEntry:
    """One line of the list of saved races (``status`` "damaged" when race.json cannot be read)."""

    folder: Path
    name: str
    created: str
    status: str
    algorithms: list[str]


def _read_race_json(folder: Path) -> dict[str, Any]:
    path = folder / RACE_FILE
    try:
        return read_format_json(path, FORMAT, VERSION, "race file")
    except FileNotFoundError:
        raise EngineError(f"{path}: file not found (not a race folder)") from None


def _status(folder: Path, status: str) -> str:
    if status == "running" and not rs.run_is_locked(folder):
        return "interrupted"
    return status


def load_race(folder: Path | str) -> SavedRace:
    """Read a race folder: config, status, result table and curves; EngineError naming a damaged file."""
    folder = Path(folder)
    raw = _read_race_json(folder)
    path = folder / RACE_FILE
    try:
        config = RaceConfig.from_dict(raw.get("config"))
    except ConfigError as error:
        raise EngineError(f"{path}: damaged race file (config: {error})") from None
    try:
        result = RaceResult.from_dict(raw["result"], folder) if raw.get("result") is not None else None
    except (KeyError, TypeError, ValueError) as error:
        raise EngineError(f"{path}: damaged race file (result: {type(error).__name__} {error})") from None
    curves = {name: RaceCurve() for name in config.algorithm_names}
    for row in rs.read_metrics(folder / CURVES_FILE):
        _add_curve_row(curves, row)
    name = race_name(str(raw.get("name") or config.name), config.algorithm_names)
    return SavedRace(folder, name, str(raw.get("created", "")), _status(folder, str(raw.get("status", ""))),
                     config, result, curves)


def _add_curve_row(curves: dict[str, RaceCurve], row: dict[str, Any]) -> None:
    curve = curves.get(row.get("algorithm"))
    if curve is None:
        return
    try:
        if row.get("kind") == "step":
            values = (int(row["step"]), float(row["loss"]), float(row["accuracy"]), float(row["seconds"]))
            for target, value in zip((curve.step, curve.loss, curve.accuracy, curve.seconds), values):
                target.append(value)
        elif row.get("kind") == "validation":
            values = (int(row["step"]), float(row["accuracy"]), float(row["ci95"]), float(row["seconds"]))
            for target, value in zip((curve.val_step, curve.val_accuracy, curve.val_ci95, curve.val_seconds),
                                     values):
                target.append(value)
    except (KeyError, TypeError, ValueError):
        return  # a malformed row is skipped like a torn one


def list_races(runs_root: Path | str) -> list[RaceEntry]:
    """The races under ``<runs_root>/races``, newest first; damaged ones are listed as "damaged"."""
    root = races_root(runs_root)
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    entries = []
    for folder in folders:
        if not (folder / RACE_FILE).exists():
            continue
        try:
            raw = _read_race_json(folder)
            algorithms = [str(a) for a in raw.get("algorithms") or []]
            name = race_name(str(raw.get("name") or ""), algorithms) if algorithms else str(raw.get("name") or "")
            entries.append(RaceEntry(folder, name or folder.name, str(raw.get("created", "")),
                                     _status(folder, str(raw.get("status", ""))), algorithms))
        except EngineError:
            entries.append(RaceEntry(folder, folder.name, "", "damaged", []))
    return sorted(entries, key=lambda e: (e.created, e.folder.name), reverse=True)


# -- deleting ---------------------------------------------------------------------------------------------
def delete_race(runs_root: Path | str, folder: Path | str) -> None:
    """Delete a race folder with its runs (only a folder under ``<runs_root>/races``, not racing).

    Like :meth:`~engine.training.run_store.RunStore.delete`: the folder is first renamed to a hidden
    name, so a kill in the middle never leaves half a race in the history.
    """
    root = races_root(runs_root).resolve()
    folder = Path(folder).resolve()
    if folder.parent != root or not folder.is_dir():
        raise EngineError(f"{folder}: not a race of {runs_root}; refusing to delete")
    if _is_racing(folder):
        raise EngineError(f"{folder}: the race is still running; stop it before deleting it")
    rs.delete_folder(folder, "race")


def _is_racing(folder: Path) -> bool:
    """Whether a live process holds the race's lock or one of its runs' locks."""
    if rs.run_is_locked(folder):
        return True
    return any(child.is_dir() and rs.run_is_locked(child) for child in folder.iterdir())
