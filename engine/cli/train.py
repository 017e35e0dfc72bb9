"""``meta-engine train``: train or resume one run, with a one-line terminal progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, add_config_flags, config_from_args
from engine.config import ALGORITHM_CONFIGS
from engine.training.callbacks import Callback, RunInfo, RunSummary, StepMetrics, ValidationResult

_INTERNAL_ERROR = "internal error:"  # how Trainer.steps() words a bug's failure (not bad input)


def add_parser(sub: Any) -> None:
    """Register ``train`` on the subcommand parsers ``sub``."""
    train = sub.add_parser("train", help="meta-train a model (flags or --config JSON); under torchrun "
                                         "(torchrun --nproc-per-node N -m engine train ...) data-parallel "
                                         "over N processes")
    train.add_argument("--config", help="JSON run config (flags override it)")
    train.add_argument("--algorithm", choices=sorted(ALGORITHM_CONFIGS), help="algorithm (default protonet)")
    train.add_argument("--dataset", dest="data.root", default=None, help="alias of --root")
    train.add_argument("--name", help="run name")
    train.add_argument("--runs-dir", help="folder holding run folders (default: the studio's run history)")
    train.add_argument("--run-dir", help="exact run folder to write")
    train.add_argument("--resume", metavar="RUN", help="continue a stopped run folder from its last checkpoint")
    train.add_argument("--extra-steps", type=int, help="with --resume: train this many steps beyond the plan")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(train)
    train.set_defaults(func=cmd_train)


class ProgressBar(Callback):
    """A one-line terminal progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._val = ""

    def on_run_start(self, info: RunInfo) -> None:
        self._print(f"run folder: {info.run_dir}  device: {info.device}  classes: {info.n_train_classes} train / "
                    f"{info.n_val_classes} val / {info.n_test_classes} test", newline=True)

    def on_step(self, m: StepMetrics) -> None:
        now = time.monotonic()
        if now - self._last < (0.1 if self.tty else 5.0) and m.step != m.total_steps:
            return
        self._last = now
        done = int(self.width * m.step / max(m.total_steps, 1))
        bar = "#" * done + "-" * (self.width - done)
        eta = f"{m.eta_s:5.0f}s" if m.eta_s == m.eta_s else "    ?"
        self._print(f"[{bar}] {m.step}/{m.total_steps} loss {m.loss:.3f} acc {m.accuracy:.3f} "
                    f"{m.episodes_per_second:6.1f} ep/s eta {eta}{self._val}", newline=not self.tty)

    def on_validation(self, r: ValidationResult) -> None:
        self._val = f" | val {100 * r.accuracy:.1f}% +- {100 * r.ci95:.1f}"
        if not self.tty:
            self._print(f"step {r.step}: validation accuracy {100 * r.accuracy:.2f}% +- {100 * r.ci95:.2f}%",
                        newline=True)

    def on_log(self, message: str, level: str = "info") -> None:
        if level in ("warning", "error"):
            self._print(f"{level}: {message}", newline=True)

    def on_finished(self, s: RunSummary) -> None:
        best = f"{100 * s.best_val_accuracy:.2f}% at step {s.best_step}" if s.best_val_accuracy is not None else "n/a"
        self._print(f"{s.status}: {s.steps_done} steps in {s.duration_s:.1f}s; best validation accuracy {best}",
                    newline=True)

    def _print(self, text: str, newline: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if newline else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class _StartWatch(Callback):
    """Whether the run got past its set-up (config, device, data set, checkpoint): a run refused
    before it started was given bad input (exit status 2); one that failed later failed (1)."""

    def __init__(self) -> None:
        self.started = False

    def on_run_start(self, info: RunInfo) -> None:
        self.started = True


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume); under torchrun every rank runs this, rank 0 alone prints and writes the run folder."""
    from engine.runtime import collective
    from engine.training import distributed

    joined_here = collective.current_world() is None
    try:
        world = distributed.init_distributed(_train_device(args))
        return _train(args, main=world is None or world.is_main)
    finally:
        if joined_here:  # leave a process group only if this call joined it
            distributed.cleanup()


def _train_device(args: argparse.Namespace) -> str:
    """train.device of the run about to start (from the resumed run folder or the flags / --config)."""
    if args.resume:
        from engine.training.run_store import RunStore

        run_dir = Path(args.resume)
        return RunStore(run_dir.parent).read_config(run_dir).train.device
    return config_from_args(args).train.device


def _train(args: argparse.Namespace, *, main: bool) -> int:
    from engine.training.control import RunControl
    from engine.training.run_store import RunStore
    from engine.training.trainer import Trainer

    start = _StartWatch()
    callbacks: list[Callback] = [start] if args.quiet or not main else [start, ProgressBar()]
    control = RunControl()
    if args.resume:
        trainer = Trainer.resume(Path(args.resume), callbacks=callbacks, control=control,
                                 extra_steps=args.extra_steps or 0)
    else:
        config = config_from_args(args)
        run_dir = None
        if main:
            store = RunStore(Path(args.runs_dir) if args.runs_dir else None)
            run_dir = Path(args.run_dir) if args.run_dir else store.new_run_dir(config.name or config.algorithm.name)
        trainer = Trainer(config, run_dir=run_dir, callbacks=callbacks, control=control)
    try:
        summary = trainer.run()
    except KeyboardInterrupt:
        control.stop()
        raise
    if summary.status == "failed":
        if main:
            print(f"error: {summary.message}", file=sys.stderr)
        refused = not start.started and not summary.message.startswith(_INTERNAL_ERROR)
        return EXIT_BAD_INPUT if refused else EXIT_FAILED
    if main:
        print(summary.run_dir)
    return EXIT_OK
