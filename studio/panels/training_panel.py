"""Training controls: Train, Pause/Resume, Stop, the device and a progress bar with speed and time left."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QStyle, QVBoxLayout,
                               QWidget)

from studio.panels.device_panel import DevicePanel
from studio.rate_limit import RateLimited
from studio.widgets.elide import ElidedLabel


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _fit_widest_text(button: QPushButton, texts: tuple[str, ...]) -> None:
    """Give ``button`` the width of its widest text, so switching texts changes no geometry."""
    shown = button.text()
    widths = []
    for text in texts:
        button.setText(text)
        widths.append(button.sizeHint().width())
    button.setText(shown)
    button.setFixedWidth(max(widths))


STOP_SHORTCUT = "Ctrl+."  # the keyboard stop: deliberate (Esc only cancels edits and closes popups)
STOP_TIP = f"Stop after the current step; the checkpoint is kept ({STOP_SHORTCUT})"
FORCE_STOP_TIP = ("The run has not stopped yet (a long step, or one that hangs): end its training process "
                  "now. The steps after its last checkpoint are lost; the run can be continued from it.")


class TrainingPanel(QWidget):
    """The run controls. State: "idle", "starting", "running", "paused", "stopping".

    While a run is stopping, Stop turns into Force stop after ``force_stop_delay_ms`` (so a double
    click never ends a run the hard way), where ``can_force_stop`` (a run in a training process)."""

    train_clicked = Signal()
    pause_clicked = Signal()
    stop_clicked = Signal()
    force_stop_clicked = Signal()
    force_stop_delay_ms = 3000
    timer_factory: Any = QTimer  # makes the Force stop timer (parent) -> QTimer; a test injects a manual clock's

    def __init__(self, device_panel: DevicePanel | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        style = self.style()
        self.train_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Train")
        self.train_button.setObjectName("train_button")
        self.train_button.setToolTip("Start training with these settings (Ctrl+Enter)")
        self.train_button.setDefault(True)
        self.train_button.setMinimumWidth(90)
        self.train_button.setStyleSheet("QPushButton:enabled { font-weight: bold; }")
        self.pause_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPause), "Pause")
        self.pause_button.setObjectName("pause_button")
        self.pause_button.setToolTip("Pause after the current step / resume")
        self.stop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stop_button.setObjectName("stop_button")
        self.stop_button.setToolTip(STOP_TIP)
        self.train_button.clicked.connect(self.train_clicked)
        self.pause_button.clicked.connect(self.pause_clicked)
        self.stop_button.clicked.connect(self._stop_button_clicked)
        self.can_force_stop = False
        self._force_stop_timer = type(self).timer_factory(self)
        self._force_stop_timer.setSingleShot(True)
        self._force_stop_timer.timeout.connect(self._offer_force_stop)

        self.device_panel = device_panel or DevicePanel()
        self.progress = QProgressBar()
        self.progress.setObjectName("training_progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress.setToolTip("Training progress")
        self.progress.setMinimumWidth(150)
        self.rate_label = ElidedLabel("")  # elided in the middle to its space, in full in its tooltip
        self.rate_label.setObjectName("rate_label")
        self.rate_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.message_label = QLabel("")
        self.message_label.setObjectName("train_message")
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet("color: #d62728;")
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label.hide()

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.train_button)
        row.addWidget(self.pause_button)
        row.addWidget(self.stop_button)
        row.addSpacing(12)
        row.addWidget(self.device_panel)
        row.addSpacing(12)
        row.addWidget(self.progress, 1)
        row.addWidget(self.rate_label, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.message_label)
        _fit_widest_text(self.pause_button, ("Pause", "Resume"))  # a new text never moves the buttons
        _fit_widest_text(self.stop_button, ("Stop", "Force stop"))
        self.state = "idle"
        self._blocked_message = ""
        self._latest: Any = None
        # at most twice a second: each QProgressBar.setValue repaints at once (0.45 ms on 2 cores)
        self.text_updates = RateLimited(self._show_latest_text, 0.5, self)
        self.set_state("idle")

    # -- state --------------------------------------------------------------
    def set_state(self, state: str) -> None:
        entering = state != self.state
        self.state = state
        busy = state in ("starting", "running", "paused", "stopping")
        self.train_button.setEnabled(not busy and not self._blocked_message)
        self.pause_button.setEnabled(state in ("running", "paused"))
        self.pause_button.setText("Resume" if state == "paused" else "Pause")
        self.pause_button.setIcon(self.style().standardIcon(
            QStyle.StandardPixmap.SP_MediaPlay if state == "paused" else QStyle.StandardPixmap.SP_MediaPause))
        self._set_stop_button(state, entering)
        self.device_panel.setEnabled(not busy)
        if state == "starting":
            self.progress.setRange(0, 0)
            self.rate_label.setToolTip("")  # the last run's ending
            self.rate_label.setText("loading data and building the model…")
        elif state == "paused":
            self.rate_label.setText("paused")
        elif state == "stopping":
            self.rate_label.setText("stopping after this step…")

    def _set_stop_button(self, state: str, entering: bool) -> None:
        if state == "stopping" and not entering:
            return  # (a refresh while stopping) Force stop stays as offered
        self.stop_button.setEnabled(state in ("starting", "running", "paused"))
        self.stop_button.setText("Stop")
        self.stop_button.setToolTip(STOP_TIP)
        if state == "stopping" and self.can_force_stop:
            self._force_stop_timer.start(self.force_stop_delay_ms)
        else:
            self._force_stop_timer.stop()

    def _offer_force_stop(self) -> None:
        if self.state == "stopping" and self.can_force_stop:
            self.stop_button.setText("Force stop")
            self.stop_button.setToolTip(FORCE_STOP_TIP)
            self.stop_button.setEnabled(True)

    def _stop_button_clicked(self) -> None:
        if self.state == "stopping":
            self.stop_button.setEnabled(False)  # once
            self.force_stop_clicked.emit()
        else:
            self.stop_clicked.emit()

    def set_blocked(self, message: str) -> None:
        """Disable Train with a visible reason (e.g. the invalid field), or enable it with ""."""
        self._blocked_message = message
        self.message_label.setText(f"Cannot train yet: {message}" if message else "")
        self.message_label.setVisible(bool(message))
        self.set_state(self.state)

    @property
    def blocked_message(self) -> str:
        return self._blocked_message

    # -- progress -----------------------------------------------------------
    def show_start(self, start_step: int, total_steps: int) -> None:
        self.progress.setRange(0, max(total_steps, 1))
        self.progress.setValue(start_step)
        self.progress.setFormat(f"step {start_step} / {total_steps}")

    def show_step(self, metrics: Any) -> None:
        """Show the latest step; redrawn at most twice a second (``text_updates``; text is read, not
        watched), the last step at once."""
        self._latest = metrics
        self.text_updates.request(at_once=metrics.step >= metrics.total_steps)

    def show_latest(self) -> None:
        """Show the latest step now."""
        self.text_updates.show_now()

    def _show_latest_text(self) -> None:
        metrics = self._latest
        if metrics is None:
            return
        if self.progress.maximum() != metrics.total_steps:
            self.progress.setRange(0, max(metrics.total_steps, 1))
        self.progress.setValue(metrics.step)
        self.progress.setFormat(f"step {metrics.step:,} / {metrics.total_steps:,}  (%p%)")
        if self.state == "running":
            self.rate_label.setText(f"{metrics.episodes_per_second:,.1f} episodes/s · "
                                    f"elapsed {format_duration(metrics.elapsed_s)} · "
                                    f"{format_duration(metrics.eta_s)} left")

    def show_end(self, status: str, steps_done: int | None = None, message: str = "",
                 full_message: str = "") -> None:
        """Show how the run ended: ``message`` short enough for the toolbar at 1366 px, ``full_message`` (if
        any) in its tooltip."""
        self.text_updates.cancel()
        self._latest = None
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        text = {"finished": "finished", "stopped": "stopped", "failed": "failed"}.get(status, status)
        self.progress.setFormat(f"{text} at step {steps_done:,}" if steps_done is not None else text)
        self.rate_label.setText(message)
        self.rate_label.setToolTip(full_message)
