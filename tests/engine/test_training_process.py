"""Training in a child process (engine.training.process): the same reports and control as in a thread,
the data set shared rather than decoded again, and failures contained."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from engine.config import RunConfig
from engine.data.dataset import load_data
from engine.errors import EngineError, RunForceStopped, TrainingError
from engine.training import run_store as rs
from engine.training.callbacks import Callback, RunSummary, StepMetrics
from engine.training.checkpoint import load_checkpoint
from engine.training.control import RunControl
from engine.race import RaceJob
from engine.training.process import TrainingJob, TrainingProcess, _PipeCallback, describe_exit
from engine.training.trainer import Trainer

from .helpers import HangingJob, tiny_config


class Reports(Callback):
    """What a run reported, in the thread that replays it; ``at_step(step)`` runs after each step."""

    def __init__(self, at_step: Callable[[int], None] = lambda step: None) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.validations: list[int] = []
        self.logs: list[str] = []
        self.ends: list[Any] = []
        self.events: list[tuple[str, Any]] = []  # steps and pause acknowledgements, in order
        self._at_step = at_step

    def on_step(self, metrics: StepMetrics) -> None:
        self.steps.append(metrics.step)
        self.events.append(("step", metrics.step))
        self.losses.append(metrics.loss)
        self._at_step(metrics.step)

    def on_validation(self, result: Any) -> None:
        self.validations.append(result.step)

    def on_log(self, message: str, level: str = "info") -> None:
        self.logs.append(message)

    def on_finished(self, summary: RunSummary) -> None:
        self.ends.append(summary)

    def on_failed(self, message: str, summary: RunSummary) -> None:
        self.ends.append(message)

    def on_held(self, held: bool) -> None:
        self.events.append(("held", held))


WAIT_S = 120.0  # the longest a test waits for a child's step (a loaded CI machine takes seconds, not minutes)


def wait_until(condition: Callable[[], bool], what: str, run_over: threading.Event,
               timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if the run ends first or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if run_over.is_set():
            raise AssertionError(f"the run ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.01)


class Driver:
    """The GUI's buttons, from another thread: ``drive(run_over)`` runs there; :meth:`finish` (after the
    run returned or raised) tells it the run is over, waits for it and raises what it raised. When
    ``drive`` fails, ``process`` is ended, so the test fails at once with why rather than at its timeout."""

    def __init__(self, drive: Callable[[threading.Event], None], process: TrainingProcess) -> None:
        self.run_over = threading.Event()
        self._errors: list[BaseException] = []
        self._process = process
        self._thread = threading.Thread(target=self._run, args=(drive,), daemon=True)
        self._thread.start()

    def _run(self, drive: Callable[[threading.Event], None]) -> None:
        try:
            drive(self.run_over)
        except BaseException as error:  # handed to the test's thread by finish()
            self._errors.append(error)
            self._process.kill()

    def finish(self) -> None:
        self.run_over.set()
        self._thread.join(timeout=WAIT_S)
        assert not self._thread.is_alive(), f"the driver thread still runs {WAIT_S:.0f} s after the run ended"
        if self._errors:
            raise self._errors[0]


def _config(root: Path, steps: int, **train: Any) -> RunConfig:
    config = tiny_config(root, steps=steps)
    config.train.num_threads = 1
    for field, value in train.items():
        setattr(config.train, field, value)
    return config


def test_a_child_trains_the_same_run_as_this_process_and_reports_every_step(tiny_flat: Path, tmp_path: Path) -> None:
    config = _config(tiny_flat, steps=8)
    here = Reports()
    Trainer(config, run_dir=tmp_path / "here", callbacks=[here]).run()
    child, process = Reports(), TrainingProcess()
    data = load_data(config.data)  # decoded here, shared with the child
    summary = process.run(TrainingJob(config, tmp_path / "child", data), child)
    assert summary.status == "finished" and summary.steps_done == 8 and child.ends == [summary]
    assert child.steps == list(range(1, 9)) and child.validations == here.validations == [4, 8]
    assert child.losses == pytest.approx(here.losses, rel=1e-6)
    assert any("training" in line for line in child.logs)
    assert process.exitcode == 0 and process.pid not in (None, os.getpid())
    record = rs.RunStore(tmp_path).record(tmp_path / "child")
    assert (record.status, record.steps_done) == ("finished", 8)


def test_pause_resume_and_stop_reach_the_child(tiny_flat: Path, tmp_path: Path) -> None:
    process = TrainingProcess()
    reports = Reports()
    seen: dict[str, int] = {}

    def drive(run_over: threading.Event) -> None:  # the GUI's buttons, from another thread
        wait_until(lambda: len(reports.steps) >= 3, "step 3", run_over)
        process.control.pause()
        wait_until(lambda: ("held", True) in reports.events, "the pause taking hold", run_over)
        seen["paused"] = len(reports.steps)  # the steps before the hold were replayed before it
        assert process.held
        process.control.resume()
        wait_until(lambda: len(reports.steps) >= seen["paused"] + 3, "three steps after resume", run_over)
        process.control.stop()

    driver = Driver(drive, process)
    try:
        summary = process.run(TrainingJob(_config(tiny_flat, 100_000, val_every=0, checkpoint_every=100_000),
                                          tmp_path / "run"), reports)
    finally:
        driver.finish()
    held_at = reports.events.index(("held", True))
    assert reports.events[held_at - 1:held_at + 3] == [  # no step while held, none lost around it
        ("step", seen["paused"]), ("held", True), ("held", False), ("step", seen["paused"] + 1)]
    assert summary.status == "stopped" and reports.steps == list(range(1, summary.steps_done + 1))
    assert summary.steps_done >= seen["paused"] + 3
    assert (tmp_path / "run" / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT).is_file()  # stopping saves a checkpoint


def test_a_killed_child_fails_the_run_saying_how_and_the_run_can_be_continued(tiny_flat: Path,
                                                                              tmp_path: Path) -> None:
    process = TrainingProcess()
    run_dir = tmp_path / "run"
    config = _config(tiny_flat, 100_000, checkpoint_every=2, val_every=0)

    def kill_at(step: int) -> None:
        if step == 5:  # after the checkpoint of step 4
            os.kill(process.pid, signal.SIGKILL)

    with pytest.raises(TrainingError, match="killed by SIGKILL"):
        process.run(TrainingJob(config, run_dir), Reports(kill_at))
    assert process.exitcode == -signal.SIGKILL
    assert rs.RunStore(tmp_path).record(run_dir).status == "interrupted"
    checkpoint_step = load_checkpoint(run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT).step
    assert checkpoint_step >= 4
    again = TrainingProcess()
    resumed = Reports(lambda step: again.control.stop())
    assert again.run(TrainingJob(resume_from=run_dir), resumed).status == "stopped"
    assert resumed.steps[0] == checkpoint_step + 1


def test_a_run_the_child_cannot_start_raises_the_engine_message(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no checkpoint to resume from"):
        TrainingProcess().run(TrainingJob(resume_from=tmp_path / "no-run"), Callback())


def test_when_nobody_listens_the_child_stops_its_run() -> None:
    class ClosedPipe:
        def send(self, message: object) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    control = RunControl()
    callback = _PipeCallback(ClosedPipe(), control)  # type: ignore[arg-type]
    callback.on_log("a step")
    assert control.stop_requested  # the trainer ends after the current step, with a checkpoint


def test_exit_codes_read_as_words() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL (perhaps out of memory)"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"


def test_a_pickled_image_store_leaves_its_per_class_views_behind(tiny_flat: Path) -> None:
    store = load_data(tiny_config(tiny_flat).data).store
    expected = [indices.tolist() for indices in store.indices_by_class()]
    clone = pickle.loads(pickle.dumps(store))
    assert clone._by_class is None  # one shared tensor per field, not one per class
    assert [indices.tolist() for indices in clone.indices_by_class()] == expected


def test_a_child_started_ahead_trains_the_job_it_is_given(tiny_flat: Path, tmp_path: Path) -> None:
    process = TrainingProcess().start()  # imports PyTorch while nothing is asked of it
    waiting = process.pid
    assert process.is_alive()
    summary = process.run(TrainingJob(_config(tiny_flat, 4), tmp_path / "run"), Reports())
    assert summary.status == "finished" and process.pid == waiting and process.exitcode == 0
    with pytest.raises(RuntimeError, match="one job"):
        process.run(TrainingJob(_config(tiny_flat, 4), tmp_path / "again"), Reports())


def test_a_spare_not_needed_is_ended_and_a_dead_one_fails_its_run_clearly(tiny_flat: Path, tmp_path: Path) -> None:
    spare = TrainingProcess().start()
    spare.close()
    assert not spare.is_alive() and spare.exitcode == -signal.SIGKILL
    dead = TrainingProcess().start()
    os.kill(dead.pid, signal.SIGKILL)
    with pytest.raises(TrainingError, match="ended unexpectedly .killed by SIGKILL"):
        dead.run(TrainingJob(_config(tiny_flat, 4), tmp_path / "run"), Reports())


class _CannotShare:
    def __reduce__(self) -> Any:
        raise RuntimeError("unable to write to file </torch_1_2_3>: No space left on device (28)")


def test_data_that_cannot_be_shared_is_loaded_by_the_child_and_the_user_is_told(tiny_flat: Path,
                                                                                tmp_path: Path) -> None:
    reports = Reports()
    job = TrainingJob(_config(tiny_flat, 2), tmp_path / "run", data=_CannotShare())  # type: ignore[arg-type]
    assert TrainingProcess().run(job, reports).status == "finished"
    assert any("could not be shared" in line and "No space left" in line for line in reports.logs)
    assert any(line.startswith("loading data set") for line in reports.logs)  # the child loaded it


def test_a_run_that_ignores_stop_is_ended_on_request_saying_what_is_lost(tiny_flat: Path, tmp_path: Path) -> None:
    process = TrainingProcess()
    run_dir = tmp_path / "run"
    config = _config(tiny_flat, 100_000, checkpoint_every=2, val_every=0)
    asked: dict[str, float] = {}

    def stop_then_kill(run_over: threading.Event) -> None:  # the window's Stop, then its Force stop
        wait_until(lambda: process.last_step >= 5, "step 5", run_over)  # then its step hangs for an hour
        process.control.stop()
        asked["alive after stop"] = process.is_alive()
        asked["killed"] = process.kill()
        asked["at"] = time.monotonic()

    driver = Driver(stop_then_kill, process)
    try:
        with pytest.raises(RunForceStopped, match="ended on request after step 5; the run keeps its checkpoint "
                                                  "of step 4 and can be continued"):
            process.run(HangingJob(config, run_dir, hang_at=5), Reports())
        returned = time.monotonic()
    finally:
        driver.finish()
    assert asked["alive after stop"] and asked["killed"]  # the hung step never saw the stop flag
    assert returned - asked["at"] < 10  # run() returned once the child was ended, not after its hour
    assert process.exitcode == -signal.SIGKILL and not process.kill()  # nothing left to end
    assert rs.RunStore(tmp_path).record(run_dir).status == "interrupted"
    assert load_checkpoint(run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT).step == 4


def test_a_run_ended_before_it_starts_never_trains(tiny_flat: Path, tmp_path: Path) -> None:
    process = TrainingProcess()
    assert process.kill()  # e.g. Force stop while the window still loads the data set
    with pytest.raises(RunForceStopped, match="before it started"):
        process.run(TrainingJob(_config(tiny_flat, 4), tmp_path / "run"), Reports())
    assert process.pid is None and not (tmp_path / "run").exists()
    spare = TrainingProcess().start()
    assert spare.kill()
    with pytest.raises(RunForceStopped, match="before it started"):
        spare.run(TrainingJob(_config(tiny_flat, 4), tmp_path / "run"), Reports())
    assert spare.exitcode == -signal.SIGKILL and not (tmp_path / "run").exists()


class RaceReports:
    """What a race reported through the pipe; ``stop_after`` steps stop it through ``control``."""

    def __init__(self, control: RunControl | None = None, stop_after: int = 0) -> None:
        self.steps: list[tuple[str, int]] = []
        self.hooks: list[str] = []
        self.results: list[Any] = []
        self._control, self._stop_after = control, stop_after

    def __getattr__(self, hook: str) -> Callable[..., None]:
        if not hook.startswith("on_"):
            raise AttributeError(hook)
        return lambda *arguments: self.hooks.append(hook)

    def on_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None:
        self.steps.append((algorithm, metrics.step))
        if self._control is not None and len(self.steps) == self._stop_after:
            self._control.stop()

    def on_race_finished(self, result: Any) -> None:
        self.results.append(result)


def _race_config(root: Path, steps: int) -> Any:
    from engine.race import RaceConfig

    return RaceConfig.from_run_config(_config(root, steps), ["protonet", "simpleshot"], test_episodes=3)


def test_a_race_runs_in_the_child_and_returns_its_result(tiny_flat: Path, tmp_path: Path) -> None:
    config = _race_config(tiny_flat, steps=4)
    process, reports = TrainingProcess(), RaceReports()
    result = process.run(RaceJob(config, tmp_path / "race", load_data(config.data)), reports)
    assert result.status == "finished" and reports.results == [result]
    assert sorted(reports.steps) == [(name, step) for name in ("protonet", "simpleshot") for step in range(1, 5)]
    assert reports.hooks[0] == "on_race_start" and reports.hooks.count("on_algorithm_finished") == 2
    assert [row.algorithm for row in result.rows] == ["protonet", "simpleshot"]
    assert process.exitcode == 0 and process.pid not in (None, os.getpid())


def test_a_race_in_the_child_stops_when_asked(tiny_flat: Path, tmp_path: Path) -> None:
    process = TrainingProcess()
    reports = RaceReports(process.control, stop_after=3)
    result = process.run(RaceJob(_race_config(tiny_flat, steps=100_000), tmp_path / "race"), reports)
    assert result.status == "stopped" and len(reports.steps) < 100
    assert {row.status for row in result.rows} == {"stopped"}


def test_the_pipe_forwards_every_hook_of_the_job_protocol() -> None:
    from engine.race import RaceCallback

    class Pipe:
        def __init__(self) -> None:
            self.sent: list[Any] = []

        def send(self, message: object) -> None:
            self.sent.append(message)

    pipe = Pipe()
    callback = _PipeCallback(pipe, RunControl(), RaceCallback)  # type: ignore[arg-type]
    callback.on_log("hello")
    callback.on_validation("maml", "result", 1.5)
    assert pipe.sent == [("hook", "on_log", ("hello", "info")), ("hook", "on_validation", ("maml", "result", 1.5))]
    with pytest.raises(AttributeError):
        callback.on_checkpoint  # a run's hook, not a race's
