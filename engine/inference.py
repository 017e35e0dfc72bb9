"""Checkpoint-level operations shared by the CLI and the studio: evaluate and predict on files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from engine.data.dataset import FewShotData, load_data, other_folder
from engine.data.folder import IMAGE_EXTENSIONS, scan_folder
from engine.errors import ConfigError, DatasetError
from engine.evaluation import EvaluationResult, evaluate, inference_backbone
from engine.evaluation_protocols import PROTOCOLS, evaluate_within_alphabet
from engine.training.checkpoint import load_algorithm


def evaluate_checkpoint(path: Path, *, dataset: str | None = None, episodes: int = 600, n_way: int = 5,
                        n_shot: int = 1, n_query: int = 15, seed: int = 0, device: str = "cpu",
                        classes: str = "auto", groups: str | None = None, progress=None,
                        protocol: str = "episodes",
                        exclude_groups: Sequence[str] = ()) -> tuple[EvaluationResult, str]:
    """Evaluate a checkpoint; returns the result and a description of the classes used.

    protocol: "episodes" (random N-way episodes) or "within-alphabet" (engine.evaluation_protocols);
    exclude_groups: groups (alphabets) whose classes are left out of the evaluation.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol: unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    for name, value, low in (("--episodes", episodes, 1), ("--n-way", n_way, 2), ("--n-shot", n_shot, 1),
                             ("--n-query", n_query, 1)):
        if value < low:
            raise ConfigError(f"{name} must be at least {low} (got {value})")
    algorithm, checkpoint = load_algorithm(path, device=device)
    own = dataset is None or dataset == checkpoint.config.data.root
    data_cfg, split = (checkpoint.config.data, checkpoint.split) if own else \
        other_folder(checkpoint.config.data, dataset)
    data = load_data(data_cfg, split=split)
    class_ids, scope = evaluation_classes(data, checkpoint.split.train, classes, groups, own)
    if exclude_groups:
        class_ids = [c for c in class_ids if data.store.class_groups[c] not in set(exclude_groups)]
        scope += f", without the {len(set(exclude_groups))} excluded group(s): {len(class_ids)} classes"
    if len(class_ids) < n_way:
        raise ConfigError(f"--n-way {n_way}: only {len(class_ids)} classes available in {scope}")
    if protocol == "within-alphabet":
        result = evaluate_within_alphabet(algorithm, data, class_ids, episodes=episodes, n_way=n_way,
                                          n_shot=n_shot, n_query=n_query, seed=seed, progress=progress)
        return result, f"{scope}, within one alphabet per episode"
    result = evaluate(algorithm, data, episodes=episodes, n_way=n_way, n_shot=n_shot, n_query=n_query,
                      seed=seed, progress=progress, class_ids=class_ids)
    return result, scope


def evaluation_classes(data: FewShotData, train_classes: Sequence[str], mode: str, groups: str | None,
                        own: bool) -> tuple[list[int], str]:
    """(class ids of ``data`` to evaluate on, a phrase naming them) for ``evaluate`` and the Episodes view.

    groups: comma-separated group names (wins over ``mode``). mode: "test" (the run's test
    classes; needs ``own``, the checkpoint's own data set), "all", "novel" (classes, and
    groups, not seen in training) or "auto" (test on the own data set, else novel).
    Raises ConfigError for unknown groups or "test" on another data set.
    """
    names = data.store.class_names
    class_groups = data.store.class_groups
    if groups:
        wanted = [g.strip() for g in groups.split(",") if g.strip()]
        unknown = sorted(set(wanted) - set(g for g in class_groups if g))
        if unknown:
            raise ConfigError(f"--groups: unknown group(s) {', '.join(unknown)}")
        return [i for i, g in enumerate(class_groups) if g in wanted], f"groups {', '.join(wanted)}"
    if mode == "auto":
        mode = "test" if own else "novel"
    if mode == "test":
        if not own:
            raise ConfigError("--classes test needs the checkpoint's own data set (omit --dataset)")
        return data.class_ids("test"), "the run's test classes"
    if mode == "all":
        return list(range(len(names))), "all classes"
    seen_groups = {name.split("/", 1)[0] for name in train_classes if "/" in name}
    seen = set(train_classes)
    ids = [i for i, (n, g) in enumerate(zip(names, class_groups))
           if n not in seen and (g is None or g not in seen_groups)]
    return ids, f"{len(ids)} classes unseen in training"


def predict_folders(checkpoint: Path, support_dir: Path | None, queries: Sequence[Path], *, device: str = "cpu",
                    steps: int | None = None) -> dict[str, Any]:
    """Adapt to ``support_dir`` (one sub-folder per class) and classify the query files/folders.

    ``checkpoint`` may also be a saved adapted classifier (engine.adapted): then its own
    classes and fitted state are used and ``support_dir`` is ignored (may be None).
    """
    from engine.adapted import is_adapted_file, load_adapted

    if is_adapted_file(checkpoint):
        adapted = load_adapted(checkpoint, device=device)
        files, truth = _query_files(queries, adapted.class_names)
        probs, good, bad = adapted.predict_files(files)
        skipped = [dict(path=str(s.path), reason=s.reason) for s in bad]
        return _prediction_report(adapted.class_names, good, probs, truth, skipped)
    algorithm, ckpt = load_algorithm(checkpoint, device=device)
    if support_dir is None:
        raise ConfigError(f"--support is required with the training checkpoint {checkpoint} (only a saved "
                          "adapted classifier brings its own classes)")
    prep = ckpt.preprocessing
    index = scan_folder(support_dir)
    if index.layout != "flat":
        raise DatasetError(f"{support_dir}: the support folder must hold one sub-folder of images per class")
    support_x, support_y, class_names, skipped = [], [], [], [dict(path=str(s.path), reason=s.reason)
                                                            for s in index.skipped]
    for label, entry in enumerate(index.classes):
        images, _, bad = prep.load_many(entry.files)
        skipped += [dict(path=str(s.path), reason=s.reason) for s in bad]
        if len(images) == 0:
            raise DatasetError(f"{support_dir / entry.name}: no readable images for class {entry.name!r}")
        support_x.append(images)
        support_y += [label] * len(images)
        class_names.append(entry.name)
    if len(class_names) < 2:
        raise DatasetError(f"{support_dir}: need at least 2 class folders, found {len(class_names)}")
    dev = algorithm.device
    files, truth = _query_files(queries, class_names)
    images, good, bad = prep.load_many(files)
    skipped += [dict(path=str(s.path), reason=s.reason) for s in bad]
    with inference_backbone(algorithm):  # as evaluate embeds
        predictor = algorithm.adapt(torch.cat(support_x).to(dev), torch.tensor(support_y, device=dev), steps=steps)
        probs = predictor.predict(images.to(dev)).cpu() if len(good) else torch.empty(0, len(class_names))
    return _prediction_report(class_names, good, probs, truth, skipped)


def _query_files(queries: Sequence[Path], class_names: list[str]) -> tuple[list[Path], dict[Path, str]]:
    files: list[Path] = []
    truth: dict[Path, str] = {}
    for query in queries:
        if query.is_dir():
            for path in sorted(p for p in query.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
                files.append(path)
                parent = path.parent.name
                if path.parent != query and parent in class_names:
                    truth[path] = parent
        elif query.is_file():
            files.append(query)
        else:
            raise DatasetError(f"{query}: query file or folder not found")
    if not files:
        raise DatasetError(f"no query images found in {', '.join(map(str, queries))}")
    return files, truth


def _prediction_report(class_names: list[str], files: list[Path], probs: torch.Tensor,
                       truth: dict[Path, str], skipped: list[dict]) -> dict[str, Any]:
    rows = []
    correct = 0
    for path, row in zip(files, probs):
        predicted = class_names[int(row.argmax())]
        rows.append({"file": str(path), "predicted": predicted, "probabilities": [round(float(p), 6) for p in row],
                     "true": truth.get(path)})
        correct += int(truth.get(path) == predicted)
    labelled = sum(1 for path in files if path in truth)
    return {"classes": class_names, "predictions": rows, "skipped": skipped,
            "accuracy": correct / labelled if labelled else None}
