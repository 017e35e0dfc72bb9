"""The leaderboard's table: one row per algorithm (its accuracies with 95% CI at each shot, training time,
peak memory, its run folder, or why it failed), as versioned JSON (:data:`FILE_FORMAT`) and as Markdown."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.io import atomic_write_json, atomic_write_text, read_format_json

FILE_FORMAT = "meta-studio-leaderboard"
FILE_VERSION = 1
LEADERBOARDS_FOLDER = "leaderboards"
"""Where leaderboards live under a runs root (``<root>/leaderboards/*.json``; not a run folder)."""
MIB = 1024 * 1024


@dataclass
class ShotResult:
    """Accuracy (a fraction) with its 95% CI half-width on one setting's seeded test episodes."""

    n_way: int
    n_shot: int
    episodes: int
    seed: int
    accuracy: float | None = None
    ci95: float | None = None

    @property
    def key(self) -> str:
        return f"{self.n_way}-way {self.n_shot}-shot"


@dataclass
class LeaderboardRow:
    """One algorithm's line. status: finished, failed (``message`` says why) or stopped."""

    algorithm: str
    title: str
    kind: str = ""
    transductive: bool = False
    paper: str = ""
    status: str = "failed"
    steps_done: int = 0
    total_steps: int = 0
    train_seconds: float = 0.0
    peak_memory_bytes: int | None = None
    memory_method: str = ""
    results: list[ShotResult] = field(default_factory=list)
    run_dir: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def result(self, n_shot: int) -> ShotResult | None:
        return next((r for r in self.results if r.n_shot == n_shot), None)

    def accuracy(self, n_shot: int) -> float | None:
        found = self.result(n_shot)
        return None if found is None else found.accuracy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "LeaderboardRow":
        values = {key: raw[key] for key in cls.__dataclass_fields__ if key in raw}
        values["results"] = [ShotResult(**r) for r in raw.get("results", [])]
        return cls(**values)


@dataclass
class Leaderboard:
    """The whole table and what it was measured on."""

    name: str
    settings: dict[str, Any]
    rows: list[LeaderboardRow] = field(default_factory=list)
    device: str = "cpu"
    test_classes: str = ""
    created: str = ""
    duration_s: float = 0.0
    command: str = ""

    @property
    def shots(self) -> list[int]:
        return list(self.settings.get("shots", []))

    def row(self, algorithm: str) -> LeaderboardRow | None:
        return next((r for r in self.rows if r.algorithm == algorithm), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FILE_FORMAT, "version": FILE_VERSION, "name": self.name, "created": self.created,
                "device": self.device, "test_classes": self.test_classes, "duration_s": self.duration_s,
                "command": self.command, "settings": self.settings, "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Leaderboard":
        return cls(name=str(raw.get("name", "")), settings=dict(raw.get("settings", {})),
                   rows=[LeaderboardRow.from_dict(r) for r in raw.get("rows", [])], device=str(raw.get("device", "")),
                   test_classes=str(raw.get("test_classes", "")), created=str(raw.get("created", "")),
                   duration_s=float(raw.get("duration_s", 0.0)), command=str(raw.get("command", "")))


def load_leaderboard(path: Path | str) -> Leaderboard:
    """A leaderboard JSON file; EngineError naming the file when it is missing or damaged."""
    path = Path(path)
    try:
        raw = read_format_json(path, FILE_FORMAT, FILE_VERSION, "leaderboard file")
    except FileNotFoundError:
        raise EngineError(f"{path}: leaderboard file not found") from None
    try:
        return Leaderboard.from_dict(raw)
    except (TypeError, ValueError, KeyError) as error:
        raise EngineError(f"{path}: damaged leaderboard file ({error})") from None


def latest_leaderboard(runs_root: Path | str) -> Path | None:
    """The newest leaderboard JSON under ``<runs_root>/leaderboards``, or None."""
    folder = Path(runs_root) / LEADERBOARDS_FOLDER
    try:
        files = [p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith(".")]
    except OSError:
        return None
    return max(files, key=lambda p: (p.stat().st_mtime, p.name)) if files else None


def markdown_path(json_path: Path) -> Path:
    """The Markdown table written next to a leaderboard's JSON file (same name, ``.md``)."""
    return json_path.with_suffix(".md")


def save_leaderboard(board: Leaderboard, json_path: Path) -> tuple[Path, Path]:
    """Write the JSON file and the Markdown table next to it (both atomically); returns both paths."""
    atomic_write_json(json_path, board.to_dict())
    md = markdown_path(json_path)
    atomic_write_text(md, format_markdown(board))
    return json_path, md


def format_shot_accuracy(result: ShotResult | None) -> str:
    """"95.11% ± 0.46%", or "-" when there is no accuracy."""
    if result is None or result.accuracy is None or not math.isfinite(result.accuracy):
        return "-"
    return f"{100 * result.accuracy:.2f}% ± {100 * (result.ci95 or 0.0):.2f}%"


def format_peak_memory(row: LeaderboardRow) -> str:
    return "-" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / MIB:.1f} MiB"


def format_train_time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def sorted_rows(board: Leaderboard) -> list[LeaderboardRow]:
    """Rows by their first shot's accuracy, best first (rows without one last, in their order)."""
    first = board.shots[0] if board.shots else 1
    return sorted(board.rows, key=lambda r: -(r.accuracy(first) if r.accuracy(first) is not None else -1.0))


def format_markdown(board: Leaderboard) -> str:
    """The leaderboard as a Markdown table, with what it measured under it."""
    settings = board.settings
    n_way = settings.get("n_way", 5)
    header = ["algorithm", "kind"] + [f"{n_way}-way {shot}-shot" for shot in board.shots] + \
             ["train time", "peak memory", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted_rows(board):
        cells = [row.title, row.kind + (" (transductive)" if row.transductive and row.kind != "transductive" else "")]
        cells += [format_shot_accuracy(row.result(shot)) for shot in board.shots]
        status = row.status if not row.message else f"{row.status}: {row.message}"
        cells += [format_train_time(row.train_seconds), format_peak_memory(row), status.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", f"**{board.name}**: {settings.get('common', {}).get('train', {}).get('steps', '?')} training steps "
                 f"per algorithm, each with its recipe, on {board.device}; test: the same {settings.get('episodes')} "
                 f"seeded episodes (seed {settings.get('seed')}) for every algorithm at each shot, "
                 f"{settings.get('n_query')} queries per class, on {board.test_classes or 'the test classes'}. "
                 "Accuracy ± 95% confidence interval; train time: seconds in training steps; "
                 "peak memory: see the JSON's memory_method."]
    if board.command:
        notes += ["", "```bash", board.command, "```"]
    return "\n".join(lines + notes) + "\n"
