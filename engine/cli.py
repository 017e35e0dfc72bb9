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
from engine.race import RaceCallback
from engine.training.callbacks import Callback, RunInfo, RunSummary, StepMetrics, ValidationResult
from engine.training.host_memory import keep_freed_host_memory_if_alone

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
    return (spec.help + extra + ")").replace("%", "%%")  # argparse formats help with %


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


# -- race -------------------------------------------------------------------------------------------------
def _add_shared_config_flags(parser: argparse.ArgumentParser) -> None:
    """The data / task / model / train flags (a race's shared sections; no per-algorithm flags)."""
    for section, cls in SECTIONS:
        group = parser.add_argument_group(f"{section} options")
        for spec in describe_fields(cls, section):
            group.add_argument(_flag(spec.name), dest=f"{section}.{spec.name}", default=None,
                               metavar=spec.kind.__name__.upper(), help=_help(spec))


def race_config_from_args(args: argparse.Namespace) -> Any:
    """A JSON race config (``--config``) overridden by ``--algorithms`` and the shared flags; validated."""
    from engine.race import RaceConfig

    raw: dict[str, Any] = _read_json_config(Path(args.config)) if args.config else {}
    if args.algorithms is not None:
        names = [name.strip() for name in args.algorithms.split(",") if name.strip()]
        by_name = {a.get("name"): a for a in raw.get("algorithms", []) if isinstance(a, dict)}
        raw["algorithms"] = [by_name.get(name, {"name": name}) for name in names]
    elif not raw.get("algorithms"):
        raise ConfigError("--algorithms: name 2 to 4 algorithms, e.g. --algorithms protonet,maml,reptile,baseline++")
    for dest, value in vars(args).items():
        if value is not None and "." in dest:
            section, name = dest.split(".", 1)
            raw.setdefault(section, {})[name] = value
    if args.test_episodes is not None:
        raw["test_episodes"] = args.test_episodes
    if args.test_seed is not None:
        raw["test_seed"] = args.test_seed
    if args.name:
        raw["name"] = args.name
    return RaceConfig.from_dict(raw)


class RaceProgress(RaceCallback):
    """Plain progress lines of a race on stderr (at most one line of step counts every ``every_s`` seconds)."""

    def __init__(self, stream: Any = None, every_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = 0.0
        self._latest: dict[str, StepMetrics] = {}

    def on_race_start(self, info: Any) -> None:
        self._print(f"race folder: {info.race_dir}  device: {info.device}  {info.total_steps} steps each, "
                    f"round-robin: {', '.join(info.algorithms)}")
        for name, stream in info.streams.items():
            self._print(f"  {name} trains on {stream}")

    def on_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None:
        self._latest[algorithm] = metrics
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        self._print(" | ".join(f"{name} {m.step}/{m.total_steps} acc {m.accuracy:.3f}"
                               for name, m in self._latest.items()))

    def on_validation(self, algorithm: str, result: ValidationResult, seconds: float) -> None:
        self._print(f"{algorithm} step {result.step}: validation accuracy {100 * result.accuracy:.2f}% "
                    f"+- {100 * result.ci95:.2f}% after {seconds:.1f} s of its own compute")

    def on_log(self, message: str, level: str = "info") -> None:
        if level in ("warning", "error"):
            self._print(f"{level}: {message}")
        elif message.startswith("evaluating"):
            self._print(message)

    def on_failed(self, message: str) -> None:
        self._print(f"error: {message}")

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def cmd_race(args: argparse.Namespace) -> int:
    """Race 2 to 4 algorithms on one data set and one episode stream; print the final table."""
    from engine.race import Race, format_table, new_race_dir
    from engine.training.control import RunControl
    from engine.training.run_store import default_runs_root

    config = race_config_from_args(args)
    if args.run_dir:
        race_dir = Path(args.run_dir)
    else:
        race_dir = new_race_dir(Path(args.runs_dir) if args.runs_dir else default_runs_root(), config.display_name)
    control = RunControl()
    callbacks = [] if args.quiet else [RaceProgress()]
    try:
        result = Race(config, race_dir=race_dir, callbacks=callbacks, control=control).run()
    except KeyboardInterrupt:
        control.stop()
        raise
    if result.status == "failed" and not result.rows:  # could not start (data, folder); already printed
        return EXIT_FAILED
    if args.json:
        print(json.dumps({**result.to_dict(), "race_dir": str(race_dir)}, indent=2))
    else:
        print(format_table(result))
        print(f"race folder: {race_dir}")
    return EXIT_FAILED if result.status == "failed" or any(r.status == "failed" for r in result.rows) else EXIT_OK


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


def cmd_regression(args: argparse.Namespace) -> int:
    """Train MAML and the pre-trained baseline on sinusoids, print their K-shot MSE next to the paper's."""
    import torch

    from engine.regression import (PAPER_MSE, RegressionConfig, evaluate_regression, format_table, save_models,
                                   train_both, validate_regression_config)

    config = validate_regression_config(RegressionConfig(
        k_shot=args.k, steps=args.steps, eval_tasks=args.eval_tasks, seed=args.seed,
        inner_lr=args.test_lr if args.test_lr is not None else RegressionConfig.inner_lr))
    if args.threads:
        torch.set_num_threads(args.threads)
    reporter = _RegressionProgress(quiet=args.quiet)
    models = train_both(config, progress=reporter)
    evaluation = evaluate_regression(models, n_tasks=config.eval_tasks, k=config.k_shot, steps=(1, config.test_steps),
                                     seed=config.eval_seed, lr=config.inner_lr)
    paths = save_models(Path(args.out), models) if args.out else {}
    if args.json:
        print(json.dumps({
            "config": config.to_dict(), "evaluation": evaluation.to_json(),
            "paper": {name: {str(s): v for s, v in by_step.items()} for name, by_step in PAPER_MSE.items()},
            "models": {name: {"steps_done": m.steps_done, "final_loss": m.final_loss,
                              "train_seconds": round(m.train_seconds, 2), "file": str(paths[name]) if paths else None}
                       for name, m in models.items()},
        }, indent=2))
    else:
        print(format_table(evaluation, models))
        for name, path in paths.items():
            print(f"saved {name}: {path}")
    return EXIT_OK


class _RegressionProgress:
    """``progress(done, total)`` for cmd_regression: a plain line on stderr every few seconds."""

    def __init__(self, quiet: bool, every_s: float = 5.0) -> None:
        self.quiet, self.every_s = quiet, every_s
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self.last < self.every_s and done != total):
            return
        self.last = now
        elapsed = now - self.started
        eta = elapsed / max(done, 1) * (total - done)
        half = total // 2
        model = "MAML" if done <= half else "pre-trained"
        print(f"{model}: step {done if done <= half else done - half}/{half}  ({elapsed:.0f} s, eta {eta:.0f} s)",
              file=sys.stderr, flush=True)


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

    race = sub.add_parser("race", help="race 2 to 4 algorithms on the same data, the same seeded episodes and "
                                       "the same device; prints test accuracy (95%% CI), training time and "
                                       "peak memory per algorithm")
    race.add_argument("--algorithms", help="comma-separated, e.g. protonet,maml,reptile,baseline++ "
                                           f"(of {', '.join(ALGORITHM_CONFIGS)})")
    race.add_argument("--config", help="JSON race config (shared sections, an 'algorithms' list with "
                                       "hyperparameters, test_episodes); flags override it")
    race.add_argument("--dataset", dest="data.root", default=None, help="alias of --root")
    race.add_argument("--name", help="race name")
    race.add_argument("--test-episodes", type=int, help="seeded test episodes per algorithm (default 600)")
    race.add_argument("--test-seed", type=int, help="seed of the test episodes (default 0)")
    race.add_argument("--runs-dir", help="runs root; the race goes to RUNS/races/ (default: the studio's)")
    race.add_argument("--run-dir", help="exact race folder to write")
    race.add_argument("--json", action="store_true", help="print the result table as JSON")
    race.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_shared_config_flags(race)
    race.set_defaults(func=cmd_race)

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

    reg = sub.add_parser("regression", help="sinusoid regression (Finn et al. 2017): train MAML and a pre-trained "
                                            "baseline on the 2x40 MLP, print the K-shot MSE after 1 and 10 "
                                            "fine-tuning steps next to the paper's")
    reg.add_argument("--k", type=int, default=5, help="support points per task, training and test (default 5)")
    reg.add_argument("--steps", type=int, default=70000, help="training steps of each model (default 70000, "
                                                              "the paper's)")
    reg.add_argument("--eval-tasks", type=int, default=600, help="fresh test sines (default 600)")
    reg.add_argument("--seed", type=int, default=0, help="seed of the initialisation and training sines")
    reg.add_argument("--test-lr", type=float, help="SGD step size of MAML's inner loop and of test-time "
                                                    "fine-tuning (default 0.01, the paper's)")
    reg.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: fastest for this network)")
    reg.add_argument("--out", help="folder to save sinusoid_maml.pt and sinusoid_pretrained.pt in")
    reg.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    reg.add_argument("--json", action="store_true")
    reg.set_defaults(func=cmd_regression)
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


if __name__ == "__main__":
    sys.exit(main())
