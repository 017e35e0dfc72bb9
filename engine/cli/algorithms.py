"""``meta-engine algorithms``: every registered algorithm with its title, paper, kind and capabilities.

The list is the registry's (:data:`engine.algorithms.registry.ALGORITHMS`) and the capabilities are the
class attributes that :class:`~engine.algorithms.base.Algorithm` declares as ``ClassVar`` (read off its
annotations), so an algorithm or a capability added later is listed with no edit here.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from engine.cli.common import EXIT_OK

FLAG_CAPABILITIES = ("one_pass_adaptation", "cacheable_features", "inner_loop", "meta_gradient_memory",
                     "transductive")
"""The yes/no capabilities the text table shows in its "capabilities" column (JSON has all of them)."""


def add_parser(sub: Any) -> None:
    """Register ``algorithms`` on the subcommand parsers ``sub``."""
    parser = sub.add_parser("algorithms", help="list every algorithm: name, title, paper, kind and its capabilities")
    parser.add_argument("--json", action="store_true", help="a JSON list of objects (name, title, summary, paper, "
                                                            "kind, transductive, capabilities, recipe)")
    parser.set_defaults(func=cmd_algorithms)


def capability_names() -> list[str]:
    """The capabilities :class:`~engine.algorithms.base.Algorithm` declares (its ``ClassVar`` attributes)."""
    from engine.algorithms.base import Algorithm

    return [name for name, annotation in Algorithm.__annotations__.items()
            if str(annotation).startswith(("ClassVar", "typing.ClassVar"))]


def describe_algorithms() -> list[dict[str, Any]]:
    """One JSON-ready object per registered algorithm, in the registry's order."""
    from engine.algorithms.registry import ALGORITHMS
    from engine.config import ALGORITHM_CONFIGS

    names = capability_names()
    rows = []
    for name, cls in ALGORITHMS.items():
        config_class = ALGORITHM_CONFIGS.get(name)
        capabilities = {capability: _plain(getattr(cls, capability)) for capability in names}
        rows.append({"name": name, "title": (config_class.title if config_class else "") or cls.display_title(),
                     "short_title": cls.display_title(config_class() if config_class else None),
                     "summary": config_class.summary if config_class else "", "paper": cls.paper, "kind": cls.kind,
                     "transductive": bool(cls.transductive), "capabilities": capabilities})
    return rows


def _plain(value: Any) -> Any:
    """A class attribute as JSON (dicts and tuples copied into plain containers)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def format_algorithms(rows: list[dict[str, Any]]) -> str:
    """The algorithms as aligned text: name, title, kind, the yes/no capabilities that hold, paper."""
    header = ("name", "title", "kind", "capabilities", "paper")
    lines = [header]
    for row in rows:
        flags = [name.replace("_", " ") for name in FLAG_CAPABILITIES if row["capabilities"].get(name)]
        lines.append((row["name"], row["title"], row["kind"], ", ".join(flags) or "-", row["paper"] or "-"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1]
                     for line in lines)


def cmd_algorithms(args: argparse.Namespace) -> int:
    rows = describe_algorithms()
    print(json.dumps(rows, indent=2) if args.json else format_algorithms(rows))
    return EXIT_OK
