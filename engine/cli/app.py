"""The ``meta-engine`` parser (one subcommand per module of :mod:`engine.cli`) and :func:`main`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from engine.cli import (algorithms, datasets, evaluate, export, leaderboard, predict, race, regression, rl, runs, sweep,
                        train)
from engine.cli.common import EXIT_BAD_INPUT
from engine.errors import EngineError
from engine.training.host_memory import keep_freed_host_memory_if_alone

SUBCOMMANDS = (train, race, sweep, evaluate, predict, export, runs, datasets, regression, rl, algorithms, leaderboard)
"""The subcommand modules, in the order ``meta-engine --help`` lists them; each has ``add_parser(sub)``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meta-engine", description="Few-shot meta-learning engine of Meta Studio.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    keep_freed_host_memory_if_alone()  # first, before torch.distributed or other threads start (host_memory)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
