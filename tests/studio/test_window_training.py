"""Training from the window: live plots, pause/resume/stop, errors, closing mid-run."""

from __future__ import annotations

import signal
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.errors import TrainingError
from engine.training.checkpoint import load_checkpoint
from engine.training.run_store import RunStore
from studio.panels.runs_panel import COLUMNS
from studio.jobs.engine_run import TRAINING_PROCESS_ENV
from tests.studio.conftest import TINY, ManualClock, make_window, set_fields, train_tiny

STATUS = COLUMNS.index("Status")

LONG = {**TINY, "train.steps": 100_000, "train.val_every": 0, "train.checkpoint_every": 100_000}


def test_short_training_feeds_the_plots(window, qtbot):
    workers = []
    window.training_started.connect(lambda run_dir: workers.append(window.worker))
    status = train_tiny(qtbot, window)
    assert status == "finished"
    assert workers[0].process is not None and workers[0].process.exitcode == 0  # trained in a child process
    plots = window.plots
    assert window.steps_received == 20 and plots.n_points == 20
    x, y = plots.loss_curve.getData()
    assert list(x) == list(range(1, 21)) and len(y) == 20
    assert len(plots.val_curve.getData()[0]) == 2  # validations at steps 10 and 20
    upper, lower = plots.val_upper.getData()[1], plots.val_lower.getData()[1]
    assert (upper >= lower).all()
    assert "finished at step 20" in window.training_panel.progress.format()
    record = window.store.list_runs()[0]
    assert record.status == "finished" and record.steps_done == 20
    assert window.runs_panel.table.rowCount() == 1
    assert window.runs_panel.table.item(0, STATUS).text() == "finished"
    assert "validation at step 10" in window.log_panel.text()
    assert window.training_panel.train_button.isEnabled()


def test_pause_resume_and_stop(window, qtbot):
    set_fields(window, LONG)
    worker = window.start_training()
    qtbot.waitUntil(lambda: window.last_step >= 3, timeout=120_000)
    with qtbot.waitSignal(worker.held, timeout=60_000, check_params_cb=lambda held: held):  # the child's word
        window.toggle_pause()
        assert window.training_panel.state == "paused"
        assert window.training_panel.pause_button.text() == "Resume"
    paused_at = window.last_step
    assert paused_at == worker.process.last_step  # every step trained arrived before the acknowledgement
    steps = lambda: window.runs_panel.table.item(0, COLUMNS.index("Steps")).text()  # noqa: E731
    qtbot.waitUntil(lambda: steps() == f"{paused_at:,} / 100,000", timeout=10_000)  # the runs table
    # follows the run, not run.json: at most once a second, and the paused run's row ends on its last step
    after_hold: list[int] = []
    worker.steps.connect(lambda batch: after_hold.extend(m.step for m in batch))
    with qtbot.waitSignal(worker.held, timeout=60_000, check_params_cb=lambda held: not held):
        window.toggle_pause()
    assert window.training_panel.state == "running"
    qtbot.waitUntil(lambda: window.last_step > paused_at + 2, timeout=60_000)
    assert after_hold[0] == paused_at + 1  # the run went on from where the pause held it
    with qtbot.waitSignal(window.training_ended, timeout=60_000) as ended:
        window.stop_training()
    assert ended.args == ["stopped"]
    qtbot.waitUntil(lambda: window.worker is None, timeout=60_000)
    record = RunStore(window.store.root).list_runs()[0]
    assert record.status == "stopped"
    assert record.last_checkpoint.is_file()
    assert record.steps_done == window.last_step
    assert window.runs_panel.table.item(0, STATUS).text() == "stopped"


def test_worker_error_shows_the_engine_message_and_marks_the_run_failed(window, qtbot, monkeypatch):
    message = "the loss became nan at step 3; training stopped there"

    def broken_step(self, step):
        if step == 3:
            raise TrainingError(message)
        return original(self, step)

    from engine.training.trainer import Trainer

    original = Trainer._train_step
    monkeypatch.setattr(Trainer, "_train_step", broken_step)
    monkeypatch.setenv(TRAINING_PROCESS_ENV, "0")  # the patched trainer exists in this process only
    status = train_tiny(qtbot, window)
    assert status == "failed"
    assert window.shown_errors == [("Training failed", message)]
    record = window.store.list_runs()[0]
    assert record.status == "failed" and message in record.message
    assert window.runs_panel.table.item(0, STATUS).text() == "failed"
    assert window.training_panel.train_button.isEnabled()  # the window stays usable
    assert "failed" in window.training_panel.progress.format()


def test_closing_the_window_mid_run_stops_it_and_keeps_the_checkpoint(qtbot):
    win = make_window(qtbot)
    set_fields(win, LONG)
    worker = win.start_training()
    qtbot.waitUntil(lambda: win.last_step >= 2, timeout=120_000)
    run_dir = win.current_run_dir
    child = worker.process
    win.close()
    assert not worker.is_running() and not child.is_alive()
    assert child.exitcode == 0 and not worker.force_stopped  # it checkpointed and exited by itself
    record = RunStore(run_dir.parent).record(run_dir)
    assert record.status == "stopped"
    assert record.last_checkpoint.is_file()
    assert record.steps_done >= 2
    assert load_checkpoint(record.last_checkpoint).step == record.steps_done  # the step it stopped at


def test_the_app_window_trains_in_a_process_started_ahead_and_prepares_the_next(qtbot, monkeypatch):
    import studio.jobs.spare as worker_module
    monkeypatch.setattr(worker_module, "SPARE_DELAY_MS", 50)
    win = make_window(qtbot, warm_training_process=True)
    qtbot.waitUntil(lambda: win.spare_process.process is not None, timeout=10_000)
    spare = win.spare_process.process
    workers = []
    win.training_started.connect(lambda run_dir: workers.append(win.worker))
    assert train_tiny(qtbot, win) == "finished"
    assert workers[0].process is spare and spare.exitcode == 0  # the run trained in the spare
    qtbot.waitUntil(lambda: win.spare_process.process is not None, timeout=10_000)  # one for the next run
    following = win.spare_process.process
    assert following is not spare and following.is_alive()
    win.close()
    assert not following.is_alive()  # closing the window ends the spare


def _hang_at(monkeypatch, step: int) -> None:
    """Runs the window starts hang after reporting ``step`` (their step never returns) in their process."""
    import dataclasses

    from studio.jobs.engine_run import TrainingWorker
    from tests.engine.helpers import HangingJob

    make_job = TrainingWorker._make_job

    def hanging_job(self):
        job = make_job(self)
        return HangingJob(**{f.name: getattr(job, f.name) for f in dataclasses.fields(job)}, hang_at=step)

    monkeypatch.setattr(TrainingWorker, "_make_job", hanging_job)


def _clocked_window(qtbot: Any, monkeypatch: Any) -> tuple[Any, ManualClock]:
    """A window whose Force stop delay runs on a manual clock (the real 3 s, in no time)."""
    from studio.panels.training_panel import TrainingPanel

    clock = ManualClock()
    monkeypatch.setattr(TrainingPanel, "timer_factory", clock.timer)
    return make_window(qtbot), clock


def test_a_run_that_does_not_stop_can_be_force_stopped_after_3_s_and_continued(qtbot, monkeypatch):
    window, clock = _clocked_window(qtbot, monkeypatch)
    _hang_at(monkeypatch, 5)
    set_fields(window, {**LONG, "train.checkpoint_every": 2})
    worker = window.start_training()
    qtbot.waitUntil(lambda: window.last_step == 5, timeout=120_000)
    stop = window.training_panel.stop_button
    QTest.mouseClick(stop, Qt.MouseButton.LeftButton)
    assert window.training_panel.state == "stopping" and not stop.isEnabled()  # no second click at once
    window.stop_training()  # Ctrl+. again does not force anything
    clock.advance(2_999)
    assert stop.text() == "Stop" and not stop.isEnabled()  # not before 3 s: a double click never forces
    clock.advance(1)
    assert stop.isEnabled() and stop.text() == "Force stop"
    assert worker.is_running()  # the hung step never saw the stop flag
    with qtbot.waitSignal(window.training_ended, timeout=30_000) as ended:
        QTest.mouseClick(stop, Qt.MouseButton.LeftButton)
    assert ended.args == ["stopped"] and window.shown_errors == []  # asked for: no error dialog
    qtbot.waitUntil(lambda: window.worker is None, timeout=30_000)
    assert worker.process.exitcode == -signal.SIGKILL
    assert "force-stopped" in window.training_panel.rate_label.full_text()
    qtbot.waitUntil(lambda: "checkpoint of step 4" in window.log_panel.text(), timeout=5_000)  # queued
    assert stop.text() == "Stop" and window.training_panel.train_button.isEnabled()
    record = window.store.list_runs()[0]
    assert record.status == "interrupted" and record.last_checkpoint.is_file()
    monkeypatch.undo()  # the continued run trains normally
    with qtbot.waitSignal(window.training_ended, timeout=120_000):
        continued = window.resume_run(record)
        qtbot.waitUntil(lambda: window.last_step >= 6, timeout=120_000)
        continued.stop()
    assert RunStore(window.store.root).list_runs()[0].status == "stopped"


def test_force_stop_is_offered_only_while_stopping(qtbot, monkeypatch):
    """The delay restarts with each stop and is cancelled when the run ends first."""
    window, clock = _clocked_window(qtbot, monkeypatch)
    panel = window.training_panel
    panel.can_force_stop = True
    panel.set_state("stopping")
    clock.advance(2_000)
    panel.set_state("idle")  # the run stopped by itself within 3 s
    clock.advance(5_000)
    assert panel.stop_button.text() == "Stop" and not panel.stop_button.isEnabled()
    panel.set_state("running")
    panel.set_state("stopping")
    clock.advance(2_999)
    assert panel.stop_button.text() == "Stop"
    clock.advance(1)
    assert panel.stop_button.text() == "Force stop"


def test_closing_the_window_ends_a_run_that_does_not_stop_after_20_s(qtbot, monkeypatch):
    _hang_at(monkeypatch, 3)
    win = make_window(qtbot)
    clock = ManualClock(tick_s=1.0)  # every reading of the clock moves it on by a second
    win.close_clock = clock.now
    set_fields(win, LONG)
    worker = win.start_training()
    qtbot.waitUntil(lambda: win.last_step == 3, timeout=120_000)
    ended_at: list[float] = []
    force_stop = worker.force_stop
    monkeypatch.setattr(worker, "force_stop", lambda: (ended_at.append(clock.seconds), force_stop())[1])
    win.close()  # would wait for the hung step forever
    assert ended_at == [1.0 + 20]  # read first at 1 s: ended at the first reading 20 s later, not before
    assert not worker.is_running() and worker.process.exitcode == -signal.SIGKILL
