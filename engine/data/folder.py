"""Discover the classes of a dataset folder, without decoding any image.

Two layouts are understood:

* flat:   ``root/<class>/<image>``              class name ``"<class>"``
* nested: ``root/<group>/<class>/<image>``      class name ``"<group>/<class>"``
  (Omniglot: group = alphabet, class = character)

Everything is sorted by name so that a folder always gives the same index.
Entries that cannot be used (non-image files, empty or unreadable files, broken
symlinks, symlink loops, folders at the wrong depth) are listed in
``FolderIndex.skipped`` with a reason; the good files around them are kept.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import DatasetError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}

# Names that tools leave behind in dataset folders; never reported.
_IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder that was left out, and why."""

    path: Path
    reason: str


@dataclass
class ClassEntry:
    """One class: its unique name ("group/class" or "class"), its group and its image files."""

    name: str
    group: str | None
    files: list[Path]


@dataclass
class FolderIndex:
    """The classes found in a dataset folder (no pixels decoded yet)."""

    root: Path
    layout: str  # "flat" | "nested"
    classes: list[ClassEntry]
    skipped: list[SkippedFile] = field(default_factory=list)

    def class_names(self) -> list[str]:
        return [entry.name for entry in self.classes]

    def groups(self) -> list[str]:
        """Distinct group names in order of first appearance (empty for a flat folder)."""
        seen: dict[str, None] = {}
        for entry in self.classes:
            if entry.group is not None:
                seen.setdefault(entry.group, None)
        return list(seen)

    @property
    def n_images(self) -> int:
        return sum(len(entry.files) for entry in self.classes)


@dataclass
class _Listing:
    """What one folder holds: usable image files, sub-folders, and rejected entries."""

    path: Path
    images: list[Path] = field(default_factory=list)
    subdirs: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def scan_folder(root: str | Path) -> FolderIndex:
    """Index the classes of a dataset folder; raise DatasetError naming ``root`` when unusable."""
    root = Path(root).expanduser()
    _check_root(root)
    visited = {os.path.realpath(root)}
    top = _list_dir(root, visited)
    if top is None:
        raise DatasetError(f"{root}: dataset folder cannot be read (permission denied?)")
    if not top.images and not top.subdirs and not top.skipped:
        raise DatasetError(f"{root}: dataset folder is empty")
    # Non-image files next to the class folders are metadata (README, LICENSE, manifests): not reported.
    skipped = [SkippedFile(p, "image file outside a class folder") for p in top.images]
    skipped += [s for s in top.skipped if s.path.suffix.lower() in IMAGE_EXTENSIONS or s.path.is_dir()]
    groups = [(path, _list_dir(path, visited)) for path in top.subdirs]
    skipped += [SkippedFile(path, "folder cannot be read (permission denied?)")
                for path, listing in groups if listing is None]
    listings = [listing for _, listing in groups if listing is not None]
    children = {listing.path: _list_children(listing, visited) for listing in listings}
    if _looks_nested(listings, children):
        classes, more = _nested_classes(root, listings, children)
        layout = "nested"
    else:
        classes, more = _flat_classes(listings)
        layout = "flat"
    skipped += more
    if not classes:
        raise DatasetError(f"{root}: no image classes found (expected {root}/<class>/<images> or "
                           f"{root}/<group>/<class>/<images> with {', '.join(sorted(IMAGE_EXTENSIONS))} files)")
    return FolderIndex(root=root, layout=layout, classes=classes, skipped=skipped)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset path is not a folder")


def _list_children(listing: _Listing, visited: set[str]) -> list[_Listing | SkippedFile]:
    """List each sub-folder of ``listing`` (or say why it cannot be listed)."""
    out: list[_Listing | SkippedFile] = []
    for path in listing.subdirs:
        child = _list_dir(path, visited)
        out.append(child if child is not None else SkippedFile(path, "folder cannot be read (permission denied?)"))
    return out


def _looks_nested(listings: list[_Listing], children: dict[Path, list[_Listing | SkippedFile]]) -> bool:
    """Nested when more top-level folders hold class sub-folders with images than hold images directly."""
    n_flat = sum(1 for listing in listings if listing.images)
    n_nested = sum(1 for listing in listings
                   if any(isinstance(c, _Listing) and c.images for c in children[listing.path]))
    return n_nested > n_flat


def _flat_classes(listings: list[_Listing]) -> tuple[list[ClassEntry], list[SkippedFile]]:
    classes: list[ClassEntry] = []
    skipped: list[SkippedFile] = []
    for listing in listings:
        skipped += listing.skipped
        skipped += [SkippedFile(p, "folder inside a class folder is ignored (flat layout)") for p in listing.subdirs]
        if listing.images:
            classes.append(ClassEntry(listing.path.name, None, listing.images))
        else:
            skipped.append(SkippedFile(listing.path, "class folder has no image files"))
    return classes, skipped


def _nested_classes(root: Path, listings: list[_Listing],
                    children: dict[Path, list[_Listing | SkippedFile]]) -> tuple[list[ClassEntry], list[SkippedFile]]:
    classes: list[ClassEntry] = []
    skipped: list[SkippedFile] = []
    for group in listings:
        group_name = group.path.name
        skipped += group.skipped
        skipped += [SkippedFile(p, "image directly inside a group folder is ignored (nested layout)")
                    for p in group.images]
        n_before = len(classes)
        for child in children[group.path]:
            if isinstance(child, SkippedFile):
                skipped.append(child)
                continue
            skipped += child.skipped
            skipped += [SkippedFile(p, "folder nested too deep is ignored") for p in child.subdirs]
            if child.images:
                classes.append(ClassEntry(f"{group_name}/{child.path.name}", group_name, child.images))
            else:
                skipped.append(SkippedFile(child.path, "class folder has no image files"))
        if len(classes) == n_before and not group.images:
            skipped.append(SkippedFile(group.path, "group folder has no class folders with images"))
    return classes, skipped


def _list_dir(path: Path, visited: set[str]) -> _Listing | None:
    """Sorted listing of one folder; None when the folder itself cannot be read."""
    listing = _Listing(path)
    try:
        with os.scandir(path) as iterator:
            entries = sorted(iterator, key=lambda e: e.name)
    except OSError:
        return None
    for entry in entries:
        if entry.name.startswith(".") or entry.name in _IGNORED_NAMES:
            continue
        _classify_entry(entry, Path(path) / entry.name, listing, visited)
    return listing


def _classify_entry(entry: os.DirEntry, path: Path, listing: _Listing, visited: set[str]) -> None:
    try:
        is_dir = entry.is_dir()
        is_file = not is_dir and entry.is_file()
    except OSError as error:
        listing.skipped.append(SkippedFile(path, _os_reason(error)))
        return
    if is_dir:
        real = os.path.realpath(path)
        if real in visited:
            listing.skipped.append(SkippedFile(path, f"symlink loop or duplicate folder (points to {real})"))
            return
        visited.add(real)
        listing.subdirs.append(path)
    elif is_file:
        reason = _file_problem(entry, path)
        if reason:
            listing.skipped.append(SkippedFile(path, reason))
        else:
            listing.images.append(path)
    elif entry.is_symlink():
        listing.skipped.append(SkippedFile(path, "broken symlink"))
    else:
        listing.skipped.append(SkippedFile(path, "not a regular file"))


def _file_problem(entry: os.DirEntry, path: Path) -> str | None:
    """Why a file cannot be an image (by extension, size, permissions), or None."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return f"not an image file (extension {suffix!r})" if suffix else "not an image file (no extension)"
    try:
        size = entry.stat().st_size
    except OSError as error:
        return _os_reason(error)
    if size == 0:
        return "empty file (0 bytes)"
    if not os.access(path, os.R_OK):
        return "file is not readable (permission denied)"
    return None


def _os_reason(error: OSError) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    if error.errno == errno.ELOOP:
        return "symlink loop"
    return error.strerror or type(error).__name__
