"""``meta-engine train``: train or resume one run, with a tqdm progress bar (engine.cli.progress)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, Any

from engine.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, add_config_flags, config_from_args
from engine.cli.progress import is_terminal, move_to, progress_bar, say
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
    """The run's tqdm bar on stderr (engine.cli.progress): steps, rate, ETA, loss, accuracy and the latest
    validation; one redrawn line on a terminal, plain periodic lines otherwise."""

    def __init__(self, stream: IO[str] | None = None, every_s: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.bar: Any = None
        self._val = ""

    def on_run_start(self, info: RunInfo) -> None:
        say(f"run folder: {info.run_dir}  device: {info.device}  classes: {info.n_train_classes} train / "
            f"{info.n_val_classes} val / {info.n_test_classes} test", stream=self.stream)
        self.bar = progress_bar(info.total_steps, "train", stream=self.stream, initial=info.start_step,
                                every_s=self.every_s)

    def on_step(self, m: StepMetrics) -> None:
        if self.bar is not None:
            move_to(self.bar, m.step, f"loss {m.loss:.3f} acc {m.accuracy:.3f}{self._val}")

    def on_validation(self, r: ValidationResult) -> None:
        self._val = f" | val {100 * r.accuracy:.1f}% +- {100 * r.ci95:.1f}"
        if not is_terminal(self.stream):
            say(f"step {r.step}: validation accuracy {100 * r.accuracy:.2f}% +- {100 * r.ci95:.2f}%",
                stream=self.stream)

    def on_log(self, message: str, level: str = "info") -> None:
        if level in ("warning", "error"):
            say(f"{level}: {message}", self.bar, self.stream)

    def on_finished(self, s: RunSummary) -> None:
        self._close()
        best = f"{100 * s.best_val_accuracy:.2f}% at step {s.best_step}" if s.best_val_accuracy is not None else "n/a"
        say(f"{s.status}: {s.steps_done} steps in {s.duration_s:.1f}s; best validation accuracy {best}",
            stream=self.stream)

    def on_failed(self, message: str, summary: RunSummary) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
