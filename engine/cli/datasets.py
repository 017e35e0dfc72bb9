"""``meta-engine datasets inspect``: a data set folder's classes, counts, skipped files and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_OK


def add_parser(sub: Any) -> None:
    """Register ``datasets`` (and its ``inspect``) on the subcommand parsers ``sub``."""
    ds = sub.add_parser("datasets", help="data set tools")
    ds_sub = ds.add_subparsers(dest="datasets_command", required=True)
    insp = ds_sub.add_parser("inspect", help="classes, counts, skipped files and why")
    insp.add_argument("folder")
    insp.add_argument("--json", action="store_true")
    insp.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from engine.data.inspect import format_inspection, inspect_folder

    report = inspect_folder(Path(args.folder))
    print(json.dumps(report, indent=2) if args.json else format_inspection(report))
    return EXIT_OK
