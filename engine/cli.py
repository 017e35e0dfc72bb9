"""``meta-engine``: train, evaluate, predict and inspect data sets without a screen.

Bad input never shows a traceback: every :class:`~engine.errors.EngineError`
is printed as ``error: <message>`` and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from engine.config import (ALGORITHM_CONFIGS, DataConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig,
                           describe_fields)
from engine.errors import ConfigError, EngineError
from engine.training.callbacks import Callback, RunInfo, RunSummary, StepMetrics, ValidationResult

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
SECTIONS = (("data", DataConfig), ("task", TaskConfig), ("model", ModelConfig), ("train", TrainConfig))


# -- flags generated from the config dataclasses --------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (``--n-way``, ``--inner-lr`` ...), help and bounds from the declarations."""
    seen: set[str] = set()
    for section, cls in SECTIONS:
        group = parser.add_argument_group(f"{section} options")
        for spec in describe_fields(cls, section):
            seen.add(spec.name)
            group.add_argument(_flag(spec.name), dest=f"{section}.{spec.name}", default=None,
                               metavar=spec.kind.__name__.upper(), help=_help(spec))
    group = parser.add_argument_group("algorithm options (apply to the algorithms that have them)")
    for cls in ALGORITHM_CONFIGS.values():
        for spec in describe_fields(cls, "algorithm"):
            if f"algorithm.{spec.name}" in {a.dest for a in group._group_actions}:
                continue
            group.add_argument(_flag(spec.name), dest=f"algorithm.{spec.name}", default=None,
                               metavar=spec.kind.__name__.upper(), help=_help(spec))


def _help(spec) -> str:
    extra = f" (default {spec.default!r}"
    if spec.choices:
        extra += f"; one of {', '.join(map(str, spec.choices))}"
    return spec.help + extra + ")"


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A JSON config (``--config``) overridden by any flags given; validated."""
    raw: dict[str, Any] = {}
    if args.config:
        raw = _read_json_config(Path(args.config))
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
            raise ConfigError(f"{_flag(name)} does not apply to algorithm {algo_name!r}")
        raw.setdefault(section, {})[name] = value
    if args.name:
        raw["name"] = args.name
    return RunConfig.from_dict(raw)


def _read_json_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON config ({error})") from None


# -- progress bar -----------------------------------------------------------------------------------------
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


# -- commands -------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume); under torchrun every rank runs this, rank 0 alone prints and writes the run folder."""
    from engine.training import distributed

    joined_here = distributed.current_world() is None
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

    callbacks = [] if args.quiet or not main else [ProgressBar()]
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
        return EXIT_FAILED
    if main:
        print(summary.run_dir)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.inference import evaluate_checkpoint

    result, scope = evaluate_checkpoint(Path(args.checkpoint), dataset=args.dataset, episodes=args.episodes,
                                        n_way=args.n_way, n_shot=args.n_shot, n_query=args.n_query,
                                        seed=args.seed, device=args.device, classes=args.classes,
                                        groups=args.groups)
    if args.json:
        print(json.dumps({**result.to_json(), "classes": scope}, indent=2))
    else:
        print(f"{result.n_way}-way {result.n_shot}-shot accuracy on {scope}: {100 * result.accuracy:.2f}% "
              f"+- {100 * result.ci95:.2f}% (95% CI, {result.n_episodes} episodes)")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from engine.inference import predict_folders

    report = predict_folders(Path(args.checkpoint), Path(args.support) if args.support else None, [Path(q) for q in args.query],
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


def cmd_inspect(args: argparse.Namespace) -> int:
    from engine.data.inspect import format_inspection, inspect_folder

    report = inspect_folder(Path(args.folder))
    print(json.dumps(report, indent=2) if args.json else format_inspection(report))
    return EXIT_OK


# -- parser ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meta-engine", description="Few-shot meta-learning engine of Meta Studio.")
    sub = parser.add_subparsers(dest="command", required=True)

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
    _add_config_flags(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="accuracy with 95%% CI on held-out classes")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--dataset", help="another data set folder (default: the checkpoint's)")
    ev.add_argument("--episodes", type=int, default=600)
    ev.add_argument("--n-way", type=int, default=5)
    ev.add_argument("--n-shot", type=int, default=1)
    ev.add_argument("--n-query", type=int, default=15)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--classes", choices=("auto", "test", "all", "novel"), default="auto",
                    help="test: the run's test classes; novel: classes of groups unseen in training; "
                         "all: every class; auto: test on the run's own data set, novel on another")
    ev.add_argument("--groups", help="comma-separated groups (alphabets) to evaluate on")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

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

    ds = sub.add_parser("datasets", help="data set tools")
    ds_sub = ds.add_subparsers(dest="datasets_command", required=True)
    insp = ds_sub.add_parser("inspect", help="classes, counts, skipped files and why")
    insp.add_argument("folder")
    insp.add_argument("--json", action="store_true")
    insp.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
