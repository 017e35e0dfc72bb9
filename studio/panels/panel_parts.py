"""Parts shared by the demo and training views, each written once.

* :func:`action_button`: a button with a tooltip whose click calls a slot without arguments (regression and
  navigation views).
* :class:`ClickablePlot`: a pyqtgraph plot that emits left clicks inside its plot area in data units
  (the regression view's sine plots, the navigation view's planes).
* :class:`StepPlayback` and :class:`BackgroundTraining`: mixins (``self`` is the panel) for the step
  slider with Play, and for retraining models in a worker with a progress bar and Cancel (regression and
  navigation views).
* :class:`WorkerControls`: a mixin for Pause/Resume, Stop, waiting and stopping on window close of the
  view's training worker, and for opening one of its runs in the window (race and sweep views).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSlider, QWidget

from engine.api import EngineError
from studio.jobs.engine_run import CLOSE_STOP_WAIT_MS
from studio.jobs.latest import LatestJob
from studio.widgets.elide import ElidedLabel

log = logging.getLogger("studio")


def action_button(text: str, slot: Any, tip: str) -> QPushButton:
    """A push button with ``tip`` whose click calls ``slot()``."""
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(lambda _checked=False: slot())
    return button


class ClickablePlot(pg.PlotWidget):
    """A white plot that emits ``clicked(x, y)`` in data units for a left click inside its plot area."""

    clicked = Signal(float, float)   # x, y of a left click inside the plot area

    def __init__(self) -> None:
        super().__init__(background="w")
        self.scene().sigMouseClicked.connect(self._on_click)

    def _on_click(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        view_box = self.getPlotItem().vb
        if not view_box.sceneBoundingRect().contains(event.scenePos()):
            return
        point = view_box.mapSceneToView(event.scenePos())
        event.accept()
        self.clicked.emit(float(point.x()), float(point.y()))

    def pixel_of(self, x: float, y: float) -> Any:
        """Viewport pixel (QPoint) of data point (x, y): where a click lands there."""
        return self.mapFromScene(self.getPlotItem().vb.mapViewToScene(QPointF(x, y)))


class StepPlayback:
    """The step slider (0..``last_step``), its label and Play of a view (a mixin: ``self`` is the panel);
    the panel defines ``show_step(step)``."""

    rewind_on_play = True   # Play always starts at step 0 (False: only when the slider is at the last step)
    last_step: int
    step_slider: QSlider
    step_label: QLabel
    play_button: QPushButton
    play_timer: QTimer

    def _step_row(self, title: str, last_step: int, interval_ms: int, *, what: str, slider_tip: str,
                  slider_width: int, label_width: int, procedure: ElidedLabel, procedure_stretch: int) -> QHBoxLayout:
        """Build the slider, its label, Play and its timer; the row ``title | slider | label | Play | procedure``."""
        self.last_step = last_step
        self.step_slider = QSlider(Qt.Orientation.Horizontal)
        self.step_slider.setRange(0, last_step)
        self.step_slider.setPageStep(1)
        self.step_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.step_slider.setTickInterval(1)
        self.step_slider.setMinimumWidth(slider_width)
        self.step_slider.setToolTip(slider_tip)
        self.step_slider.valueChanged.connect(self.show_step)  # type: ignore[attr-defined]
        self.step_label = QLabel("")
        self.step_label.setMinimumWidth(label_width)
        self.play_button = action_button("Play", self.toggle_play, f"Animate the {what} from step 0 to "
                                         f"{last_step}, {interval_ms} ms per step.")
        self.play_timer = QTimer(self)  # type: ignore[arg-type]
        self.play_timer.setInterval(interval_ms)
        self.play_timer.timeout.connect(self._tick)
        row = QHBoxLayout()
        row.addWidget(QLabel(title))
        row.addWidget(self.step_slider, 1)
        row.addWidget(self.step_label)
        row.addWidget(self.play_button)
        row.addSpacing(12)
        row.addWidget(procedure, procedure_stretch)
        return row

    def toggle_play(self) -> None:
        if self.play_timer.isActive():
            self.stop_playing()
            return
        if self.rewind_on_play or self.step_slider.value() >= self.last_step:
            self.step_slider.setValue(0)
        self.play_button.setText("Pause")
        self.play_timer.start()

    def stop_playing(self) -> None:
        self.play_timer.stop()
        self.play_button.setText("Play")

    def is_playing(self) -> bool:
        return self.play_timer.isActive()

    def _tick(self) -> None:
        step = min(self.step_slider.value() + 1, self.last_step)
        self.step_slider.setValue(step)
        if step >= self.last_step:
            self.stop_playing()


class BackgroundTraining:
    """Retraining a view's models in a worker, with a progress bar and Cancel (a mixin: ``self`` is the panel).

    The panel has ``_training`` (a LatestJob), ``progress``, ``cancel_button``, ``main_window`` and lists in
    :meth:`_locked_while_training` the widgets that wait for the training to end."""

    training_failed_title = "Training failed"
    _training: LatestJob
    progress: QProgressBar
    cancel_button: QPushButton
    main_window: Any

    def _locked_while_training(self) -> tuple[QWidget, ...]:
        raise NotImplementedError

    def is_training(self) -> bool:
        return self._training.is_running()

    def _show_training_started(self, maximum: int, label: str) -> None:
        for widget in self._locked_while_training():
            widget.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, maximum)
        self.progress.setValue(0)
        self.progress.setFormat(label)
        self.progress.show()

    def cancel_training(self) -> None:
        if self._training.is_running():
            self._training.handle.stop()
            self.progress.setFormat("stopping…")

    def _show_training_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _training_done(self) -> None:
        self.progress.hide()
        for widget in self._locked_while_training():
            widget.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _report_training_failure(self, label: QLabel, error_style: str, message: str) -> None:
        """End the training, say why in ``label`` and in the window's error dialog."""
        self._training_done()
        label.setText(f"<span style='{error_style}'>Training failed: {message}</span>")
        if self.main_window is not None and hasattr(self.main_window, "show_error"):
            self.main_window.show_error(self.training_failed_title, message)


class WorkerControls:
    """Pause/Resume, Stop, ``wait`` and stopping on window close for a view's ``worker`` (a race or sweep worker;
    None when idle); a mixin: ``self`` is the panel, with ``window``, ``pause_button`` and ``status_label``."""

    job_name: str         # "race", "sweep": in the log line when closing
    running_text: str     # the status line after Resume
    stopping_text: str    # the status line after Stop
    worker: Any
    window: Any
    pause_button: QPushButton
    status_label: QLabel

    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.worker.paused:
            self.worker.resume()
            self.pause_button.setText("Pause")
            self.status_label.setText(self.running_text)
        else:
            self.worker.pause()
            self.pause_button.setText("Resume")
            self.status_label.setText("Paused (after the current step)")

    def stop(self) -> None:
        if self.worker is None:
            return
        self.worker.stop()
        self.status_label.setText(self.stopping_text)

    def wait(self, timeout_ms: int = 60_000) -> bool:
        return self.worker.wait(timeout_ms) if self.worker is not None else True

    def _open_run(self, run_dir: Path | None) -> bool:
        """Show the run in ``run_dir`` in the main window like any run (the forms are left as they are);
        False (after an error dialog naming the problem, if any) when there is none to show."""
        if run_dir is None:
            return False
        try:
            record = self.window.store.record(run_dir)
        except EngineError as error:
            self.window.show_error("Cannot open the run", str(error))
            return False
        self.window.open_run(record, load_settings=False)
        return True

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt)
        """Stop the running worker cleanly when the window closes."""
        if watched is self.window and event.type() == QEvent.Type.Close and self.worker is not None:
            if self.worker.stop_and_wait(CLOSE_STOP_WAIT_MS):
                log.warning("the %s did not stop within %d s of closing: its training process was ended",
                            self.job_name, CLOSE_STOP_WAIT_MS // 1000)
        return False
