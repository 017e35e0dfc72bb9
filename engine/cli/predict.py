"""``meta-engine predict``: classify query images given a support folder of new classes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_OK


def add_parser(sub: Any) -> None:
    """Register ``predict`` on the subcommand parsers ``sub``."""
    pr = sub.add_parser("predict", help="classify query images given a support folder of new classes")
    pr.add_argument("--checkpoint", required=True, help="a training checkpoint or a saved adapted classifier")
    # Optional: a saved adapted classifier brings its own classes; predict_folders says when a training
    # checkpoint needs --support.
    pr.add_argument("--support", default=None,
                    help="folder with one sub-folder of images per new class (required with a training "
                         "checkpoint; ignored with a saved adapted classifier)")
    pr.add_argument("--query", required=True, nargs="+", help="query image files or folders")
    pr.add_argument("--steps", type=int, help="inner-loop steps for gradient-based algorithms")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from engine.inference import predict_folders

    report = predict_folders(Path(args.checkpoint), Path(args.support) if args.support else None,
                             [Path(q) for q in args.query],
                             device=args.device, steps=args.steps)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    classes = report["classes"]
    for row in report["predictions"]:
        probs = "  ".join(f"{c}={p:.3f}" for c, p in zip(classes, row["probabilities"]))
        print(f"{row['file']}: {row['predicted']}  ({probs})")
    for skipped in report["skipped"]:
        print(f"skipped {skipped['path']}: {skipped['reason']}", file=sys.stderr)
    if report.get("accuracy") is not None:
        print(f"accuracy: {100 * report['accuracy']:.2f}% on {len(report['predictions'])} labelled files")
    return EXIT_OK
