"""The support set of the adapt session, without any Qt: examples, class cards, undo/redo, names, drops, decoding.

A support set is an immutable tuple of :class:`ClassState` (a class card: id,
name, example images), so an undo snapshot is just a reference to the previous
tuple. Dropped files are listed (folders walked recursively) and decoded through
:meth:`engine.data.preprocess.Preprocessing.decode`; every file that cannot be used is kept
as a :class:`~engine.data.folder.SkippedFile` whose reason :func:`drop_message`
reports together with the file's name.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.data.folder import IMAGE_EXTENSIONS, SkippedFile
from engine.data.images import ImageDecodeError
from engine.data.preprocess import Preprocessing

BULK_FILES = 1000
"""Drops of more files than this are decoded in the worker thread behind a cancellable progress dialog."""
UNDO_LIMIT = 200
MAX_LISTED_PROBLEMS = 4
"""A drop message names at most this many files per kind of problem."""

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]

_ids = itertools.count(1)


def new_uid() -> int:
    """A process-unique id for a class card or a clipboard image."""
    return next(_ids)


@dataclass(frozen=True, eq=False)
class Example:
    """One image of a class card or of the test zone.

    pixels: uint8 [C, H, W] at the current model's preprocessing (size and channels).
    key: identity for duplicate detection (the resolved file path, or ``clipboard:<n>``).
    source: the file it came from (None for images restored from a saved classifier).
    truth: the class name given by the sub-folder of a dropped test folder, if any.
    """

    key: str
    name: str
    pixels: Tensor
    source: Path | None = None
    truth: str | None = None


@dataclass(frozen=True, eq=False)
class ClassState:
    """One class card: a stable id, its name and its support examples."""

    uid: int
    name: str
    examples: tuple[Example, ...] = ()


SupportSet = tuple[ClassState, ...]


def support_key(support: SupportSet) -> tuple:
    """What adaptation depends on: the order of the non-empty classes and their examples (not names)."""
    return tuple((c.uid, tuple(e.key for e in c.examples)) for c in support if c.examples)


def usable_classes(support: SupportSet) -> list[ClassState]:
    """Classes with at least one image (the others are left out of adaptation)."""
    return [c for c in support if c.examples]


class UndoHistory:
    """Snapshots of support sets: ``record`` the state before each change; ``undo`` and ``redo`` swap them."""

    def __init__(self, limit: int = UNDO_LIMIT) -> None:
        self._undo: list[tuple[SupportSet, str]] = []
        self._redo: list[tuple[SupportSet, str]] = []
        self.limit = limit

    def record(self, before: SupportSet, description: str) -> None:
        """A new change (described as ``description``) replaced ``before``; it clears the redo list."""
        self._push(self._undo, before, description)
        self._redo.clear()

    def undo(self, current: SupportSet) -> tuple[SupportSet, str] | None:
        """The snapshot before the last change and its description (None when there is nothing to undo)."""
        return self._swap(self._undo, self._redo, current)

    def redo(self, current: SupportSet) -> tuple[SupportSet, str] | None:
        """The state the last undo left, and its description (None when there is nothing to redo)."""
        return self._swap(self._redo, self._undo, current)

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    def __len__(self) -> int:
        """How many changes can be undone."""
        return len(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def last_description(self) -> str:
        """What ``undo`` would undo ("" when nothing)."""
        return self._undo[-1][1] if self._undo else ""

    def _push(self, stack: list[tuple[SupportSet, str]], snapshot: SupportSet, description: str) -> None:
        stack.append((snapshot, description))
        if len(stack) > self.limit:
            del stack[0]

    def _swap(self, source: list[tuple[SupportSet, str]], target: list[tuple[SupportSet, str]],
              current: SupportSet) -> tuple[SupportSet, str] | None:
        if not source:
            return None
        snapshot, description = source.pop()
        self._push(target, current, description)
        return snapshot, description


# -- names -----------------------------------------------------------------------------------------
def name_problem(name: str, support: SupportSet, own_uid: int | None = None) -> str | None:
    """Why ``name`` cannot name a class (empty, too long, used by another card), or None."""
    name = name.strip()
    if not name:
        return "A class needs a name."
    if len(name) > 100:
        return "Class names are limited to 100 characters."
    if "/" in name or "\\" in name:
        return "Class names cannot contain '/' or '\\'."
    for other in support:
        if other.uid != own_uid and other.name.casefold() == name.casefold():
            return f"The name '{name}' is already used by another class."
    return None


def next_class_name(support: SupportSet) -> str:
    """``Class N`` with the smallest N not in use."""
    used = {c.name.casefold() for c in support}
    for n in itertools.count(1):
        if f"class {n}" not in used:
            return f"Class {n}"
    raise AssertionError("unreachable")


# -- files -----------------------------------------------------------------------------------------
@dataclass
class DropListing:
    """The image files of a drop (folders walked recursively, sorted) and what was left out."""

    files: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    truth: dict[Path, str] = field(default_factory=dict)  # test folders: file -> its sub-folder's name
    from_folder: bool = False


def list_dropped(paths: Iterable[Path | str]) -> DropListing:
    """Expand dropped paths: files are kept as given (decoding tells later if they are images);
    folders contribute their image files (by extension, recursively); missing paths are skipped."""
    listing = DropListing()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            listing.from_folder = True
            _walk_folder(path, listing)
        elif path.is_file():
            listing.files.append(path)
        else:
            listing.skipped.append(SkippedFile(path, "file not found"))
    return listing


def _walk_folder(root: Path, listing: DropListing) -> None:
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                listing.files.append(path)
                if path.parent != root:
                    listing.truth[path] = path.parent.name
            else:
                listing.skipped.append(SkippedFile(path, "not an image file (by its extension)"))


def class_folder_groups(paths: Sequence[Path | str]) -> list[tuple[str | None, list[Path]]]:
    """Paths dropped beside the cards -> (class name or None for ``Class N``, paths) for each new class.

    Each folder whose sub-folders hold images gives one class per such sub-folder (named like it);
    everything else goes to one last class (named like the folder when it is the only path).
    """
    groups: list[tuple[str | None, list[Path]]] = []
    loose: list[Path] = []
    for path in map(Path, paths):
        subfolders = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
        subfolders = [p for p in subfolders if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in p.iterdir())]
        if subfolders:
            groups += [(folder.name, [folder]) for folder in subfolders]
        else:
            loose.append(path)
    if loose:
        groups.append((loose[0].name if len(loose) == 1 and loose[0].is_dir() else None, loose))
    return groups


def file_key(path: Path) -> str:
    """The duplicate-detection key of a file: its resolved absolute path."""
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())


def under(path: Path, folders: Sequence[Path]) -> bool:
    """True when ``path`` is one of ``folders`` or lies inside one of them."""
    return any(folder == path or folder in path.parents for folder in folders)


@dataclass
class DecodeResult:
    examples: list[Example]
    skipped: list[SkippedFile]
    cancelled: bool = False


def decode_files(files: Sequence[Path], prep: Preprocessing, *, truth: dict[Path, str] | None = None,
                 progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> DecodeResult:
    """Decode image files to uint8 examples at ``prep``'s size; undecodable files are skipped with a reason."""
    examples: list[Example] = []
    skipped: list[SkippedFile] = []
    total = len(files)
    for i, path in enumerate(files):
        if should_stop is not None and should_stop():
            return DecodeResult(examples, skipped, cancelled=True)
        try:
            pixels = prep.decode(path)
        except ImageDecodeError as error:
            skipped.append(SkippedFile(path, error.reason))
        else:
            examples.append(Example(file_key(path), path.name, pixels, path, (truth or {}).get(path)))
        if progress is not None and (i % 16 == 15 or i + 1 == total):
            progress(i + 1, total)
    return DecodeResult(examples, skipped)


def convert_pixels(pixels: Tensor, prep: Preprocessing) -> Tensor:
    """uint8 [C, H, W] -> uint8 [prep.channels, size, size] (bilinear resize, grey <-> RGB)."""
    x = pixels.to(torch.float32)
    if x.shape[0] != prep.channels:
        x = x.mean(0, keepdim=True) if prep.channels == 1 else x.expand(3, -1, -1)
    if tuple(x.shape[1:]) != (prep.image_size, prep.image_size):
        x = F.interpolate(x.unsqueeze(0), size=(prep.image_size, prep.image_size), mode="bilinear",
                          antialias=True, align_corners=False)[0]
    return x.round().clamp(0, 255).to(torch.uint8)


def reprocess(example: Example, prep: Preprocessing) -> Example:
    """The example at another model's preprocessing: decoded again from its file, else converted."""
    if example.source is not None:
        try:
            return replace(example, pixels=prep.decode(example.source))
        except ImageDecodeError:
            pass
    return replace(example, pixels=convert_pixels(example.pixels, prep))


def conform(examples: Iterable[Example], prep: Preprocessing) -> tuple[Example, ...]:
    """The examples with every image at ``prep``'s size and channels (those already there unchanged)."""
    shape = (prep.channels, prep.image_size, prep.image_size)
    return tuple(e if tuple(e.pixels.shape) == shape else reprocess(e, prep) for e in examples)


# -- messages ----------------------------------------------------------------------------------------
@dataclass
class DropOutcome:
    """What a drop did: images added, files skipped (with reasons), duplicates (name, where it already is)."""

    added: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    elsewhere: list[tuple[str, str]] = field(default_factory=list)
    replaced_folder: bool = False   # test drops: the dropped folders replaced the table

    def message(self, where: str) -> tuple[str, str]:
        """(text, level) of :func:`drop_message`; ``where`` names the target ("this class", "the test zone")."""
        return drop_message(self.added, self.skipped, self.duplicates, self.elsewhere, where)


def drop_message(n_added: int, skipped: list[SkippedFile], duplicates: list[tuple[str, str]],
                 elsewhere: list[tuple[str, str]], where: str) -> tuple[str, str]:
    """One message about a drop: what was added, and every problem with examples of file names."""
    parts = []
    if n_added:
        parts.append(f"Added {n_added} image{'s' if n_added != 1 else ''}.")
    if duplicates:
        parts.append(f"Already in {where}: {_names([d[0] for d in duplicates])}.")
    if elsewhere:
        parts.append("Already in another class: " +
                     ", ".join(f"{n} ({c})" for n, c in elsewhere[:MAX_LISTED_PROBLEMS]) +
                     (f" and {len(elsewhere) - MAX_LISTED_PROBLEMS} more" if len(elsewhere) > MAX_LISTED_PROBLEMS
                      else "") + ".")
    if skipped:
        shown = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:MAX_LISTED_PROBLEMS])
        more = f"; and {len(skipped) - MAX_LISTED_PROBLEMS} more" if len(skipped) > MAX_LISTED_PROBLEMS else ""
        parts.append(f"Skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} ({shown}{more}).")
    if not parts:
        return "", "info"
    level = "ok" if not (skipped or duplicates or elsewhere) else ("warning" if n_added else "error")
    return " ".join(parts), level


def remote_message(urls: Sequence[str]) -> str:
    """Why dropped URLs (not local files) were refused."""
    return (f"Only local files can be dropped; {urls[0]}" + (f" and {len(urls) - 1} more" if len(urls) > 1 else "")
            + " is not a local file. Save it to disk first.")


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED_PROBLEMS])
    return shown + (f" and {len(names) - MAX_LISTED_PROBLEMS} more" if len(names) > MAX_LISTED_PROBLEMS else "")
