"""Atomic file writes: a reader never sees a half-written file.

Each writer writes to a temporary file in the destination folder, flushes and
fsyncs it, then ``os.replace``-s it over the destination and fsyncs the folder,
so after a crash (even a power cut) the destination holds either the old or
the new content. The temporary file is hidden (``.<name>.<pid>.<random>.tmp``);
one left behind by a killed process is removed by
:func:`remove_stale_temp_files` once that process is gone.

``torch`` is imported only by :func:`atomic_torch_save`, so the run store and
other plain-file users load fast.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError, EngineError

TEMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, make_parents: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    make_parents: create the destination folder when missing; with False a missing
        folder raises FileNotFoundError (a folder deleted meanwhile is not recreated).
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every OS/file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, make_parents: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), make_parents=make_parents)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, make_parents: bool = True) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", make_parents=make_parents)


def read_format_json(path: Path, file_format: str, version: int, what: str) -> dict[str, Any]:
    """A JSON file of ours (``{"format": file_format, "version": <= version, ...}``) as a dict; EngineError
    naming ``path`` and ``what`` it is ("race file") when it is damaged or newer. FileNotFoundError is left
    to the caller (a missing file means something different to each)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EngineError(f"{path}: damaged {what} ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != file_format:
        raise EngineError(f"{path}: damaged {what} (not a {file_format} file)")
    if not isinstance(raw.get("version"), int) or raw["version"] > version:
        raise EngineError(f"{path}: {what} version {raw.get('version')!r} is not supported (newest {version})")
    return raw


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (serialised in memory first)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; returns what was removed.

    Only files named like :func:`atomic_write_bytes`'s temporaries whose writing
    process no longer exists are removed, so a concurrent writer is never disturbed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = _temp_file_pid(entry.name)
        if pid is None or process_exists(pid):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _temp_file_pid(name: str) -> int | None:
    """The writer's pid encoded in a temporary file name ``.<name>.<pid>.<random>.tmp``, else None."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    parts = name[: -len(TEMP_SUFFIX)].split(".")
    if len(parts) < 4 or not parts[-2].isdigit():
        return None
    return int(parts[-2])


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (one owned by another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def verify_zip_records(path: str | os.PathLike[str]) -> None:
    """Refuse a zip-format file (what ``torch.save`` writes) any of whose records fails its CRC-32, with a
    CheckpointError naming the file: ``torch.load`` does not check them, so a flipped bit in a weight would
    load silently. Files that are not zips are left to their reader."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            corrupt = archive.testzip()
    except Exception as error:  # zipfile raises many types on a broken archive; all mean "unreadable"
        lines = str(error).strip().splitlines()
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                              f"{lines[0][:200] if lines else type(error).__name__})") from None
    if corrupt is not None:
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt: the bytes of {corrupt} do not "
                              "match their checksum)")
