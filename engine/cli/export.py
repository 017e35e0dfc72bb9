"""``meta-engine export``: a checkpoint's backbone, or an adapted classifier, as ONNX, pt2 or TorchScript,
with its parity figure (engine.export)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_FAILED, EXIT_OK


def add_parser(sub: Any) -> None:
    """Register ``export`` on the subcommand parsers ``sub``."""
    from engine.export import EXPORT_FORMATS, PARITY_TOLERANCE

    ex = sub.add_parser("export", help="export a trained backbone (features) or an adapted classifier "
                                       "(probabilities) as ONNX, a PyTorch exported program (pt2) or TorchScript; "
                                       "the file is loaded back and checked against PyTorch "
                                       f"(largest difference at most {PARITY_TOLERANCE:g})")
    ex.add_argument("--checkpoint", required=True, help="a training checkpoint or a saved adapted classifier")
    ex.add_argument("--support", default=None,
                    help="folder with one sub-folder of images per class: export the checkpoint adapted to these "
                         "classes (without it a training checkpoint exports its backbone)")
    ex.add_argument("--format", required=True, choices=list(EXPORT_FORMATS),
                    help="; ".join(f"{name}: {title}" for name, (title, _) in EXPORT_FORMATS.items()))
    ex.add_argument("--out", required=True, help="file to write")
    ex.add_argument("--steps", type=int, help="inner-loop steps for gradient-based algorithms")
    ex.add_argument("--device", default="cpu", help="device to adapt on (the export itself runs on the CPU)")
    ex.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from engine.export import ParityError, export_checkpoint

    try:
        report = export_checkpoint(Path(args.checkpoint), Path(args.out), args.format,
                                   support=Path(args.support) if args.support else None, device=args.device,
                                   steps=args.steps)
    except ParityError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(report.describe())
    return EXIT_OK
