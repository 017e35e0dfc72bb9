"""``meta-engine runs list|show|export``: the run history the studio shows (engine.training.run_store), for
scripts: as a table or CSV, one run's record and metrics, and TensorBoard event files of existing runs."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from engine.cli.common import EXIT_OK
from engine.errors import ConfigError

RUN_COLUMNS = ("name", "algorithm", "dataset", "status", "steps_done", "total_steps", "best_val_accuracy",
               "best_step", "duration_s", "created", "device", "race", "run_dir")
METRIC_COLUMNS = ("run", "kind", "step", "loss", "accuracy", "lr", "time", "ci95", "episodes")


def add_parser(sub: Any) -> None:
    """Register ``runs`` (with ``list``, ``show``, ``export``) on the subcommand parsers ``sub``."""
    runs = sub.add_parser("runs", help="the run history the studio shows: list runs, show one, export their "
                                       "metrics as CSV or TensorBoard event files")
    runs.add_argument("--runs-dir", help="folder holding run folders (default: the studio's run history)")
    actions = runs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every run (solo and race runs), newest first")
    listing.add_argument("--csv", action="store_true", help="CSV with a header instead of a table")
    listing.set_defaults(func=cmd_list)
    show = actions.add_parser("show", help="one run's record and config, or with --csv its metrics")
    show.add_argument("run", help="a run folder, or the name of a folder in the run history")
    show.add_argument("--csv", action="store_true", help="print the run's metrics.jsonl as CSV")
    show.set_defaults(func=cmd_show)
    export = actions.add_parser("export", help="runs' metrics as CSV (stdout) or as TensorBoard event files "
                                               "(<run>/tensorboard/)")
    export.add_argument("runs", nargs="+", metavar="RUN", help="run folders or names of folders in the history")
    kind = export.add_mutually_exclusive_group(required=True)
    kind.add_argument("--tensorboard", action="store_true", help="write each run's event files into "
                                                                 "<run>/tensorboard/ (replacing earlier ones)")
    kind.add_argument("--csv", action="store_true", help="every run's metrics as one CSV on stdout")
    export.set_defaults(func=cmd_export)


def _store(args: argparse.Namespace) -> Any:
    from engine.training.run_store import RunStore

    return RunStore(Path(args.runs_dir) if args.runs_dir else None)


def resolve_run(store: Any, run: str) -> Path:
    """A run folder given as a path, or as the name of a folder of the history (solo or race run)."""
    path = Path(run)
    if (path / "config.json").is_file():
        return path
    matches = [r.run_dir for r in store.list_runs() if r.run_dir.name == run or r.name == run]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"{run}: {len(matches)} runs have this name; give the run folder")
    raise ConfigError(f"{run}: no such run folder, and no run of {store.root} has this name")


def cmd_list(args: argparse.Namespace) -> int:
    records = _store(args).list_runs()
    rows = [_record_row(r) for r in records]
    if args.csv:
        sys.stdout.write(_csv(RUN_COLUMNS, rows))
    else:
        print(_table(("name", "algorithm", "status", "steps", "best val", "created", "folder"),
                     [(r["name"], r["algorithm"], r["status"], f"{r['steps_done']}/{r['total_steps']}",
                       _percent(r["best_val_accuracy"]), r["created"][:19], r["run_dir"]) for r in rows]))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    import json

    store = _store(args)
    run_dir = resolve_run(store, args.run)
    if args.csv:
        sys.stdout.write(_csv(METRIC_COLUMNS, _metric_rows(store, [run_dir])))
        return EXIT_OK
    record = _record_row(store.record(run_dir))
    for key in RUN_COLUMNS:
        print(f"{key}: {'' if record[key] is None else record[key]}")
    print("config: " + json.dumps(store.read_config(run_dir).to_dict(), indent=2))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    store = _store(args)
    run_dirs = [resolve_run(store, run) for run in args.runs]
    if args.csv:
        sys.stdout.write(_csv(METRIC_COLUMNS, _metric_rows(store, run_dirs)))
        return EXIT_OK
    from engine.training.tensorboard import export_run

    for run_dir in run_dirs:
        print(f"{run_dir}: TensorBoard event files in {export_run(run_dir)}")
    return EXIT_OK


def _record_row(record: Any) -> dict[str, Any]:
    return {"name": record.name, "algorithm": record.algorithm, "dataset": record.dataset, "status": record.status,
            "steps_done": record.steps_done, "total_steps": record.total_steps,
            "best_val_accuracy": record.best_val_accuracy, "best_step": record.best_step,
            "duration_s": round(record.duration_s, 2), "created": record.created, "device": record.device,
            "race": str(record.race_dir) if record.race_dir else "", "run_dir": str(record.run_dir)}


def _metric_rows(store: Any, run_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    return [{"run": str(run_dir), **row} for run_dir in run_dirs for row in store.read_metrics(run_dir)]


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
    return buffer.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "no runs"
    lines = [tuple(header), *rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"
