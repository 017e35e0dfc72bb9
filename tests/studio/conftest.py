"""Fixtures of the studio tests: offscreen Qt, isolated settings and run folders, a ready window.

QT_QPA_PLATFORM is set before anything imports Qt. Run folders go to a
per-test META_STUDIO_HOME (tests/conftest.py), QSettings to a per-test INI
folder under an organisation name of its own, and the built-in glyph set is
generated once per session (META_STUDIO_CACHE, tests/conftest.py) and decoded
once per session (studio.datasets keeps it in memory).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402
from typing import Any, Iterator  # noqa: E402

import pytest  # noqa: E402
import shiboken6  # noqa: E402
from PySide6.QtCore import QObject, QSettings, Signal  # noqa: E402

TINY = {
    "task.n_way": 5, "task.n_shot": 1, "task.n_query": 5, "task.meta_batch_size": 1,
    "model.hidden_channels": 16, "train.steps": 20, "train.val_every": 10, "train.val_episodes": 5,
    "train.checkpoint_every": 10, "train.num_threads": 1,
}


@pytest.fixture(autouse=True)
def studio_settings(qapp: Any, tmp_path: Path) -> Path:
    """Per-test QSettings (INI files in tmp_path) under a test-only organisation name."""
    from studio.jobs.policy import install_main_thread_gc

    install_main_thread_gc()  # as the app does: garbage (closed windows) is collected in the GUI thread
    folder = tmp_path / "settings"
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    qapp.setOrganizationName("MetaStudioTests")
    qapp.setApplicationName("MetaStudioTests")
    return folder


def set_fields(window: Any, values: dict[str, Any]) -> None:
    """Type values into the generated hyperparameter form."""
    for key, value in values.items():
        window.algorithm_panel.field(key).set_value(value)


class ManualTimer(QObject):
    """The parts of QTimer the studio's delays use, on a :class:`ManualClock`."""

    timeout = Signal()

    def __init__(self, clock: "ManualClock", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._clock = clock
        self._single_shot = False
        self.interval_ms = 0
        self.due_s: float | None = None  # when it fires on the clock; None when stopped

    def setSingleShot(self, single: bool) -> None:  # noqa: N802 (Qt)
        self._single_shot = single

    def start(self, interval_ms: int | None = None) -> None:
        self.interval_ms = self.interval_ms if interval_ms is None else interval_ms
        self.due_s = self._clock.now() + self.interval_ms / 1000

    def stop(self) -> None:
        self.due_s = None

    def isActive(self) -> bool:  # noqa: N802 (Qt)
        return self.due_s is not None

    def _fire_if_due(self) -> None:
        if self.due_s is not None and self._clock.now() >= self.due_s:
            self.due_s = None if self._single_shot else self._clock.now() + self.interval_ms / 1000
            self.timeout.emit()


class ManualClock:
    """Time that moves only when the test says so: ``now()`` in seconds, ``advance(ms)`` (firing the timers
    of :meth:`timer` that fall due), and with ``tick_s`` every reading also moves it on (for a wait that
    reads the clock in a loop, e.g. closing the window)."""

    def __init__(self, tick_s: float = 0.0) -> None:
        self.seconds = 0.0
        self.tick_s = tick_s
        self.timers: list[ManualTimer] = []

    def now(self) -> float:
        self.seconds += self.tick_s
        return self.seconds

    def timer(self, parent: QObject | None = None) -> ManualTimer:
        timer = ManualTimer(self, parent)
        self.timers.append(timer)
        return timer

    def advance(self, ms: int) -> None:
        self.seconds += ms / 1000
        for timer in list(self.timers):
            if shiboken6.isValid(timer):
                timer._fire_if_due()


def wait_data(qtbot: Any, window: Any, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: window.dataset_panel.index is not None and not window.dataset_panel.is_loading(),
                    timeout=timeout)


def make_window(qtbot: Any, **kwargs: Any) -> Any:
    """A shown MainWindow whose data set finished loading; errors are recorded, not shown modally."""
    from studio.main_window import MainWindow

    window = MainWindow(**kwargs)
    window.shown_errors = []
    window.show_error = lambda title, message: window.shown_errors.append((title, message))
    qtbot.addWidget(window)
    window.show()
    wait_data(qtbot, window)
    window.evaluation_panel.auto_evaluate.setChecked(False)
    return window


@pytest.fixture
def window(qtbot: Any) -> Iterator[Any]:
    win = make_window(qtbot)
    yield win
    if win.worker is not None:
        win.worker.stop()
        win.worker.wait(60_000)


def train_tiny(qtbot: Any, window: Any, overrides: dict[str, Any] | None = None, timeout: int = 120_000) -> str:
    """Run a tiny training to its end; returns the final status."""
    set_fields(window, {**TINY, **(overrides or {})})
    assert window.config_errors() == []
    with qtbot.waitSignal(window.training_ended, timeout=timeout) as blocker:
        assert window.start_training() is not None
    qtbot.waitUntil(lambda: window.worker is None, timeout=timeout)
    return blocker.args[0]
