"""``meta-engine sweep``: a hyperparameter search on Optuna whose trials are training runs; ``sweep show``
ranks a study's trials.

Every trial is an ordinary run folder (``<runs>/<time>-<study>-trial-<n>-...``); the study lives in an
SQLite file under the runs folder unless ``--storage`` names another (``sqlite:///FILE``,
``postgresql://...``, ``mysql://...``, ``journal:FILE``). Several ``meta-engine sweep`` processes, on
one machine or many, given the same ``--storage`` and ``--study`` work on one study together.
Bad input (a field that does not exist, a range outside the field's bounds, an empty choice list, a
storage that cannot be opened, a study name already used for another space) exits with 2 and one line
naming it, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import EXIT_OK, add_config_flags, config_from_args, read_json_config
from engine.config import ALGORITHM_CONFIGS


def add_parser(sub: Any) -> None:
    """Register ``sweep`` (and ``sweep show``) on the subcommand parsers ``sub``."""
    sweep = sub.add_parser("sweep", help="search hyperparameters with Optuna (seeded TPE, pruning of losing "
                                         "trials); each trial is a run. 'sweep show' ranks a study's trials. "
                                         "Processes given one --storage and --study share the study")
    sweep.add_argument("action", nargs="?", choices=("show",), help="show: rank the trials of --study")
    sweep.add_argument("--param", action="append", default=[], metavar="KEY=RANGE",
                       help="a field to search: KEY=LOW:HIGH, KEY=LOW:HIGH:log or KEY=A,B,... "
                            "(e.g. algorithm.lr=1e-4:1e-2:log task.n_way=5:20 model.backbone=conv4,resnet12)")
    sweep.add_argument("--space", help="JSON file of the search space: {KEY: {low, high, log} | {choices} | [..]}")
    sweep.add_argument("--trials", type=int, default=20, help="trials the study should hold (default 20)")
    sweep.add_argument("--pruner", default="median", help="median (default), halving or none")
    sweep.add_argument("--startup-trials", type=int, default=3,
                       help="trials before the pruner stops any and before TPE leaves random sampling (default 3)")
    sweep.add_argument("--storage", default="", help="Optuna storage URL (default sqlite:///RUNS/sweeps/optuna.db)")
    sweep.add_argument("--study", default="sweep", help="study name (default 'sweep')")
    sweep.add_argument("--config", help="JSON run config of every trial (flags override it)")
    sweep.add_argument("--algorithm", choices=sorted(ALGORITHM_CONFIGS), help="algorithm (default protonet)")
    sweep.add_argument("--dataset", dest="data.root", default=None, help="alias of --root")
    sweep.add_argument("--name", help=argparse.SUPPRESS)
    sweep.add_argument("--runs-dir", help="folder holding the trials' run folders (default: the studio's)")
    sweep.add_argument("--json", action="store_true", help="print the result as JSON")
    sweep.add_argument("--quiet", action="store_true", help="no line per trial")
    add_config_flags(sweep)
    sweep.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.action == "show":
        return cmd_show(args)
    from engine.sweep import run_sweep

    settings = settings_from_args(args)
    outcome = run_sweep(settings, on_trial=None if args.quiet else _print_trial)
    if args.json:
        print(json.dumps({"study": outcome.study_name, "storage": outcome.storage_url, "status": outcome.status,
                          "trials_run": outcome.trials_run, "best_val_accuracy": outcome.best_value,
                          "best_params": outcome.best_params}))
    else:
        best = f"{100 * outcome.best_value:.2f}% with {_params(outcome.best_params)}" \
            if outcome.best_value is not None else "none complete"
        print(f"{outcome.status}: study {outcome.study_name!r} in {outcome.storage_url}; best validation "
              f"accuracy {best}")
    return EXIT_OK if outcome.status == "finished" else 130


def settings_from_args(args: argparse.Namespace) -> Any:
    """The sweep's settings from the flags; ConfigError naming the field, flag or URL."""
    from engine.sweep import SweepSettings, build_space, dimension_from_text, space_from_json

    config = config_from_args(args)
    algorithm = config.algorithm.name
    dimensions = list(space_from_json(read_json_config(Path(args.space)), algorithm, args.space).dimensions) \
        if args.space else []
    dimensions += [dimension_from_text(text, algorithm) for text in args.param]
    space = build_space(dimensions)
    return SweepSettings(config, space, args.trials, args.study, args.storage,
                         Path(args.runs_dir) if args.runs_dir else None, args.pruner, args.startup_trials)


def cmd_show(args: argparse.Namespace) -> int:
    from engine.sweep import default_storage_url, load_sweep
    from engine.training.run_store import default_runs_root

    url = args.storage or default_storage_url(Path(args.runs_dir) if args.runs_dir else default_runs_root())
    snapshot = load_sweep(url, args.study)
    if args.json:
        print(json.dumps({"study": snapshot.study_name, "space": snapshot.space, "best_params": snapshot.best_params,
                          "importances": snapshot.importances, "trials": [r.to_json() for r in snapshot.rows]}))
        return EXIT_OK
    print(f"study {snapshot.study_name!r}: {len(snapshot.rows)} trials")
    print(f"{'rank':>4} {'trial':>5} {'state':<9} {'best val':>8}  {'step':>5}  parameters / run folder")
    for rank, row in enumerate(snapshot.rows, 1):
        value = row.value if row.value is not None else row.best_seen
        shown = f"{100 * value:7.2f}%" if value is not None else "       -"
        step = str(row.last_step) if row.last_step is not None else "-"
        print(f"{rank:>4} {row.number:>5} {row.state:<9} {shown:>8}  {step:>5}  {_params(row.params)}  "
              f"{row.run_dir or ''}{'  (' + row.message + ')' if row.message else ''}")
    return EXIT_OK


def _print_trial(study: Any, trial: Any) -> None:
    value = f"best validation accuracy {100 * trial.value:.2f}%" if trial.value is not None else ""
    steps = trial.intermediate_values
    where = f" at step {max(steps)}" if steps and trial.state.name == "PRUNED" else ""
    print(f"trial {trial.number} {trial.state.name.lower()}{where} {value} {_params(trial.params)}".rstrip(),
          file=sys.stderr, flush=True)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in sorted(params.items()))
