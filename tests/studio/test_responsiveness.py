"""Acceptance test of the product issue: the window stays responsive while training.

A 20 ms QTimer runs in the GUI thread during a training run on the built-in
glyphs; the longest gap between two of its ticks must stay under 100 ms.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer

from tests.studio.conftest import TINY, set_fields

MAX_GAP_S = 0.100


def test_ui_timer_keeps_ticking_while_training(window, qtbot):
    set_fields(window, {**TINY, "train.steps": 80, "train.val_every": 40, "train.val_episodes": 10})
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    with qtbot.waitSignal(window.training_ended, timeout=180_000) as ended:
        with qtbot.waitSignal(window.worker_started_steps if hasattr(window, "worker_started_steps")
                              else window.training_started, timeout=60_000):
            window.start_training()
        qtbot.waitUntil(lambda: window.steps_received > 0, timeout=120_000)
        timer.start()
    timer.stop()
    assert ended.args == ["finished"]
    assert window.steps_received == 80
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(gaps) > 10, "the UI timer barely ran"
    assert max(gaps) < MAX_GAP_S, f"the UI froze for {max(gaps) * 1000:.0f} ms (ticks: {len(ticks)})"
