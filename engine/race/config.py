"""What a race is: the shared sections of a run config plus the 2 to 6 algorithms that race.

The shared sections are the :class:`~engine.config.RunConfig` sections other than ``algorithm``
(data, task, model, train: :data:`SHARED_SECTIONS`, read off RunConfig's own fields). Each
racer's config is a RunConfig of those sections and its algorithm section
(:meth:`RaceConfig.run_config`), and race.json stores the sections as RunConfig serialises them.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

from engine.config import (ALGORITHM_CONFIGS, AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TaskConfig,
                           TrainConfig, check_field, config_section, describe_fields, param, validate)
from engine.errors import ConfigError

MIN_ALGORITHMS, MAX_ALGORITHMS = 2, 6
SHARED_SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig)
                                         if f.name not in ("algorithm", "name"))
"""The RunConfig sections every racer shares (RunConfig's fields but its algorithm and name)."""
SECTION_TYPES: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(RunConfig)  # type: ignore[misc]
                                  if f.name in SHARED_SECTIONS}
"""Each shared section's config dataclass, as RunConfig declares it."""
RACE_FIELDS = ("test_episodes", "test_seed")


@dataclass
class RaceConfig:
    """The shared run settings (data, task, model, train) plus the 2 to 6 algorithms that race."""

    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    algorithms: list[AlgorithmConfig] = field(default_factory=list)
    test_episodes: int = param(600, "Seeded test episodes every algorithm is evaluated on at the end (the same "
                               "episodes for each).", min=1, max=100_000)
    test_seed: int = param(0, "Seed of the test episodes.", min=0)
    name: str = ""

    @classmethod
    def from_run_config(cls, config: RunConfig, algorithms: Sequence[str | AlgorithmConfig], *,
                        test_episodes: int = 600, test_seed: int = 0, name: str = "") -> "RaceConfig":
        """A race of ``algorithms`` (names take their registry defaults) with ``config``'s shared sections."""
        return cls(**shared_sections(config), algorithms=algorithm_configs(algorithms),
                   test_episodes=test_episodes, test_seed=test_seed, name=name)

    @property
    def algorithm_names(self) -> list[str]:
        return [a.name for a in self.algorithms]

    @property
    def display_name(self) -> str:
        return self.name or default_race_name(self.algorithm_names)

    def run_config(self, algorithm: AlgorithmConfig) -> RunConfig:
        """The RunConfig of one racer: the shared sections (copied) and its algorithm section, named
        :func:`racer_run_name`."""
        return RunConfig(**shared_sections(self), algorithm=copy.deepcopy(algorithm),
                         name=racer_run_name(self.display_name, algorithm.name))

    def validate(self) -> "RaceConfig":
        """Check the algorithm list and every racer's config; ConfigError naming the field."""
        _check_algorithm_list(self.algorithms)
        for spec in describe_fields(RaceConfig, "race"):
            if spec.name in RACE_FIELDS:
                message = check_field(spec, getattr(self, spec.name))
                if message:
                    raise ConfigError(message)
        for i, algorithm in enumerate(self.algorithms):
            try:
                validate(self.run_config(algorithm))
            except ConfigError as error:
                raise ConfigError(f"algorithms[{i}] ({algorithm.name}): {error}") from None
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the shared sections and each algorithm section as RunConfig.to_dict writes them."""
        shared = RunConfig(**shared_sections(self), name=self.name).to_dict()
        del shared["algorithm"]
        return {**shared, "algorithms": [self.run_config(a).to_dict()["algorithm"] for a in self.algorithms],
                **{key: getattr(self, key) for key in RACE_FIELDS}}

    @classmethod
    def from_dict(cls, raw: Any) -> "RaceConfig":
        """Build and validate a race config from a dict (parsed JSON); unknown keys are errors."""
        if not isinstance(raw, dict):
            raise ConfigError("race config must be a JSON object")
        unknown = set(raw) - {"name", *SHARED_SECTIONS, "algorithms", *RACE_FIELDS}
        if unknown:
            raise ConfigError(f"unknown race config section(s): {', '.join(sorted(unknown))}")
        algorithms_raw = raw.get("algorithms", [])
        if not isinstance(algorithms_raw, list):
            raise ConfigError("algorithms: expected a list of algorithm objects")
        config = cls(
            name=str(raw.get("name", "")),
            **{name: config_section(kind, raw.get(name), name) for name, kind in SECTION_TYPES.items()},
            algorithms=[_algorithm_from_dict(item, i) for i, item in enumerate(algorithms_raw)],
            test_episodes=_whole_number(raw.get("test_episodes", 600), "test_episodes"),
            test_seed=_whole_number(raw.get("test_seed", 0), "test_seed"),
        )
        return config.validate()


def shared_sections(config: RunConfig | RaceConfig) -> dict[str, Any]:
    """Deep copies of the shared sections of a run or race config, by section name."""
    return {name: copy.deepcopy(getattr(config, name)) for name in SHARED_SECTIONS}


def default_race_name(algorithms: Sequence[str]) -> str:
    """The name of a race that was not given one: its algorithms' short titles, "ProtoNet vs MAML"."""
    from engine.algorithms.registry import display_title

    return " vs ".join(display_title(name) for name in algorithms)


def race_name(stored: str, algorithms: Sequence[str]) -> str:
    """A saved race's name as race.json stores it, with the default of older versions ("race protonet vs
    maml") read as today's default; "" (no name) is the default too."""
    if not stored or stored == "race " + " vs ".join(algorithms):
        return default_race_name(algorithms)
    return stored


def racer_run_name(race_name: str, algorithm: str) -> str:
    """The run name of one racer: "<race name>: <algorithm's short title>" ("ProtoNet vs MAML: MAML")."""
    from engine.algorithms.registry import display_title

    return f"{race_name}: {display_title(algorithm)}"


def _check_algorithm_list(algorithms: Sequence[Any]) -> None:
    """2 to 6 known algorithms, each once; ConfigError naming the entry."""
    n = len(algorithms)
    if not MIN_ALGORITHMS <= n <= MAX_ALGORITHMS:
        raise ConfigError(f"algorithms: a race needs {MIN_ALGORITHMS} to {MAX_ALGORITHMS} algorithms (got {n})")
    seen: set[str] = set()
    for i, algorithm in enumerate(algorithms):
        if not isinstance(algorithm, AlgorithmConfig) or algorithm.name not in ALGORITHM_CONFIGS:
            raise _unknown_algorithm(i, getattr(algorithm, "name", algorithm))
        if algorithm.name in seen:
            raise ConfigError(f"algorithms[{i}].name: {algorithm.name!r} is in the race twice (each algorithm "
                              "races once)")
        seen.add(algorithm.name)


def _unknown_algorithm(index: int, name: Any) -> ConfigError:
    return ConfigError(f"algorithms[{index}].name: unknown algorithm {name!r}; choose one of "
                       f"{', '.join(ALGORITHM_CONFIGS)}")


def _algorithm_from_dict(raw: Any, index: int) -> AlgorithmConfig:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"algorithms[{index}]: expected an object with a name")
    values = dict(raw)
    name = values.pop("name", None)
    if name not in ALGORITHM_CONFIGS:
        raise _unknown_algorithm(index, name)
    return config_section(ALGORITHM_CONFIGS[name], values, f"algorithms[{index}]")


def _whole_number(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}: expected int, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{key}: expected int, got {value!r}") from None
    if not number.is_integer():
        raise ConfigError(f"{key}: expected int, got {value!r}")
    return int(number)


def algorithm_configs(names: Sequence[str | AlgorithmConfig]) -> list[AlgorithmConfig]:
    """Registry-default configs for algorithm names (configs are kept); ConfigError naming an unknown one."""
    configs = []
    for i, item in enumerate(names):
        if isinstance(item, AlgorithmConfig):
            configs.append(item)
            continue
        name = str(item).strip()
        if name not in ALGORITHM_CONFIGS:
            raise _unknown_algorithm(i, name)
        configs.append(ALGORITHM_CONFIGS[name]())
    return configs


def batch_kind(algorithm: str) -> str:
    """"episodes" or "classes" (pre-training baselines) for an algorithm name (the class declares it)."""
    from engine.algorithms.registry import algorithm_class

    return algorithm_class(algorithm).batch_kind
