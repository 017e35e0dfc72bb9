"""Inner-loop scrubber: watch one test episode being learned, step by step.

For a run of an algorithm that declares an inner loop (``Algorithm.inner_loop``: MAML,
first-order MAML, ANIL, Reptile, Baseline, Baseline++, and any algorithm registered later
with the flag), the panel draws one seeded test episode of the run's own data,
runs the algorithm's own inner loop for N steps in a worker thread
(:func:`engine.scrubbing.adaptation_trajectory`) and shows the query accuracy and loss
after every step. A slider (or dragging the marker line on the plot) scrubs the step;
the query images below show what the model predicts at that step. Everything is
computed once per run of the loop, so scrubbing never calls the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QSizePolicy,
                               QSlider, QSplitter, QVBoxLayout, QWidget)

from engine.api import (ALGORITHM_CONFIGS, AdaptationTrajectory, EngineError, EpisodeShape, RunRecord, TestEpisode,
                        adaptation_trajectory, check_inner_loop, has_inner_loop, inner_loop_algorithms,
                        inner_loop_steps, sample_test_episode)
from studio.datasets import load_data_cached
from studio.jobs.background import BackgroundJobMixin
from studio.widgets.elide import WrappedLabel
from studio.widgets.fields import spin_box
from studio.widgets.episode_form import SHAPE_FIELDS, EpisodeShapeForm
from studio.widgets.run_picker import RunPicker
from studio.widgets.scrubbed_episode import WRONG, EpisodeView
from studio.widgets.trajectory_plot import TrajectoryPlot
from studio.jobs.thread import WorkerHandle

MAX_STEPS = 500
MIN_DEFAULT_STEPS = 10
DEFAULT_QUERIES = 3


def default_steps(test_steps: int) -> int:
    """N shown by default: twice the algorithm's adaptation steps, at least 10, at most MAX_STEPS."""
    return int(min(MAX_STEPS, max(MIN_DEFAULT_STEPS, 2 * test_steps)))


# -- the worker job ---------------------------------------------------------------------------------
@dataclass
class ScrubOutput:
    """A finished (or cancelled) run of the inner loop, ready to show."""

    run_name: str
    checkpoint: Path
    checkpoint_step: int
    algorithm_title: str
    episode: TestEpisode
    trajectory: AdaptationTrajectory


def scrub_job(record: RunRecord, checkpoint: Path, device: str, *, n_way: int, n_shot: int, n_query: int,
              seed: int, steps: int) -> Callable[[Any, Any], ScrubOutput]:
    """The function :func:`run_in_worker` runs: load the checkpoint and its data, draw the episode, run the loop."""

    def job(progress: Any, should_stop: Any) -> ScrubOutput:
        from engine.api import load_algorithm

        algorithm, ckpt = load_algorithm(checkpoint, device=device)
        check_inner_loop(algorithm)
        data = load_data_cached(ckpt.config.data, split=ckpt.split)
        episode = sample_test_episode(ckpt, n_way=n_way, n_shot=n_shot, n_query=n_query, seed=seed, data=data)
        task = episode.task
        trajectory = adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y,
                                           steps=steps, progress=progress, should_stop=should_stop)
        return ScrubOutput(record.name, checkpoint, ckpt.step, ckpt.config.algorithm.title, episode, trajectory)

    return job


# -- the panel --------------------------------------------------------------------------------------
class ScrubberPanel(QWidget, BackgroundJobMixin):
    """The "Inner loop" view: pick a run and an episode, run its inner loop, scrub the steps."""

    progress_unit = "step"

    scrubbed = Signal(object)     # ScrubOutput, after it is shown
    error = Signal(str)

    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.main_window = window
        self.output: ScrubOutput | None = None
        self._probabilities: np.ndarray | None = None     # [T, Q, n_way]
        self._correct: np.ndarray | None = None            # [T, Q]
        self._handle: WorkerHandle | None = None
        self._running = False
        self._build()
        self.run_picker.refresh()
        window.runs_panel.selection_changed.connect(self.follow_selection)
        window.training_ended.connect(self.run_picker.refresh_if_visible)

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.run_picker = RunPicker(self.main_window.store, object_name="scrubber_run", min_length=24,
                                    accepts=lambda record: has_inner_loop(record.algorithm), describe=_run_item)
        self.run_picker.run_changed.connect(self._run_changed)
        self.run_picker.listed_runs.connect(self._runs_listed)
        self.steps_spin = spin_box(1, MAX_STEPS, MIN_DEFAULT_STEPS, "N: inner steps to run and record "
                                     "(default: twice the algorithm's adaptation steps, at least 10).")
        self.seed_spin = spin_box(0, 1_000_000, 0, "Seed of the test episode (the same seed gives the same "
                                    "episode as evaluation's first episode).")
        self.shape_form = EpisodeShapeForm(SHAPE_FIELDS, initial=EpisodeShape(n_query=DEFAULT_QUERIES))
        self.new_episode_button = QPushButton("New episode")
        self.new_episode_button.setToolTip("Next seed: draw another test episode and run the inner loop on it.")
        self.new_episode_button.clicked.connect(self.new_episode)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("scrubber_run_button")
        self.run_button.setToolTip("Adapt to the episode for N steps and record every step.")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setObjectName("scrubber_progress")
        self.progress.setMaximumWidth(260)
        self.progress.hide()
        self.status_label = QLabel("")
        self.status_label.setObjectName("scrubber_status")
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        run_row = QHBoxLayout()
        run_row.addWidget(QLabel("Run"))
        run_row.addWidget(self.run_picker, 1)
        run_row.addWidget(QLabel("Steps N"))
        run_row.addWidget(self.steps_spin)
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress)
        episode_row = QHBoxLayout()
        episode_row.addWidget(QLabel("Episode seed"))
        episode_row.addWidget(self.seed_spin)
        episode_row.addWidget(self.shape_form)
        episode_row.addWidget(self.new_episode_button)
        episode_row.addStretch(1)

        self.plot = TrajectoryPlot()
        self.plot.setMinimumWidth(280)
        self.plot.marker_dragged.connect(lambda step: self.slider.setValue(step))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("scrubber_slider")
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.valueChanged.connect(self._set_step)
        self.step_label = QLabel("step –")
        self.step_label.setMinimumWidth(90)
        self.readout = WrappedLabel("")  # wraps on a narrow screen instead of widening the window
        self.readout.setObjectName("scrubber_readout")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.episode_view = EpisodeView()
        scroll = QScrollArea()
        scroll.setWidget(self.episode_view)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumWidth(300)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.plot, 1)
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.step_label)
        slider_row.addWidget(self.slider, 1)
        left_layout.addLayout(slider_row)
        left_layout.addWidget(self.readout)
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(scroll)
        body.setStretchFactor(0, 1)
        body.setStretchFactor(1, 1)
        body.setSizes([520, 480])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(run_row)
        layout.addLayout(episode_row)
        layout.addWidget(self.status_label)
        layout.addWidget(body, 1)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(900, 600)

    # -- runs -----------------------------------------------------------------------------------
    def _runs_listed(self, count: int) -> None:
        """After the run history was re-read: name the algorithms offered, and say so when no run is."""
        self.run_picker.combo.setToolTip(f"Runs of algorithms with an inner loop ({_inner_loop_titles()}) that "
                                         "have a checkpoint.")
        self._update_buttons()
        if not count:
            self.status_label.setText(f"No run with an inner loop yet. Train one of {_inner_loop_titles()}; its "
                                      "runs appear here once they have a checkpoint.")

    def follow_selection(self, records: list[RunRecord]) -> None:
        """Select the run chosen in the Runs table (when exactly one is)."""
        if len(records) != 1:
            return
        record = records[0]
        if not has_inner_loop(record.algorithm):
            title = ALGORITHM_CONFIGS[record.algorithm].title if record.algorithm in ALGORITHM_CONFIGS \
                else record.algorithm
            self.status_label.setText(f"Run {record.name} uses {title}, which adapts without an inner loop; "
                                      f"pick a run of {_inner_loop_titles()} to scrub its steps.")
            return
        if not self.run_picker.select(record.run_dir):
            self.status_label.setText(f"Run {record.name} has no checkpoint yet.")

    def _run_changed(self) -> None:
        """A new run: episode shape and N default to its configuration."""
        record = self.run_picker.record()
        self._update_buttons()
        if record is None:
            return
        try:
            config = self.main_window.store.read_config(record.run_dir)
            steps = default_steps(inner_loop_steps(config.algorithm).test)
        except (EngineError, OSError) as error:
            self.status_label.setText(f"Cannot read the configuration of run {record.name}: {error}")
            return
        self.steps_spin.setValue(steps)
        self.shape_form.load({"n_way": config.task.n_way, "n_shot": config.task.n_shot})
        self.status_label.setText(_describe_run(record, config))

    # -- running --------------------------------------------------------------------------------
    def new_episode(self) -> WorkerHandle | None:
        """Move to the next seed and run the loop on that episode."""
        self.seed_spin.setValue(self.seed_spin.value() + 1)
        return self.start()

    def start(self) -> WorkerHandle | None:
        record = self.run_picker.record()
        if record is None or self._running:
            return None
        checkpoint = record.checkpoint()
        if checkpoint is None:
            self._failed(f"run {record.name} has no checkpoint file any more")
            return None
        shape = self.shape_form.shape()
        job = scrub_job(record, checkpoint, self.main_window.device_panel.device(), n_way=shape.n_way,
                        n_shot=shape.n_shot, n_query=shape.n_query, seed=self.seed_spin.value(),
                        steps=self.steps_spin.value())
        self.status_label.setText(f"Adapting run {record.name} to test episode {self.seed_spin.value()}…")
        return self._launch(job)

    def _update_buttons(self) -> None:
        has_run = self.run_picker.record() is not None
        self.run_button.setEnabled(has_run and not self._running)
        self.new_episode_button.setEnabled(has_run and not self._running)
        self.cancel_button.setEnabled(self._running)

    def _failed(self, message: str) -> None:
        self._finished()
        self.status_label.setText(f"<span style='color:{WRONG}'>Inner loop failed: {message}</span>")
        self.error.emit(message)
        self.main_window.show_error("Inner-loop scrubber", message)

    # -- results --------------------------------------------------------------------------------
    def _show(self, output: ScrubOutput) -> None:
        self._finished()
        self.output = output
        trajectory = output.trajectory
        self._probabilities = trajectory.query_probabilities.numpy()
        self._correct = trajectory.query_correct.numpy()
        self.plot.set_trajectory(trajectory)
        self.episode_view.set_episode(output.episode)
        episode = output.episode
        stopped = (f" Stopped at step {trajectory.steps} of {trajectory.requested_steps}."
                   if trajectory.stopped else "")
        self.status_label.setText(
            f"Run <b>{output.run_name}</b> ({output.algorithm_title}, checkpoint at step {output.checkpoint_step:,})"
            f" · test episode {episode.seed}: {episode.n_way}-way {episode.n_shot}-shot, "
            f"{len(trajectory.query_y)} query images · step 0 = {_step_zero_meaning(trajectory)}.{stopped}")
        self.slider.blockSignals(True)
        self.slider.setRange(0, trajectory.steps)
        self.slider.setTickInterval(max(1, trajectory.steps // 20))
        self.slider.setEnabled(True)
        self.slider.blockSignals(False)
        start = trajectory.default_steps if trajectory.default_steps <= trajectory.steps else trajectory.steps
        if self.slider.value() == start:
            self._set_step(start)
        else:
            self.slider.setValue(start)
        self.scrubbed.emit(output)

    def _set_step(self, step: int) -> None:
        """Show step ``step`` (precomputed: no model call)."""
        if self.output is None or self._probabilities is None or self._correct is None:
            return
        trajectory = self.output.trajectory
        step = int(min(max(step, 0), trajectory.steps))
        self.plot.set_step(step)
        self.step_label.setText(f"step {step} / {trajectory.steps}")
        self.readout.setText(
            f"Step {step}: query accuracy <b>{trajectory.query_accuracy[step].item():.1%}</b>, "
            f"query loss <b>{trajectory.query_loss[step].item():.3f}</b> · support accuracy "
            f"{trajectory.support_accuracy[step].item():.1%}, support loss {trajectory.support_loss[step].item():.3f}")
        self.episode_view.show_step(self._probabilities[step], self._correct[step])

    def shown_step(self) -> int:
        return self.slider.value()


def _run_item(record: RunRecord) -> str:
    """A run as the run picker lists it: name, algorithm title, steps."""
    return f"{record.name}  ({ALGORITHM_CONFIGS[record.algorithm].title}, {record.steps_done:,} steps)"


def _inner_loop_titles() -> str:
    """The registered algorithms that declare an inner loop, by title ("MAML, First-order MAML, ...")."""
    return ", ".join(ALGORITHM_CONFIGS[name].title for name in inner_loop_algorithms())


def _describe_run(record: RunRecord, config: Any) -> str:
    counts = inner_loop_steps(config.algorithm)
    trained = f"{counts.train} inner step(s) in training, " if counts.train is not None else ""
    return (f"Run <b>{record.name}</b>: {config.algorithm.title}, {trained}{counts.test} step(s) when adapting by "
            f"default. Press Run to watch a test episode being learned.")


def _step_zero_meaning(trajectory: AdaptationTrajectory) -> str:
    if trajectory.train_steps is None:
        return "the new head before fitting (random read-out)"
    return "the meta-learned initialisation"
