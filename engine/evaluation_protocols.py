"""Evaluation protocols beyond random episodes: Lake et al. 2015's within-alphabet one-shot test.

Within-alphabet (Lake, Salakhutdinov & Tenenbaum, Science 2015, the one-shot classification
task): every episode takes its classes from ONE group (alphabet) of a nested data set, 20
characters, one drawing of each as support and another drawing of each as query. The alphabet
of each episode is drawn uniformly among those with enough characters, all from one seed, so a
run is repeatable. The figure reported is the error rate (1 - accuracy) with its 95% CI.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import torch

from engine.algorithms.base import Algorithm
from engine.data.dataset import FewShotData
from engine.data.folder import scan_folder
from engine.data.sampler import EpisodeSampler
from engine.data.types import Task
from engine.config import EVALUATION_PROTOCOLS
from engine.errors import ConfigError, DatasetError
from engine.evaluation import EvaluationResult, ProgressFn, evaluate

PROTOCOLS = EVALUATION_PROTOCOLS
WITHIN_ALPHABET_WAY, WITHIN_ALPHABET_SHOT, WITHIN_ALPHABET_QUERY = 20, 1, 1
"""Lake et al. 2015: 20-way, 1 drawing per class as support, 1 other drawing of each as query."""


class WithinGroupSampler:
    """Seeded episodes whose classes all come from one group; the group is drawn per episode."""

    def __init__(self, data: FewShotData, class_ids: Sequence[int], n_way: int, n_shot: int, n_query: int,
                 seed: int) -> None:
        need = n_shot + n_query
        by_class = data.store.indices_by_class()
        groups = classes_by_group(data, class_ids)
        eligible = {g: ids for g, ids in groups.items()
                    if sum(1 for c in ids if len(by_class[c]) >= need) >= n_way}
        if not eligible:
            largest = max((sum(1 for c in ids if len(by_class[c]) >= need) for ids in groups.values()), default=0)
            raise ConfigError(f"--n-way {n_way}: the within-alphabet protocol needs an alphabet with {n_way} "
                              f"characters of at least {need} drawings each; the largest of the "
                              f"{len(groups)} chosen alphabet(s) in {data.index.root} has {largest}")
        self.group_names = sorted(eligible)
        self.skipped_groups = sorted(set(groups) - set(eligible))
        self._samplers = [EpisodeSampler(data.store, eligible[g], data.preprocessing, n_way, n_shot, n_query,
                                         seed=seed * 10_007 + k + 1, part=g)
                          for k, g in enumerate(self.group_names)]
        self.generator = torch.Generator().manual_seed(int(seed))

    def sample(self) -> Task:
        """One episode of a group drawn uniformly (from the sampler's own seeded generator)."""
        pick = int(torch.randint(len(self._samplers), (1,), generator=self.generator))
        return self._samplers[pick].sample()


def classes_by_group(data: FewShotData, class_ids: Sequence[int]) -> dict[str, list[int]]:
    """Group name -> its class ids among ``class_ids``; ConfigError for a flat data set (no groups)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for cid in class_ids:
        group = data.store.class_groups[int(cid)]
        if group is None:
            raise ConfigError(f"the within-alphabet protocol needs a nested data set "
                              f"(<root>/<alphabet>/<character>/<image>); {data.index.root} is flat")
        groups[group].append(int(cid))
    return dict(groups)


def evaluate_within_alphabet(algorithm: Algorithm, data: FewShotData, class_ids: Sequence[int], *,
                             episodes: int = 1000, n_way: int = WITHIN_ALPHABET_WAY,
                             n_shot: int = WITHIN_ALPHABET_SHOT, n_query: int = WITHIN_ALPHABET_QUERY,
                             seed: int = 0, progress: ProgressFn | None = None) -> EvaluationResult:
    """Accuracy (and 95% CI) over ``episodes`` within-alphabet episodes of ``class_ids``."""
    sampler = WithinGroupSampler(data, class_ids, n_way, n_shot, n_query, seed)
    return evaluate(algorithm, data, episodes=episodes, n_way=n_way, n_shot=n_shot, n_query=n_query, seed=seed,
                    progress=progress, class_ids=class_ids, sampler=sampler)


def folder_groups(root: str | Path) -> set[str]:
    """The group (alphabet) names of a nested data set folder; DatasetError naming a flat one."""
    index = scan_folder(Path(root).expanduser())
    if index.layout != "nested":
        raise DatasetError(f"{root}: excluding its alphabets needs a nested data set folder "
                           f"(<root>/<alphabet>/<character>/<image>); this one is {index.layout}")
    return set(index.groups())
