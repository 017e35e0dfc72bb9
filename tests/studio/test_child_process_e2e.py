"""The window and its real training child process, end to end: the child killed mid-run."""

from __future__ import annotations

import os
import signal

from engine.training.checkpoint import load_checkpoint
from engine.training.run_store import RunStore
from studio.panels.runs_panel import COLUMNS
from tests.studio.conftest import TINY, set_fields

STATUS = COLUMNS.index("Status")
LONG = {**TINY, "train.steps": 100_000, "train.val_every": 0, "train.checkpoint_every": 2}


def test_a_child_killed_mid_run_fails_the_run_saying_how_and_the_window_goes_on(window, qtbot):
    set_fields(window, LONG)
    worker = window.start_training()
    checkpoints: list[int] = []
    worker.checkpoint.connect(lambda info: checkpoints.append(info.step))
    qtbot.waitUntil(lambda: len(checkpoints) >= 2, timeout=120_000)  # steps 2 and 4 are on disk
    run_dir = window.current_run_dir
    child = worker.process
    assert child is not None and child.pid not in (None, os.getpid())  # the real child, not a thread
    with qtbot.waitSignal(window.training_ended, timeout=60_000) as ended:
        os.kill(child.pid, signal.SIGKILL)  # as the out-of-memory killer would
    assert ended.args == ["failed"]
    qtbot.waitUntil(lambda: window.worker is None, timeout=60_000)
    assert child.exitcode == -signal.SIGKILL
    [(title, message)] = window.shown_errors
    assert title == "Training failed"
    assert "killed by SIGKILL (perhaps out of memory)" in message and "can be continued" in message
    assert "failed" in window.training_panel.progress.format()
    record = RunStore(window.store.root).record(run_dir)
    assert record.status == "interrupted"  # nobody trains it any more, and it can be continued
    assert window.runs_panel.table.item(window.runs_panel.row_of(run_dir), STATUS).text() == "interrupted"
    kept = load_checkpoint(record.last_checkpoint).step
    assert kept >= checkpoints[1] and kept % 2 == 0
    assert window.training_panel.train_button.isEnabled()  # the window stays usable: continue the run
    continued = window.resume_run(record)
    assert continued is not None and continued.process is not child
    with qtbot.waitSignal(window.training_ended, timeout=120_000) as ended:
        qtbot.waitUntil(lambda: window.last_step > kept, timeout=120_000)
        window.stop_training()
    assert ended.args == ["stopped"]
    qtbot.waitUntil(lambda: window.worker is None, timeout=60_000)
    again = RunStore(window.store.root).record(run_dir)
    assert again.status == "stopped" and again.steps_done > kept
