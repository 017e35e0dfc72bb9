"""What a leaderboard is: the common settings every algorithm trains with, the algorithms, and the seeded
test episodes (5-way 1-shot and 5-way 5-shot by default) every algorithm is evaluated on.

Each algorithm trains with its recipe (:attr:`engine.algorithms.base.Algorithm.recipe`, dotted config
overrides declared next to the algorithm) applied on top of the common settings
(:func:`recipe_config`). Recipes may not change how the data is split or decoded
(:data:`SHARED_DATA_FIELDS`): every algorithm must be tested on the same classes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Sequence

from engine.algorithms.registry import ALGORITHMS, algorithm_class
from engine.config import RunConfig
from engine.errors import ConfigError

DEFAULT_SHOTS = (1, 5)
SHARED_DATA_FIELDS = ("root", "image_size", "channels", "split_mode", "train_ratio", "val_ratio", "val_groups",
                      "test_groups", "split_seed")
"""The data fields that decide the test classes and images: the same for every algorithm, never in a recipe."""


@dataclass
class LeaderboardSpec:
    """The common settings (``base``; its algorithm section is not used), the algorithms and the test episodes.

    test_root: another data set folder to test on (its classes unseen in training, e.g. Omniglot's small2
    alphabets after training on small1); "" tests on the training data set's own test classes.
    """

    base: RunConfig
    algorithms: list[str]
    test_root: str = ""
    episodes: int = 600
    seed: int = 0
    n_way: int = 5
    shots: tuple[int, ...] = DEFAULT_SHOTS
    n_query: int = 15
    name: str = ""

    def validate(self) -> "LeaderboardSpec":
        """ConfigError naming the option for bad numbers, unknown algorithms, and recipes that do not apply."""
        for option, value, low in (("--episodes", self.episodes, 1), ("--n-way", self.n_way, 2),
                                   ("--n-query", self.n_query, 1), ("--seed", self.seed, 0)):
            if value < low:
                raise ConfigError(f"{option} must be at least {low} (got {value})")
        if not self.shots or min(self.shots) < 1:
            raise ConfigError(f"--shots: each shot must be at least 1 (got {', '.join(map(str, self.shots))})")
        if not self.algorithms:
            raise ConfigError("--algorithms: name at least one algorithm, or 'all'")
        for name in self.algorithms:
            algorithm_class(name)
        return self

    @property
    def display_name(self) -> str:
        return self.name or f"Leaderboard {self.base.train.steps} steps"

    def settings(self) -> dict[str, Any]:
        """What makes two leaderboards' rows comparable (a resumed leaderboard keeps rows only if equal)."""
        common = self.base.to_dict()
        common.pop("algorithm", None)
        common.pop("name", None)
        return {"common": common, "test_root": self.test_root, "episodes": self.episodes, "seed": self.seed,
                "n_way": self.n_way, "shots": list(self.shots), "n_query": self.n_query}


def parse_algorithms(text: str) -> list[str]:
    """``"all"`` (every registered algorithm, in the registry's order) or a comma-separated list."""
    if text.strip().lower() == "all":
        return list(ALGORITHMS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"--algorithms: {', '.join(duplicates)} named twice")
    return names


def recipe_of(name: str) -> dict[str, Any]:
    """The recommended recipe of the registered algorithm ``name`` (a copy)."""
    return copy.deepcopy(dict(algorithm_class(name).recipe))


def recipe_config(spec: LeaderboardSpec, name: str, run_name: str = "") -> RunConfig:
    """The RunConfig that trains ``name`` in the leaderboard: the common settings, the algorithm's defaults,
    then its recipe's dotted overrides. ConfigError naming the algorithm's recipe and the key."""
    raw = spec.base.to_dict()
    raw["algorithm"] = {"name": name}
    raw["name"] = run_name
    where = f"{algorithm_class(name).__name__}.recipe"
    for key, value in recipe_of(name).items():
        section, _, field_name = str(key).partition(".")
        if not field_name or section not in raw or section == "name" or (section == "algorithm" and
                                                                          field_name == "name"):
            raise ConfigError(f"{where}: {key!r} is not a dotted config field (e.g. 'algorithm.lr')")
        if section == "data" and field_name in SHARED_DATA_FIELDS:
            raise ConfigError(f"{where}: {key!r} changes the test data; it must be the same for every algorithm")
        raw[section][field_name] = value
    try:
        return RunConfig.from_dict(raw)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def shots_label(shots: Sequence[int]) -> str:
    return " and ".join(f"{shot}-shot" for shot in shots)


@dataclass
class TestEpisodes:
    """One evaluation setting: ``episodes`` seeded N-way K-shot episodes, the same for every algorithm."""

    n_way: int
    n_shot: int
    n_query: int
    episodes: int
    seed: int
    class_ids: list[int] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.n_way}-way {self.n_shot}-shot"
