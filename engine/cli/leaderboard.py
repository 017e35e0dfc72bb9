"""``meta-engine leaderboard``: train every chosen algorithm with its recipe, test all on the same seeded episodes
at 5-way 1-shot and 5-way 5-shot, write the table as JSON and Markdown (:mod:`engine.leaderboard`).

The common settings are the data / task / model / train flags (``--steps``, ``--image-size``, ``--split-mode``,
``--test-groups`` ...); each algorithm's recipe is applied on top of them. ``--test-dataset`` tests on another
folder's classes unseen in training (Omniglot: train on small1, test on small2's novel alphabets).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.common import EXIT_FAILED, EXIT_OK, SECTIONS, add_shared_config_flags, read_json_config
from engine.config import RunConfig
if TYPE_CHECKING:  # engine.leaderboard imports torch: only when the command runs (``meta-engine --help`` stays fast)
    from engine.leaderboard import Leaderboard, LeaderboardSpec

PROGRESS_EVERY_S = 30.0


def add_parser(sub: Any) -> None:
    """Register ``leaderboard`` on the subcommand parsers ``sub``."""
    parser = sub.add_parser("leaderboard", help="train each algorithm with its recommended recipe, then test all on "
                                                "the same seeded episodes at 5-way 1-shot and 5-shot; writes a "
                                                "JSON and a Markdown table (accuracy with 95%% CI, training time, "
                                                "peak memory)")
    parser.add_argument("--algorithms", default="all", help="'all' (every registered algorithm) or a "
                                                            "comma-separated list (default all)")
    parser.add_argument("--dataset", dest="data.root", default=None, help="the data set to train on (alias of --root)")
    parser.add_argument("--test-dataset", default="", help="test on this folder's classes unseen in training "
                                                           "(default: the training data set's test classes)")
    parser.add_argument("--config", help="JSON run config of the common settings (flags override it)")
    parser.add_argument("--episodes", type=int, default=600, help="seeded test episodes per shot (default 600)")
    parser.add_argument("--test-seed", type=int, default=0, help="seed of the test episodes (default 0)")
    parser.add_argument("--test-n-way", type=int, default=5, help="classes per test episode (default 5)")
    parser.add_argument("--shots", help="comma-separated shots to test (default 1,5)")
    parser.add_argument("--test-n-query", type=int, default=15, help="queries per class of a test episode (default 15)")
    parser.add_argument("--name", help="leaderboard name")
    parser.add_argument("--out", help="the JSON file to write (the Markdown goes next to it as .md); default "
                                      "RUNS/leaderboards/<time>.json")
    parser.add_argument("--resume", action="store_true", help="keep the finished rows of --out made with the same "
                                                              "settings and recipes; train only the others")
    parser.add_argument("--runs-dir", help="runs root the algorithms' runs go to (default: the studio's)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON (default: Markdown)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_shared_config_flags(parser)
    parser.set_defaults(func=cmd_leaderboard, parser=parser)


def spec_from_args(args: argparse.Namespace) -> LeaderboardSpec:
    """The common settings from ``--config`` and the shared flags, the algorithms and the test episodes."""
    from engine.leaderboard import DEFAULT_SHOTS, LeaderboardSpec, parse_algorithms

    raw: dict[str, Any] = read_json_config(Path(args.config)) if args.config else {}
    raw.pop("algorithm", None)
    for dest, value in vars(args).items():
        if value is not None and "." in dest and dest.split(".", 1)[0] in dict(SECTIONS):
            section, name = dest.split(".", 1)
            raw.setdefault(section, {})[name] = value
    base = RunConfig.from_dict(raw)
    shots = tuple(_int_list(args.shots, "--shots")) if args.shots else DEFAULT_SHOTS
    return LeaderboardSpec(base=base, algorithms=parse_algorithms(args.algorithms), test_root=args.test_dataset or "",
                           episodes=args.episodes, seed=args.test_seed, n_way=args.test_n_way, shots=shots,
                           n_query=args.test_n_query, name=args.name or "").validate()


def _int_list(text: str, option: str) -> list[int]:
    from engine.errors import ConfigError

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated whole numbers (got {text!r})") from None


def output_path(args: argparse.Namespace, spec: LeaderboardSpec) -> Path:
    if args.out:
        return Path(args.out) if Path(args.out).suffix == ".json" else Path(args.out + ".json")
    import datetime

    from engine.leaderboard import LEADERBOARDS_FOLDER
    from engine.training.run_store import default_runs_root

    root = Path(args.runs_dir) if args.runs_dir else default_runs_root()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in spec.display_name)[:40].strip("-")
    return root / LEADERBOARDS_FOLDER / f"{stamp}-{slug}.json"


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from engine.leaderboard import LeaderboardCallback, format_markdown, markdown_path, run_leaderboard

    class Progress(LeaderboardCallback):
        """Log lines, and a progress line at most every PROGRESS_EVERY_S seconds, on stderr."""

        last = 0.0

        def on_log(self, message: str) -> None:
            print(message, file=sys.stderr, flush=True)

        def on_progress(self, done: int, total: int) -> None:
            now = time.monotonic()
            if now - self.last >= PROGRESS_EVERY_S:
                self.last = now
                print(f"  {100 * done / max(total, 1):.0f}% of the leaderboard ({done} of {total} training steps "
                      "and test episodes)", file=sys.stderr, flush=True)

    spec = spec_from_args(args)
    path = output_path(args, spec)
    command = command_line(args)
    board = run_leaderboard(spec, path, runs_root=Path(args.runs_dir) if args.runs_dir else None,
                            resume=args.resume, command=command, callback=None if args.quiet else Progress())
    print(json.dumps({**board.to_dict(), "json_file": str(path), "markdown_file": str(markdown_path(path))}, indent=2)
          if args.json else format_markdown(board))
    if not args.json:
        print(f"written: {path} and {markdown_path(path)}")
    return EXIT_OK if _all_finished(board, spec) else EXIT_FAILED


def command_line(args: argparse.Namespace) -> str:
    """The command that makes this leaderboard: the options given that differ from their defaults."""
    words = ["meta-engine", "leaderboard"]
    written: set[str] = set()
    for action in args.parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in ("help", "resume", "quiet", "json") or value in (None, ""):
            continue
        if action.dest in written:  # --dataset and --root both set data.root
            continue
        written.add(action.dest)
        if value != action.default or action.dest == "algorithms":
            words += [action.option_strings[0], str(value)]
    return " ".join(shlex.quote(word) for word in words)


def _all_finished(board: Leaderboard, spec: LeaderboardSpec) -> bool:
    return len(board.rows) == len(spec.algorithms) and all(row.status == "finished" for row in board.rows)
