"""What every ``meta-engine`` subcommand shares: exit codes, config flags generated from the config
dataclasses (help and bounds from their declarations), and JSON config files.

Bad input never shows a traceback: every :class:`~engine.errors.EngineError`
is printed as ``error: <message>`` (one line) and the exit status is 2 (:func:`engine.cli.main`);
a training run refused at its set-up (data set, device, checkpoint) counts as bad input too, one that
failed once it had started exits with 1 (:mod:`engine.cli.train`). ``tests/engine/test_cli_contract.py``
holds every subcommand to this through the installed console script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.config import (ALGORITHM_CONFIGS, DataConfig, FieldSpec, ModelConfig, RunConfig, TaskConfig,
                           TrainConfig, describe_fields)
from engine.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
SECTIONS = (("data", DataConfig), ("task", TaskConfig), ("model", ModelConfig), ("train", TrainConfig))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (``--n-way``, ``--inner-lr`` ...), help and bounds from the declarations."""
    seen: set[str] = set()
    for section, cls in SECTIONS:
        group = parser.add_argument_group(f"{section} options")
        for spec in describe_fields(cls, section):
            seen.add(spec.name)
            group.add_argument(flag(spec.name), dest=f"{section}.{spec.name}", default=None,
                               metavar=spec.kind.__name__.upper(), help=flag_help(spec))
    group = parser.add_argument_group("algorithm options (apply to the algorithms that have them)")
    for cls in ALGORITHM_CONFIGS.values():
        for spec in describe_fields(cls, "algorithm"):
            if f"algorithm.{spec.name}" in {a.dest for a in group._group_actions}:
                continue
            group.add_argument(flag(spec.name), dest=f"algorithm.{spec.name}", default=None,
                               metavar=spec.kind.__name__.upper(), help=flag_help(spec))


def add_shared_config_flags(parser: argparse.ArgumentParser) -> None:
    """The data / task / model / train flags (a race's shared sections; no per-algorithm flags)."""
    for section, cls in SECTIONS:
        group = parser.add_argument_group(f"{section} options")
        for spec in describe_fields(cls, section):
            group.add_argument(flag(spec.name), dest=f"{section}.{spec.name}", default=None,
                               metavar=spec.kind.__name__.upper(), help=flag_help(spec))


def flag_help(spec: FieldSpec) -> str:
    extra = f" (default {spec.default!r}"
    if spec.choices:
        extra += f"; one of {', '.join(map(str, spec.choices))}"
    return (spec.help + extra + ")").replace("%", "%%")  # argparse formats help with %


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A JSON config (``--config``) overridden by any flags given; validated."""
    raw: dict[str, Any] = {}
    if args.config:
        raw = read_json_config(Path(args.config))
    raw.setdefault("algorithm", {})
    if args.algorithm:
        raw["algorithm"] = {"name": args.algorithm} if raw["algorithm"].get("name") != args.algorithm \
            else raw["algorithm"]
    algo_name = raw["algorithm"].get("name", "protonet")
    if algo_name not in ALGORITHM_CONFIGS:
        raise ConfigError(f"--algorithm: unknown algorithm {algo_name!r}; choose one of {', '.join(ALGORITHM_CONFIGS)}")
    algo_fields = {s.name for s in describe_fields(ALGORITHM_CONFIGS[algo_name], "algorithm")}
    for dest, value in vars(args).items():
        if value is None or "." not in dest:
            continue
        section, name = dest.split(".", 1)
        if section == "algorithm" and name not in algo_fields:
            raise ConfigError(f"{flag(name)} does not apply to algorithm {algo_name!r}")
        raw.setdefault(section, {})[name] = value
    if args.name:
        raw["name"] = args.name
    return RunConfig.from_dict(raw)


def read_json_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON config ({error})") from None
