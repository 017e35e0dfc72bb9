"""``meta-engine datasets inspect DIR``: what a dataset folder holds and what is wrong with it.

Every image is decoded (at a small size, without keeping the pixels) so that
corrupt files are reported along with the files the folder scan rejected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from engine.data.dataset import resolve_root
from engine.data.folder import scan_folder
from engine.data.preprocess import Preprocessing
from engine.data.store import load_store

_CHECK_SIZE = 16  # pixels per side when decoding only to validate


def inspect_folder(root: str | Path, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """JSON-ready report: root, layout, n_classes, n_images, groups, classes, skipped."""
    index = scan_folder(resolve_root(str(root)))
    store = load_store(index, Preprocessing(image_size=_CHECK_SIZE, channels=1), budget_mb=0, progress=progress)
    counts = store.class_counts()
    classes = [{"name": name, "group": group, "n_images": count}
               for name, group, count in zip(store.class_names, store.class_groups, counts)]
    return {
        "root": str(index.root),
        "layout": index.layout,
        "n_classes": len(classes),
        "n_images": len(store),
        "groups": _group_summary(classes),
        "classes": classes,
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in store.skipped],
    }


def _group_summary(classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for entry in classes:
        if entry["group"] is None:
            continue
        group = groups.setdefault(entry["group"], {"name": entry["group"], "n_classes": 0, "n_images": 0})
        group["n_classes"] += 1
        group["n_images"] += entry["n_images"]
    return list(groups.values())


def format_inspection(report: dict[str, Any], max_classes: int = 20) -> str:
    """A terminal-friendly summary of :func:`inspect_folder`'s report."""
    lines = [f"Dataset: {report['root']}",
             f"Layout:  {report['layout']}",
             f"Classes: {report['n_classes']}    Images: {report['n_images']}"]
    counts = [c["n_images"] for c in report["classes"]]
    if counts:
        lines.append(f"Images per class: min {min(counts)}, max {max(counts)}, "
                     f"mean {sum(counts) / len(counts):.1f}")
    if report["groups"]:
        lines.append(f"Groups ({len(report['groups'])}):")
        width = max(len(g["name"]) for g in report["groups"])
        lines += [f"  {g['name']:<{width}}  {g['n_classes']:>5} classes  {g['n_images']:>7} images"
                  for g in report["groups"]]
    lines.append(f"Classes ({report['n_classes']}):")
    shown = report["classes"][:max_classes]
    width = max((len(c["name"]) for c in shown), default=0)
    lines += [f"  {c['name']:<{width}}  {c['n_images']:>7} images" for c in shown]
    if len(report["classes"]) > max_classes:
        lines.append(f"  ... and {len(report['classes']) - max_classes} more")
    lines.append(f"Skipped ({len(report['skipped'])}):" if report["skipped"] else "Skipped: none")
    lines += [f"  {s['path']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines)
