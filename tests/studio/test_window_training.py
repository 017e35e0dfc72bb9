"""Training from the window: live plots, pause/resume/stop, errors, closing mid-run."""

from __future__ import annotations

import time

from engine.errors import TrainingError
from engine.training.run_store import RunStore
from studio.panels.runs_panel import COLUMNS
from studio.worker import TRAINING_PROCESS_ENV
from tests.studio.conftest import TINY, set_fields, train_tiny

STATUS = COLUMNS.index("Status")

LONG = {**TINY, "train.steps": 100_000, "train.val_every": 0, "train.checkpoint_every": 100_000}


def _wait_steady(qtbot, window, quiet_ms: int = 700, timeout: int = 30_000) -> int:
    """Wait until no new step arrived for ``quiet_ms``; returns the last step."""
    state = {"step": -1, "since": time.monotonic()}

    def steady() -> bool:
        if window.last_step != state["step"]:
            state["step"], state["since"] = window.last_step, time.monotonic()
            return False
        return time.monotonic() - state["since"] >= quiet_ms / 1000

    qtbot.waitUntil(steady, timeout=timeout)
    return window.last_step


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
    window.start_training()
    qtbot.waitUntil(lambda: window.last_step >= 3, timeout=120_000)
    window.toggle_pause()
    assert window.training_panel.state == "paused"
    assert window.training_panel.pause_button.text() == "Resume"
    paused_at = _wait_steady(qtbot, window)
    qtbot.wait(1000)
    assert window.last_step == paused_at, "steps advanced while paused"
    window.toggle_pause()
    assert window.training_panel.state == "running"
    qtbot.waitUntil(lambda: window.last_step > paused_at + 2, timeout=60_000)
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
    from tests.studio.conftest import make_window

    win = make_window(qtbot)
    set_fields(win, LONG)
    worker = win.start_training()
    qtbot.waitUntil(lambda: win.last_step >= 2, timeout=120_000)
    run_dir = win.current_run_dir
    win.close()
    assert not worker.is_running()
    record = RunStore(run_dir.parent).record(run_dir)
    assert record.status == "stopped"
    assert record.last_checkpoint.is_file()
    assert record.steps_done >= 2


def test_the_app_window_trains_in_a_process_started_ahead_and_prepares_the_next(qtbot, monkeypatch):
    import studio.worker as worker_module
    from tests.studio.conftest import make_window

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
