"""``meta-engine race``: race 2 to 6 algorithms, a progress bar on stderr, the table as text or JSON.

:func:`format_table` is the race table as aligned text (the cells' own rules,
:func:`~engine.race.format_accuracy` and :func:`~engine.race.format_memory`, are the race's, shared
with the studio's table).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_FAILED, EXIT_OK, add_shared_config_flags, read_json_config
from engine.cli.progress import move_to, progress_bar, say
from engine.config import ALGORITHM_CONFIGS
from engine.errors import ConfigError
from engine.race import (Race, RaceCallback, RaceConfig, RaceInfo, RaceResult, format_accuracy, format_memory,
                         new_race_dir)
from engine.training.callbacks import StepMetrics, ValidationResult


def add_parser(sub: Any) -> None:
    """Register ``race`` on the subcommand parsers ``sub``."""
    race = sub.add_parser("race", help="race 2 to 6 algorithms on the same data, the same seeded episodes and "
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
    add_shared_config_flags(race)
    race.set_defaults(func=cmd_race)


def race_config_from_args(args: argparse.Namespace) -> RaceConfig:
    """A JSON race config (``--config``) overridden by ``--algorithms`` and the shared flags; validated."""
    raw: dict[str, Any] = read_json_config(Path(args.config)) if args.config else {}
    if args.algorithms is not None:
        names = [name.strip() for name in args.algorithms.split(",") if name.strip()]
        by_name = {a.get("name"): a for a in raw.get("algorithms", []) if isinstance(a, dict)}
        raw["algorithms"] = [by_name.get(name, {"name": name}) for name in names]
    elif not raw.get("algorithms"):
        raise ConfigError("--algorithms: name 2 to 6 algorithms, e.g. --algorithms protonet,maml,reptile,baseline++")
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
    """A race's tqdm bar on stderr (engine.cli.progress): the steps of all algorithms together, with each
    one's step and accuracy; validations, evaluations and warnings as lines."""

    def __init__(self, stream: Any = None, every_s: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.bar: Any = None
        self._latest: dict[str, StepMetrics] = {}

    def on_race_start(self, info: RaceInfo) -> None:
        say(f"race folder: {info.race_dir}  device: {info.device}  {info.total_steps} steps each, "
            f"round-robin: {', '.join(info.algorithms)}", stream=self.stream)
        for name, stream in info.streams.items():
            say(f"  {name} trains on {stream}", stream=self.stream)
        self.bar = progress_bar(info.total_steps * len(info.algorithms), "race", stream=self.stream,
                                every_s=self.every_s)

    def on_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None:
        self._latest[algorithm] = metrics
        if self.bar is not None:
            move_to(self.bar, sum(m.step for m in self._latest.values()),
                    " | ".join(f"{name} {m.step} acc {m.accuracy:.3f}" for name, m in self._latest.items()))

    def on_validation(self, algorithm: str, result: ValidationResult, seconds: float) -> None:
        say(f"{algorithm} step {result.step}: validation accuracy {100 * result.accuracy:.2f}% "
            f"+- {100 * result.ci95:.2f}% after {seconds:.1f} s of its own compute", self.bar, self.stream)

    def on_log(self, message: str, level: str = "info") -> None:
        if level in ("warning", "error"):
            say(f"{level}: {message}", self.bar, self.stream)
        elif message.startswith("evaluating"):
            say(message, self.bar, self.stream)

    def on_failed(self, message: str) -> None:
        say(f"error: {message}", self.bar, self.stream)

    def on_race_finished(self, result: RaceResult) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_race(args: argparse.Namespace) -> int:
    """Race 2 to 6 algorithms on one data set and one episode stream; print the final table."""
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
    finally:
        for progress in callbacks:
            progress.close()
    if result.status == "failed" and not result.rows:  # could not start (data, folder); already printed
        return EXIT_FAILED
    if args.json:
        print(json.dumps({**result.to_dict(), "race_dir": str(race_dir)}, indent=2))
    else:
        print(format_table(result))
        print(f"race folder: {race_dir}")
    return EXIT_FAILED if result.status == "failed" or any(r.status == "failed" for r in result.rows) else EXIT_OK



def format_table(result: RaceResult) -> str:
    """The race table as aligned text (what ``meta-engine race`` prints)."""
    header = ("algorithm", "status", "steps", "test accuracy (95% CI)", "train time", "peak memory")
    lines = [header]
    for row in result.rows:
        lines.append((row.algorithm, row.status, f"{row.steps_done}/{row.total_steps}", format_accuracy(row),
                      f"{row.train_seconds:.1f} s", format_memory(row)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i in (0, 1, 3) else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths))) for line in lines]
    return "\n".join(text + [""] + _table_notes(result))


def _table_notes(result: RaceResult) -> list[str]:
    """The lines under the table: how the race ended and what each column measured."""
    episodes = {row.test_episodes for row in result.rows if row.test_accuracy is not None}
    notes = [f"race {result.status} in {result.duration_s:.1f} s on {result.device}"
             + (f"; {result.message}" if result.message else "")]
    if episodes:
        notes.append(f"test accuracy: the same {', '.join(map(str, sorted(episodes)))} seeded test episodes "
                     f"(seed {result.test_seed}) for every algorithm, final weights")
    notes.append("train time: each algorithm's own compute seconds in its training steps")
    methods = sorted({row.memory_method for row in result.rows if row.memory_method})
    notes += [f"peak memory: {method}" for method in methods]
    notes += [f"{row.algorithm}: {row.message}" for row in result.rows if row.message]
    return notes
