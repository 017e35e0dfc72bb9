"""Where a sweep's study lives: Optuna's storages, opened from one URL.

* nothing given: an SQLite file under the runs folder, ``<runs>/sweeps/optuna.db``;
* ``sqlite:///FILE``, ``postgresql://...``, ``mysql://...``: Optuna's RDB storage (any URL SQLAlchemy
  takes), with Optuna's heartbeat so that a trial of a process killed on another machine is marked
  failed by the next process that asks for a trial;
* ``journal:FILE`` (or a path ending in ``.journal``/``.log``): Optuna's journal file storage.

Several sweep processes, on one machine or many, pointed at the same storage and study name share
one study (Optuna's storages are made for it). A URL that cannot be opened is a
:class:`~engine.errors.ConfigError` naming it, and nothing is created for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import ConfigError

SWEEPS_FOLDER = "sweeps"
DEFAULT_DB = "optuna.db"
JOURNAL_PREFIX = "journal:"
JOURNAL_SUFFIXES = (".journal", ".log")
HEARTBEAT_S = 20
GRACE_S = 60
"""Optuna's heartbeat: a RUNNING trial without a beat for ``GRACE_S`` seconds is failed by the next process."""
CREATION_RACE_TRIES = 8
"""Opening attempts while other processes create the same new database's tables (see :func:`_lost_creation_race`)."""
CREATION_RACE_SIGNS = ("already exists", "unique constraint failed: alembic_version", "database is locked")


def default_storage_url(runs_root: Path) -> str:
    return f"sqlite:///{Path(runs_root) / SWEEPS_FOLDER / DEFAULT_DB}"


def open_storage(url: str, *, create: bool = True) -> Any:
    """Optuna's storage for ``url``. ``create=False``: refuse an SQLite or journal file that does not
    exist (reading a sweep never creates one; no heartbeat either). ConfigError naming the URL when it
    cannot be opened."""
    import optuna

    path = _file_of(url)
    if path is not None:
        _check_file(url, path, create)
    try:
        if _is_journal(url):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if not create:
            return optuna.storages.RDBStorage(url)
        return _created_rdb_storage(url)
    except Exception as error:  # SQLAlchemy's errors (no driver, host down, bad file) are many types
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"{url}: the study storage cannot be opened ({first_line[:200]})") from None


def _created_rdb_storage(url: str) -> Any:
    """Optuna's RDB storage with its heartbeat, creating the tables of a new database. Sweeps started
    together on a new database each create its tables, and all but one lose that race (a table or the
    schema version "already exists"); the losers try again and find the tables made."""
    import time
    import warnings

    import optuna

    for attempt in range(CREATION_RACE_TRIES):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna 5.1 (stable since 2.x)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except Exception as error:
            if attempt == CREATION_RACE_TRIES - 1 or not _lost_creation_race(error):
                raise
            time.sleep(0.05 * 2 ** attempt)  # 0.05 .. 3.2 s: the winner's few CREATE TABLEs take milliseconds
    raise AssertionError("unreachable")


def _lost_creation_race(error: Exception) -> bool:
    return any(sign in str(error).lower() for sign in CREATION_RACE_SIGNS)


def ensure_default_folder(runs_root: Path) -> None:
    (Path(runs_root) / SWEEPS_FOLDER).mkdir(parents=True, exist_ok=True)


def _is_journal(url: str) -> bool:
    return url.startswith(JOURNAL_PREFIX) or (("://" not in url) and url.endswith(JOURNAL_SUFFIXES))


def _file_of(url: str) -> Path | None:
    """The file of a journal or SQLite URL (None: a server's URL); ConfigError for what is no URL."""
    if _is_journal(url):
        text = url[len(JOURNAL_PREFIX):] if url.startswith(JOURNAL_PREFIX) else url
        if not text:
            raise ConfigError(f"{url}: a journal storage needs a file (journal:FILE)")
        return Path(text)
    if "://" not in url:
        raise ConfigError(f"{url}: not a storage URL (sqlite:///FILE, postgresql://..., mysql://..., or "
                          "journal:FILE)")
    if url.startswith("sqlite:"):
        text = url.split(":///", 1)[1] if ":///" in url else ""
        if not text or text == ":memory:":
            raise ConfigError(f"{url}: an SQLite storage needs a file (sqlite:///FILE); a memory database "
                              "cannot be shared")
        return Path(text)
    return None


def _check_file(url: str, path: Path, create: bool) -> None:
    if path.is_dir():
        raise ConfigError(f"{url}: {path} is a folder, not a study file")
    if not create and not path.is_file():
        raise ConfigError(f"{url}: no study storage at {path}")
    if create and not path.parent.is_dir():
        raise ConfigError(f"{url}: the folder {path.parent} does not exist")
