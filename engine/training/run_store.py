"""Run folders on disk, and the history of runs they make up.

A run folder holds::

    run.json          status, name, algorithm, data set, device, best accuracy, timing
    config.json       the RunConfig
    split.json        the class split (train / val / test class names)
    metrics.jsonl     one JSON object per line: {"kind": "step"|"validation", "step": ..., ...}
    checkpoints/      last.pt (newest) and best.pt (best validation accuracy)

The history is the set of folders under the runs root; there is no shared index
file, so several studio windows and CLI processes can write runs at once without
a lock, and a kill in the middle of a write never corrupts the history (every
JSON file is written atomically; a torn last line of metrics.jsonl is ignored).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.errors import ConfigError, EngineError
from engine.io import atomic_write_json

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


def default_runs_root() -> Path:
    """``$META_STUDIO_HOME/runs``, else ``~/.local/share/meta-studio/runs``."""
    home = os.environ.get("META_STUDIO_HOME")
    if home:
        return Path(home) / "runs"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "meta-studio" / "runs"


@dataclass
class RunRecord:
    """One line of the run history (the content of run.json)."""

    run_dir: Path
    name: str
    algorithm: str
    dataset: str
    device: str
    status: str
    best_val_accuracy: float | None
    duration_s: float
    created: str
    steps_done: int
    total_steps: int
    best_step: int | None = None
    pid: int | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("run_dir")
        return data

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_record(record: RunRecord) -> None:
    """Atomically write ``record`` to its run.json."""
    atomic_write_json(record.run_dir / RUN_FILE, record.to_json())


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """The runs under one root folder."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_root()

    def new_run_dir(self, name: str) -> Path:
        """Create and return a fresh, unique run folder for a run called ``name``."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40].strip("-") or "run"
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            run_dir = self.root / f"{stamp}-{slug}-{secrets.token_hex(2)}"
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue

    def list_runs(self) -> list[RunRecord]:
        """Every readable run under the root, newest first; unreadable folders are skipped."""
        if not self.root.is_dir():
            return []
        records = []
        for child in self.root.iterdir():
            if (child / RUN_FILE).is_file():
                try:
                    records.append(self.record(child))
                except EngineError:
                    continue
        return sorted(records, key=lambda r: (r.created, r.run_dir.name), reverse=True)

    def record(self, run_dir: Path | str) -> RunRecord:
        """Read a run's run.json; a 'running' run whose process is gone reads as 'interrupted'."""
        run_dir = Path(run_dir)
        raw = _read_json(run_dir / RUN_FILE)
        try:
            record = RunRecord(run_dir=run_dir, **{k: raw[k] for k in raw if k in RunRecord.__dataclass_fields__})
        except TypeError as error:
            raise EngineError(f"{run_dir / RUN_FILE}: not a run record ({error})") from None
        if record.status == "running" and not _pid_alive(record.pid):
            record.status = "interrupted"
        return record

    def rename(self, run_dir: Path | str, name: str) -> RunRecord:
        name = name.strip()
        if not name:
            raise ConfigError("run name must not be empty")
        record = self.record(run_dir)
        raw = _read_json(Path(run_dir) / RUN_FILE)
        raw["name"] = name
        atomic_write_json(Path(run_dir) / RUN_FILE, raw)
        record.name = name
        return record

    def delete(self, run_dir: Path | str) -> None:
        """Remove a run folder (only folders under this store's root that hold a run.json)."""
        run_dir = Path(run_dir).resolve()
        if run_dir.parent != self.root.resolve() or not (run_dir / RUN_FILE).is_file():
            raise EngineError(f"{run_dir}: not a run of this store; refusing to delete")
        shutil.rmtree(run_dir)

    def read_metrics(self, run_dir: Path | str) -> list[dict[str, Any]]:
        return read_metrics(Path(run_dir) / METRICS_FILE)

    def read_config(self, run_dir: Path | str) -> RunConfig:
        return RunConfig.from_dict(_read_json(Path(run_dir) / CONFIG_FILE))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Parse metrics.jsonl; a torn (half-written) line is skipped."""
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise EngineError(f"{path}: file not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EngineError(f"{path}: unreadable ({error})") from None
    if not isinstance(data, dict):
        raise EngineError(f"{path}: expected a JSON object")
    return data


class MetricsWriter:
    """Appends metric rows to metrics.jsonl, one JSON object per line, flushed each row."""

    def __init__(self, path: Path, keep_up_to_step: int | None = None) -> None:
        self.path = path
        if keep_up_to_step is not None:
            self._truncate_after(keep_up_to_step)
        self._handle = open(path, "a", encoding="utf-8")

    def _truncate_after(self, step: int) -> None:
        rows = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        from engine.io import atomic_write_text

        atomic_write_text(self.path, text)

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()
