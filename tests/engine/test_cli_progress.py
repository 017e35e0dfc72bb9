"""The CLI's tqdm progress (engine.cli.progress): plain periodic lines when stderr is not a terminal, one
redrawn line on a terminal, nothing with --quiet."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from engine.cli import main
from engine.cli.race import RaceProgress
from engine.cli.regression import _RegressionProgress
from engine.cli.train import ProgressBar
from engine.race import RaceInfo
from engine.training.callbacks import RunInfo, RunSummary, StepMetrics, ValidationResult

from .helpers import tiny_config

CONTROL = re.compile(r"[\r\x1b]")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_bar(stream: io.StringIO, every_s: float, steps: int = 4) -> list[str]:
    bar = ProgressBar(stream, every_s=every_s)
    bar.on_run_start(RunInfo(Path("/runs/r"), steps, 0, "cpu", 10, 3, 3))
    for step in range(1, steps + 1):
        bar.on_step(StepMetrics(step, steps, 1.0 / step, 0.5, 1e-3, 20.0, step * 0.1, (steps - step) * 0.1))
        if step == 2:
            bar.on_validation(ValidationResult(2, 0.61, 0.02, 5, True))
    bar.on_finished(RunSummary(Path("/runs/r"), "finished", steps, 0.61, 2, 0.5))
    return stream.getvalue().splitlines()


def test_not_a_terminal_every_update_is_a_plain_line_with_rate_and_eta() -> None:
    stream = io.StringIO()
    lines = run_bar(stream, every_s=0)
    assert not CONTROL.search(stream.getvalue())
    bar_lines = [line for line in lines if line.startswith("train: ")]
    assert [line.split()[1] for line in bar_lines] == ["0/4", "1/4", "2/4", "3/4", "4/4", "4/4"]
    assert re.search(r"train: 3/4 \( 75%\) elapsed \d\d:\d\d, eta \d\d:\d\d, .*(step/s|s/step), loss 0.333 acc 0.500 "
                     r"\| val 61.0% \+- 2.0", bar_lines[3]), bar_lines[3]
    assert "step 2: validation accuracy 61.00% +- 2.00%" in lines
    assert lines[0].startswith("run folder: /runs/r") and lines[-1].startswith("finished: 4 steps")


def test_not_a_terminal_lines_are_periodic() -> None:
    lines = run_bar(io.StringIO(), every_s=3600)
    assert [line.split()[1] for line in lines if line.startswith("train: ")] == ["0/4", "4/4"]


def test_on_a_terminal_the_bar_redraws_one_line() -> None:
    stream = FakeTerminal()
    run_bar(stream, every_s=0)
    text = stream.getvalue()
    assert text.count("\r") >= 5 and "4/4" in text
    bar_text = text.split("run folder: /runs/r")[1]
    assert bar_text.count("\n") <= 3  # validation and summary lines are not printed as bar lines


def test_race_and_regression_bars_print_plain_lines() -> None:
    stream = io.StringIO()
    race = RaceProgress(stream, every_s=0)
    race.on_race_start(RaceInfo(None, "r", ["protonet", "maml"], 2, "cpu", {"protonet": "a", "maml": "a"}, 5, 3))
    for step in (1, 2):
        for name in ("protonet", "maml"):
            race.on_step(name, StepMetrics(step, 2, 1.0, 0.5, 1e-3, 10.0, 0.1, 0.1), 0.1)
    race.close()
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("race: ")]
    assert lines[-1].startswith("race: 4/4 (100%)") and "protonet 2 acc 0.500 | maml 2 acc 0.500" in lines[-1]
    stream = io.StringIO()
    regression = _RegressionProgress(quiet=False, stream=stream, every_s=0)
    for done in range(1, 5):
        regression(done, 4)
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["MAML: 0/2", "MAML: 1/2", "MAML: 2/2", "MAML: 2/2",
                                                       "pre-trained: 0/2", "pre-trained: 1/2", "pre-trained: 2/2",
                                                       "pre-trained: 2/2"]
    assert not CONTROL.search(stream.getvalue())


def test_meta_engine_train_shows_the_bar_as_lines_and_nothing_with_quiet(tiny_flat: Path, tmp_path: Path,
                                                                        capsys) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(tiny_flat, steps=4).to_dict()))
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^train: 4/4 \(100%\)", err, re.MULTILINE) and not CONTROL.search(err), err
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
