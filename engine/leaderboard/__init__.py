"""The leaderboard: every chosen algorithm trained with its recommended recipe, then evaluated on the same
seeded test episodes (5-way 1-shot and 5-way 5-shot), as a JSON and Markdown table (``meta-engine leaderboard``,
the studio's Leaderboard view).

* :mod:`engine.leaderboard.spec`: what a leaderboard is (common settings, algorithms, test episodes) and how
  an algorithm's recipe (:attr:`engine.algorithms.base.Algorithm.recipe`) becomes its run config;
* :mod:`engine.leaderboard.table`: the rows, the versioned JSON file, the Markdown table;
* :mod:`engine.leaderboard.runner`: running one (each algorithm's run goes into the run store).
"""

from __future__ import annotations

from engine.leaderboard.runner import LeaderboardCallback, run_leaderboard
from engine.leaderboard.spec import DEFAULT_SHOTS, LeaderboardSpec, parse_algorithms, recipe_config
from engine.leaderboard.table import (LEADERBOARDS_FOLDER, Leaderboard, LeaderboardRow, ShotResult, format_markdown,
                                      format_peak_memory, format_shot_accuracy, format_train_time, latest_leaderboard,
                                      load_leaderboard, markdown_path, save_leaderboard)

__all__ = ["DEFAULT_SHOTS", "LEADERBOARDS_FOLDER", "Leaderboard", "LeaderboardCallback", "LeaderboardRow",
           "LeaderboardSpec", "ShotResult", "format_markdown", "format_peak_memory", "format_shot_accuracy", "format_train_time",
           "latest_leaderboard", "load_leaderboard", "markdown_path", "parse_algorithms", "recipe_config",
           "run_leaderboard", "save_leaderboard"]

