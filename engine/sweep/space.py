"""A sweep's search space, declared from the config schema (:func:`engine.config.describe_fields`).

Each searched field is named by its dotted key (``task.n_way``, ``algorithm.lr``) and gets a range
(``low``..``high``, linear or log) or a list of choices. The field's own ``param()`` bounds and
choices are the limits: a range outside them, an empty choice list, a field that does not exist or
that is neither numeric nor a choice is refused with a :class:`~engine.errors.ConfigError` naming the
field. The space turns into Optuna distributions through ``trial.suggest_*`` (Optuna samples; nothing
here searches).

Spelled on the command line as ``--param KEY=LOW:HIGH[:log]`` or ``--param KEY=A,B,C``; in a JSON
file as ``{"KEY": {"low": 1, "high": 5, "log": false}, "KEY2": {"choices": [...]}, "KEY3": [...]}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from engine.config import (ALGORITHM_CONFIGS, DataConfig, FieldSpec, ModelConfig, RunConfig, TaskConfig,
                           TrainConfig, check_field, config_section, describe_fields)
from engine.errors import ConfigError

SEARCHABLE_SECTIONS = {"data": DataConfig, "task": TaskConfig, "model": ModelConfig, "train": TrainConfig}
NOT_SEARCHED = {"train.steps", "train.device", "train.seed"}
"""Fields the sweep itself sets (``--steps``; the device and seed are the sweep's, not searched)."""


@dataclass(frozen=True)
class SearchDimension:
    """One searched field: a numeric range (``low``..``high``, ``log`` scale) or a list of ``choices``."""

    key: str
    kind: str  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}

    def describe(self) -> str:
        """``task.n_way=2:10`` / ``algorithm.lr=0.0001:0.01:log`` / ``model.backbone=conv4,resnet12``."""
        if self.kind == "choice":
            return f"{self.key}={','.join(map(str, self.choices))}"
        return f"{self.key}={self.low:g}:{self.high:g}" + (":log" if self.log else "")

    def suggest(self, trial: Any) -> Any:
        """This field's value for an Optuna trial (Optuna's sampler picks it)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """The searched fields of a sweep, in key order (so that two spellings of one space compare equal)."""

    dimensions: tuple[SearchDimension, ...]

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    def to_json(self) -> dict[str, Any]:
        return {d.key: d.to_json() for d in self.dimensions}

    def canonical(self) -> str:
        """The space as one JSON string (stored with the study; a study name is refused for another space)."""
        return json.dumps(self.to_json(), sort_keys=True)

    def describe(self) -> str:
        return " ".join(d.describe() for d in self.dimensions)

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {d.key: d.suggest(trial) for d in self.dimensions}


def field_spec(key: str, algorithm: str) -> FieldSpec:
    """The schema of the field ``key`` (``section.name``) for a run of ``algorithm``; ConfigError naming it."""
    section, _, name = key.partition(".")
    cls = section_class(section, algorithm)
    if cls is None:
        raise ConfigError(f"{key}: no such field (name it as section.field, the section one of "
                          f"{', '.join([*SEARCHABLE_SECTIONS, 'algorithm'])})")
    specs = {spec.name: spec for spec in describe_fields(cls, section)}
    if name not in specs:
        where = f" of algorithm {algorithm!r}" if section == "algorithm" else ""
        raise ConfigError(f"{key}: no such field{where}")
    if key in NOT_SEARCHED:
        raise ConfigError(f"{key}: set by the sweep itself, not searched")
    return specs[name]


def dimension_from_json(key: str, raw: Any, algorithm: str) -> SearchDimension:
    """One dimension from its JSON form (a list = choices; an object with low/high[/log] or choices)."""
    spec = field_spec(key, algorithm)
    if isinstance(raw, list):
        raw = {"choices": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a list of choices or an object with low and high, got {raw!r}")
    unknown = set(raw) - {"low", "high", "log", "choices"}
    if unknown:
        raise ConfigError(f"{key}: unknown key {sorted(unknown)[0]!r} (use low, high, log or choices)")
    if "choices" in raw:
        return _choice_dimension(spec, raw["choices"], algorithm)
    if "low" not in raw or "high" not in raw:
        raise ConfigError(f"{key}: a range needs both low and high")
    return _range_dimension(spec, raw["low"], raw["high"], bool(raw.get("log", False)))


def dimension_from_text(text: str, algorithm: str) -> SearchDimension:
    """One dimension from ``KEY=LOW:HIGH[:log]`` or ``KEY=A,B,...`` (``--param``)."""
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals:
        raise ConfigError(f"--param {text}: expected KEY=LOW:HIGH[:log] or KEY=A,B,...")
    spec = field_spec(key, algorithm)
    value = value.strip()
    if ":" in value:
        parts = value.split(":")
        log = len(parts) == 3 and parts[2].strip().lower() == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise ConfigError(f"{key}: expected LOW:HIGH or LOW:HIGH:log, got {value!r}")
        return _range_dimension(spec, _number(key, parts[0]), _number(key, parts[1]), log)
    return _choice_dimension(spec, [part.strip() for part in value.split(",") if part.strip()], algorithm)


def build_space(dimensions: Sequence[SearchDimension]) -> SearchSpace:
    """A space of ``dimensions`` (each key once, at least one)."""
    if not dimensions:
        raise ConfigError("--param: name at least one field to search (e.g. --param algorithm.lr=1e-4:1e-2:log)")
    keys = [d.key for d in dimensions]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"{key}: searched twice")
    return SearchSpace(tuple(sorted(dimensions, key=lambda d: d.key)))


def space_from_json(raw: Any, algorithm: str, source: str = "space") -> SearchSpace:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object of field -> range or choices")
    return build_space([dimension_from_json(key, value, algorithm) for key, value in raw.items()])


def apply_values(config: RunConfig, values: dict[str, Any]) -> RunConfig:
    """A new, validated config: ``config`` with the searched ``values`` set."""
    raw = config.to_dict()
    for key, value in values.items():
        section, _, name = key.partition(".")
        raw[section][name] = value
    return RunConfig.from_dict(raw)


def _number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{key}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{key}: bounds must be finite (got {text.strip()!r})")
    return value


def _range_dimension(spec: FieldSpec, low: Any, high: Any, log: bool) -> SearchDimension:
    if spec.kind not in (int, float) or spec.choices:
        raise ConfigError(f"{spec.key}: not a numeric field; give a list of choices"
                          + (f" ({', '.join(map(str, spec.choices))})" if spec.choices else ""))
    values = []
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ConfigError(f"{spec.key}: bounds must be numbers (got {bound!r})")
        if spec.kind is int and not float(bound).is_integer():
            raise ConfigError(f"{spec.key}: an integer field needs whole-number bounds (got {bound!r})")
        value = int(bound) if spec.kind is int else float(bound)
        problem = check_field(spec, value)
        if problem:
            raise ConfigError(f"{spec.key}: range {low:g}..{high:g} is outside the field's bounds ({problem})")
        values.append(value)
    if values[0] >= values[1]:
        raise ConfigError(f"{spec.key}: the range's low ({values[0]:g}) must be below its high ({values[1]:g})")
    if log and values[0] <= 0:
        raise ConfigError(f"{spec.key}: a log range needs a low above 0 (got {values[0]:g})")
    return SearchDimension(spec.key, "int" if spec.kind is int else "float", values[0], values[1], log)


def _choice_dimension(spec: FieldSpec, choices: Any, algorithm: str) -> SearchDimension:
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{spec.key}: the list of choices is empty")
    if spec.kind is list or (spec.kind is str and not spec.choices):
        raise ConfigError(f"{spec.key}: neither a numeric nor a choice field; it cannot be searched")
    values = []
    for choice in choices:
        value = _coerced(spec, choice, algorithm)
        problem = check_field(spec, value)
        if problem:
            raise ConfigError(f"{spec.key}: choice {choice!r} is refused ({problem})")
        if value not in values:
            values.append(value)
    return SearchDimension(spec.key, "choice", choices=tuple(values))


def section_class(section: str, algorithm: str) -> type | None:
    """The config dataclass of ``section`` in a run of ``algorithm`` (None: no such section)."""
    if section == "algorithm":
        return ALGORITHM_CONFIGS[algorithm]
    return SEARCHABLE_SECTIONS.get(section)


def _coerced(spec: FieldSpec, value: Any, algorithm: str) -> Any:
    """``value`` as the field's type (``"5"`` -> 5 for an int field, ``"true"`` -> True for a bool)."""
    cls = section_class(spec.section, algorithm)
    return getattr(config_section(cls, {spec.name: value}, spec.section), spec.name)
