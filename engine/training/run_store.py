"""Run folders on disk, and the history of runs they make up.

A run folder holds::

    run.json          status, name, algorithm, data set, device, best accuracy, timing
    config.json       the RunConfig
    split.json        the class split (train / val / test class names)
    metrics.jsonl     one JSON object per line: {"kind": "step"|"validation", "step": ..., ...}
    checkpoints/      last.pt (newest) and best.pt (best validation accuracy)
    name.json         the name given by a rename (overrides run.json's name)
    .lock             held (flock) by the process training the run
    evaluation-best.json, evaluation-last.json
                      the stored test evaluation of each checkpoint (:mod:`engine.training.evaluation_store`)

The history is the set of run folders under the runs root, and the run folders of the races
under ``<root>/races/<race>/<racer>/`` (:attr:`RunRecord.race_dir` says which race; a race's
runs are deleted with their race, by :func:`engine.race.store.delete_race`); there is no shared index
file, so several studio windows and CLI processes can write runs at once, and a
kill in the middle of a write never corrupts the history:

* every JSON file is written atomically (old or new content, never a mix), and a
  torn last line of metrics.jsonl is ignored;
* each file has one writer: run.json belongs to the process training the run,
  name.json to renames, so a rename never overwrites the trainer's progress and
  two renames at once cannot lose a field;
* the training process holds an exclusive lock on ``.lock``; a run whose lock is
  free reads as "interrupted" even if its old pid was reused, a second process
  cannot train the same run at once, and a running run cannot be deleted;
* a deleted run is first renamed to a hidden folder, so a kill during deletion
  never leaves half a run in the history.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: liveness falls back to the pid
    fcntl = None  # type: ignore[assignment]

from engine.config import RunConfig
from engine.errors import ConfigError, EngineError, TrainingError
from engine.io import atomic_write_json, atomic_write_text, process_exists, remove_stale_temp_files

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
NAME_FILE = "name.json"
LOCK_FILE = ".lock"
TRASH_PREFIX = ".deleted-"
RACES_FOLDER = "races"
MAX_NAME_LENGTH = 200


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
    precision: str = ""            # the precision the run trains in (train.precision "auto" resolved)
    race_dir: Path | None = None   # the race folder of a run trained in a race (not in run.json: its location)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for derived in DERIVED_FIELDS:
            data.pop(derived)
        return data

    @property
    def last_checkpoint(self) -> Path:
        return checkpoint_file(self.run_dir, "last")

    @property
    def best_checkpoint(self) -> Path:
        return checkpoint_file(self.run_dir, "best")

    def checkpoint(self, which: str = "best") -> Path | None:
        """The checkpoint a view should use (:func:`find_checkpoint`), or None before the first one."""
        return find_checkpoint(self.run_dir, which)


DERIVED_FIELDS = ("run_dir", "race_dir")  # RunRecord fields that come from where the run is, not from run.json
CHECKPOINT_CHOICES = ("best", "last")


def checkpoint_file(run_dir: Path | str, which: str) -> Path:
    """Where a run keeps its ``which`` checkpoint ("best": best validation accuracy, "last": newest),
    whether or not it exists yet."""
    if which not in CHECKPOINT_CHOICES:
        raise ConfigError(f"checkpoint must be 'best' or 'last' (got {which!r})")
    return Path(run_dir) / CHECKPOINT_DIR / (BEST_CHECKPOINT if which == "best" else LAST_CHECKPOINT)


def find_checkpoint(run_dir: Path | str, which: str = "best") -> Path | None:
    """The one rule for picking a run's checkpoint: the ``which`` one ("best" or "last") if it exists, else
    the other, else None (a run that has not saved one yet)."""
    other = "last" if which == "best" else "best"
    for candidate in (checkpoint_file(run_dir, which), checkpoint_file(run_dir, other)):
        if candidate.is_file():
            return candidate
    return None


def checkpoint_label(path: Path | str) -> str:
    """A model file for people: ``<run>/<file>`` for a run's checkpoint (the same file names in every run), else
    the file's name."""
    path = Path(path)
    return f"{path.parent.parent.name}/{path.name}" if path.parent.name == CHECKPOINT_DIR else path.name


def missing_checkpoint_message(run_dir: Path | str) -> str:
    """Why :func:`find_checkpoint` found nothing, naming the files it looked for."""
    return (f"{run_dir}: the run folder has no checkpoint yet "
            f"({CHECKPOINT_DIR}/{BEST_CHECKPOINT} or {CHECKPOINT_DIR}/{LAST_CHECKPOINT})")


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_record(record: RunRecord) -> None:
    """Atomically write ``record`` to its run.json."""
    atomic_write_json(record.run_dir / RUN_FILE, record.to_json())


class RunLock:
    """An exclusive lock (``flock`` on ``run_dir/.lock``) held by the process training a run.

    The lock is released by the operating system when the process dies, however it
    dies, so it tells a live run from an interrupted one without trusting pids.
    Use as a context manager or with :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout_s: float = 2.0) -> "RunLock":
        """Take the lock; TrainingError naming the run when another process holds it.

        Readers probe the lock for an instant, so a busy lock is retried for ``timeout_s``.
        Stale temporary files of killed writers are removed once the lock is held.
        """
        if self._fd is not None or fcntl is None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    owner = _lock_owner(self.path)
                    raise TrainingError(f"{self.run_dir}: this run is already being trained by another process"
                                        f"{f' (pid {owner})' if owner else ''}") from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        for folder in (self.run_dir, self.run_dir / CHECKPOINT_DIR):
            remove_stale_temp_files(folder)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_is_locked(run_dir: Path | str) -> bool | None:
    """True when a live process holds the run's lock, False when it is free, None without a lock file."""
    if fcntl is None:
        return None
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the probe's shared lock at once
    return False


def run_is_alive(run_dir: Path | str, pid: int | None) -> bool:
    """Whether the process that wrote 'running' into a run.json is still training it."""
    locked = run_is_locked(run_dir)
    if locked is not None:
        return locked
    return bool(pid) and process_exists(int(pid))


def _lock_owner(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None




def delete_folder(folder: Path, what: str) -> None:
    """Delete ``folder`` (a run or a race: ``what`` names it in errors) so that a kill in the middle never
    leaves half of it: it is first renamed to a hidden name beside it, then removed; deletions that a
    killed process left half done beside it are finished too."""
    trash = folder.parent / f"{TRASH_PREFIX}{folder.name}-{secrets.token_hex(4)}"
    try:
        os.replace(folder, trash)
    except FileNotFoundError:
        raise EngineError(f"{folder}: the {what} folder no longer exists") from None
    except OSError as error:
        raise EngineError(f"{folder}: cannot delete ({error.strerror or error})") from None
    shutil.rmtree(trash, ignore_errors=True)
    try:
        leftovers = [p for p in folder.parent.iterdir() if p.name.startswith(TRASH_PREFIX)]
    except OSError:
        return
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)

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
        """Every readable run under the root, the runs of its races included, newest first; unreadable
        folders are skipped."""
        records = []
        for folder in self._run_folders():
            try:
                if (folder / RUN_FILE).is_file():
                    records.append(self.record(folder))
            except (EngineError, OSError):
                continue
        return sorted(records, key=lambda r: (r.created, r.run_dir.name), reverse=True)

    def _run_folders(self) -> list[Path]:
        """The folders that may hold a run: ``<root>/*`` and ``<root>/races/*/*`` (hidden ones skipped)."""
        folders = _visible_children(self.root)
        for race in _visible_children(self.races_root):
            folders += _visible_children(race)
        return folders

    @property
    def races_root(self) -> Path:
        """Where the races of this store live (``<root>/races``)."""
        return self.root / RACES_FOLDER

    def race_of(self, run_dir: Path | str) -> Path | None:
        """The race folder of a run trained in a race of this store (``<root>/races/<race>/<racer>``), else None."""
        parent = Path(run_dir).parent
        if parent.parent == self.races_root:
            return parent
        try:
            return parent if parent.parent.resolve() == self.races_root.resolve() else None
        except OSError:
            return None

    def record(self, run_dir: Path | str) -> RunRecord:
        """Read a run's run.json (and name.json); a 'running' run whose process is gone reads as 'interrupted'."""
        run_dir = Path(run_dir)
        raw = _read_json(run_dir / RUN_FILE)
        fields = set(RunRecord.__dataclass_fields__) - set(DERIVED_FIELDS)
        try:
            record = RunRecord(run_dir=run_dir, **{k: raw[k] for k in raw if k in fields})
        except TypeError as error:
            raise EngineError(f"{run_dir / RUN_FILE}: not a run record ({error})") from None
        record.race_dir = self.race_of(run_dir)
        renamed = _read_name(run_dir)
        if renamed is not None:
            record.name = renamed
        if record.status == "running" and not run_is_alive(run_dir, record.pid):
            record.status = "interrupted"
        return record

    def rename(self, run_dir: Path | str, name: str) -> RunRecord:
        """Give a run a new display name (written to name.json; run.json stays the trainer's)."""
        name = " ".join(str(name).split())
        if not name:
            raise ConfigError("run name must not be empty")
        if len(name) > MAX_NAME_LENGTH:
            raise ConfigError(f"run name must be at most {MAX_NAME_LENGTH} characters (got {len(name)})")
        run_dir = Path(run_dir)
        record = self.record(run_dir)
        try:
            atomic_write_json(run_dir / NAME_FILE, {"name": name}, make_parents=False)
        except FileNotFoundError:
            raise EngineError(f"{run_dir}: the run folder no longer exists") from None
        except OSError as error:
            raise EngineError(f"{run_dir / NAME_FILE}: cannot write ({error.strerror or error})") from None
        record.name = name
        return record

    def delete(self, run_dir: Path | str) -> None:
        """Remove a run folder (only folders under this store's root that hold a run.json, not running).

        The folder is first renamed to a hidden name, so a kill in the middle never leaves
        half a run in the history; leftovers of such kills are removed by the next delete.
        """
        race = self.race_of(run_dir)
        if race is not None:
            raise EngineError(f"{run_dir}: this run was trained in the race {race.name}; a race's runs are deleted "
                              "with their race, as a whole")
        run_dir = Path(run_dir).resolve()
        if run_dir.parent != self.root.resolve() or not (run_dir / RUN_FILE).is_file():
            raise EngineError(f"{run_dir}: not a run of this store; refusing to delete")
        try:
            running = self.record(run_dir).status == "running"
        except EngineError:  # an unreadable run.json: deletable unless a live process holds the run
            running = bool(run_is_locked(run_dir))
        if running:
            raise EngineError(f"{run_dir}: the run is still training; stop it before deleting it")
        delete_folder(run_dir, "run")

    def read_metrics(self, run_dir: Path | str) -> list[dict[str, Any]]:
        return read_metrics(Path(run_dir) / METRICS_FILE)

    def read_config(self, run_dir: Path | str) -> RunConfig:
        return RunConfig.from_dict(_read_json(Path(run_dir) / CONFIG_FILE))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Parse metrics.jsonl; a torn (half-written) or otherwise unreadable line is skipped."""
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    with handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _visible_children(folder: Path) -> list[Path]:
    """The entries of ``folder`` whose names do not start with "." (runs being deleted, temporary files)."""
    try:
        return [child for child in folder.iterdir() if not child.name.startswith(".")]
    except OSError:
        return []


def _row_step(row: dict[str, Any]) -> float:
    try:
        return float(row.get("step", 0))
    except (TypeError, ValueError):
        return float("inf")  # a malformed row is dropped by truncation


def _read_name(run_dir: Path) -> str | None:
    """The name from name.json, or None when there is none (or it is unreadable)."""
    try:
        with open(run_dir / NAME_FILE, encoding="utf-8") as handle:
            name = json.load(handle).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name.strip() else None


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
        rows = [r for r in read_metrics(self.path) if _row_step(r) <= step]
        text = "".join(json.dumps(r) + "\n" for r in rows)
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
