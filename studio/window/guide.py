"""The guided start: three steps to a first trained model (shown at first launch, and from Help).

1. Choose the data: the built-in glyphs or a folder (it drives the Data tab).
2. Train: one recommended setting (:func:`recommended_config`: Prototypical Networks, Conv-4, 5-way
   1-shot, :data:`RECOMMENDED_STEPS` steps), with how long it should take on this computer, measured
   by a few real training steps of that setting on the chosen data
   (:func:`engine.api.measure_training_time`, in a worker thread); then Train, with the run's progress.
3. Try it: the Adapt tab with the model just trained (``AdaptPanel.set_run`` of that run).

A small non-modal dialog: the window stays usable while it is open, and it follows what the window
does (a data set loaded from the Data tab completes step 1 too).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

from engine.api import (ALGORITHM_CONFIGS, BUILTIN_GLYPHS, EngineError, RunConfig, StepMetrics, TrainingTimeEstimate,
                        measure_training_time)
from studio.jobs.latest import LatestJob

log = logging.getLogger("studio")

RECOMMENDED_ALGORITHM = "protonet"
RECOMMENDED_STEPS = 1000
"""A couple of minutes on a quiet 2-core CPU (about 0.1 s a step: README, "Studio window vs headless");
200 steps of this setting reached 86% validation accuracy (5-way 1-shot) on the glyphs. On a busy
computer it takes longer, and step 2 says so: its estimate is measured, never assumed."""
STEP_TITLES = ("1. Choose the data", "2. Train", "3. Try it")
WIDTH = 560


def recommended_config(steps: int = RECOMMENDED_STEPS) -> RunConfig:
    """The one setting step 2 offers: ProtoNet, Conv-4, 5-way 1-shot episodes, ``steps`` steps, validated
    four times; every other field at its default."""
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[RECOMMENDED_ALGORITHM]())
    config.model.backbone = "conv4"
    config.task.n_way, config.task.n_shot = 5, 1
    config.train.steps = steps
    config.train.val_every = max(1, steps // 4)
    config.train.checkpoint_every = config.train.val_every
    return config


def describe_setting(config: RunConfig) -> str:
    """'Prototypical Networks, Conv-4 network, 5-way 1-shot episodes, 1,000 steps'."""
    backbone = {"conv4": "Conv-4", "resnet12": "ResNet-12"}.get(config.model.backbone, config.model.backbone)
    return (f"{config.algorithm.title or config.algorithm.name}, {backbone} network, {config.task.n_way}-way "
            f"{config.task.n_shot}-shot episodes, {config.train.steps:,} steps")


def format_duration(seconds: float) -> str:
    """'about 40 seconds', 'about 2 minutes', 'about 1 hour 10 minutes'."""
    if seconds < 55:
        return f"about {max(5, round(seconds / 5) * 5)} seconds"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} hour{'s' if hours != 1 else ''}" + (f" {minutes} minutes" if minutes else "")


def describe_estimate(estimate: TrainingTimeEstimate, config: RunConfig) -> str:
    """The estimate of step 2, with what it was computed from."""
    total = estimate.total_seconds(config.train)
    return (f"It should take {format_duration(total)} on this computer (measured just now: "
            f"{1000 * estimate.step_s:.0f} ms a step, {estimate.validations(config.train)} validations of "
            f"{config.train.val_episodes} episodes).")


def _step_box(title: str, text: str) -> tuple[QGroupBox, QVBoxLayout]:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    explanation = QLabel(text)
    explanation.setWordWrap(True)
    layout.addWidget(explanation)
    return box, layout


def _button_row(*buttons: QPushButton) -> QHBoxLayout:
    """``buttons`` side by side at the left of a row."""
    row = QHBoxLayout()
    for button in buttons:
        row.addWidget(button)
    row.addStretch(1)
    return row


def _status_label(name: str) -> QLabel:
    label = QLabel("")
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class GuidedStart(QDialog):
    """The three steps, over ``window`` (a :class:`studio.main_window.MainWindow`); ``recommended``: the
    setting of step 2 (default :func:`recommended_config`)."""

    def __init__(self, window: Any, recommended: RunConfig | None = None) -> None:
        super().__init__(window)
        self.window_ = window
        self.recommended = recommended or recommended_config()
        self.run_dir: Path | None = None       # the run step 2 started
        self.run_status = ""                   # how it ended (finished / stopped / failed)
        self.estimate: TrainingTimeEstimate | None = None
        self._estimated_for: str | None = None   # the config (JSON) of the estimate shown or being measured
        self._estimate_job = LatestJob()
        self.setObjectName("guided_start")
        self.setWindowTitle("Getting started")
        self.setModal(False)
        self._build()
        panel = window.dataset_panel
        panel.loaded.connect(lambda *_: self.refresh())
        panel.load_failed.connect(lambda *_: self.refresh())
        panel.loading_changed.connect(lambda *_: self.refresh())
        window.device_panel.device_changed.connect(lambda *_: self.refresh())
        window.training_started.connect(lambda *_: self.refresh())
        window.training_ended.connect(self._training_ended)
        window.jobs_changed.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        intro = QLabel("Three steps to a model that learns new classes from one example each. The window stays "
                       "usable: everything here can also be done from the Data and Algorithm tabs.")
        intro.setWordWrap(True)

        data_box, data_layout = _step_box(STEP_TITLES[0], "Choose the images to learn from: the built-in glyphs "
                                          "(624 invented characters, made on this computer), or a folder with one "
                                          "sub-folder of images per class.")
        self.builtin_button = QPushButton("Use the built-in glyphs")
        self.builtin_button.setObjectName("guide_builtin")
        self.builtin_button.clicked.connect(self.use_builtin)
        self.folder_button = QPushButton("Choose a folder…")
        self.folder_button.setObjectName("guide_folder")
        self.folder_button.clicked.connect(self.window_.dataset_panel.choose_folder)
        data_layout.addLayout(_button_row(self.builtin_button, self.folder_button))
        self.data_status = _status_label("guide_data_status")
        data_layout.addWidget(self.data_status)

        train_box, train_layout = _step_box(STEP_TITLES[1], "Train one recommended setting: "
                                            f"{describe_setting(self.recommended)}.")
        self.estimate_label = _status_label("guide_estimate")
        train_layout.addWidget(self.estimate_label)
        self.train_button = QPushButton("Train this setting")
        self.train_button.setObjectName("guide_train")
        self.train_button.setToolTip("Puts the recommended setting into the Algorithm tab and starts training.")
        self.train_button.clicked.connect(self.train)
        self.progress = QProgressBar()
        self.progress.setObjectName("guide_progress")
        self.progress.setTextVisible(True)
        self.progress.hide()
        train_layout.addLayout(_button_row(self.train_button))
        train_layout.addWidget(self.progress)
        self.train_status = _status_label("guide_train_status")
        train_layout.addWidget(self.train_status)

        try_box, try_layout = _step_box(STEP_TITLES[2], "Open the Adapt tab with the model you just trained. Make "
                                        "a few classes by dropping a handful of images on each class card, then "
                                        "drop test images: the model classifies them at once, without retraining.")
        self.adapt_button = QPushButton("Open the Adapt tab")
        self.adapt_button.setObjectName("guide_adapt")
        self.adapt_button.clicked.connect(self.open_adapt)
        try_layout.addLayout(_button_row(self.adapt_button))
        self.try_status = _status_label("guide_try_status")
        try_layout.addWidget(self.try_status)

        self.step_boxes = (data_box, train_box, try_box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        for box in self.step_boxes:
            layout.addWidget(box)
        layout.addWidget(buttons)
        self.setMinimumWidth(WIDTH)
        self.resize(WIDTH, self.height())

    def event(self, event: QEvent) -> bool:
        """After each layout change (a text that wraps onto more lines), stay tall enough for the texts at
        the current width: a window's height does not follow its wrapped labels by itself."""
        handled = super().event(event)
        if event.type() == QEvent.Type.LayoutRequest:
            needed = self.layout().totalHeightForWidth(self.width())
            self.setMinimumHeight(needed)
            if needed > self.height():
                self.resize(self.width(), needed)
        return handled

    # ------------------------------------------------------------------ state
    def data_ready(self) -> bool:
        """A data set is loaded and usable (step 1 done)."""
        panel = self.window_.dataset_panel
        return panel.index is not None and not panel.is_loading() and not panel.errors()

    def refresh(self) -> None:
        """Show each step's state (what is done, what can be done now)."""
        window = self.window_
        ready = self.data_ready()
        self.data_status.setText(self._data_text())
        busy = window.worker is not None or window.is_racing()
        ours = busy and self.run_dir is not None and window.current_run_dir == self.run_dir
        self.train_button.setEnabled(ready and not busy)
        self.progress.setVisible(ours or self.run_status == "finished")
        self.adapt_button.setEnabled(self.trained())
        done = (ready, self.run_status == "finished", False)
        for box, title, finished in zip(self.step_boxes, STEP_TITLES, done):
            box.setTitle(f"{title}  ✓" if finished else title)
        if not self.run_dir:
            self.try_status.setText("Available once the run of step 2 has finished.")
        if busy and not ours:
            self._stop_estimate()
            self.estimate_label.setText("Another training job is running: the estimate is measured once it ends.")
        elif ready and not busy and not self.trained() and self.isVisible():
            self._start_estimate()
        elif not ready:
            self.estimate_label.setText("How long it takes is measured once the data is loaded.")

    def _data_text(self) -> str:
        panel = self.window_.dataset_panel
        name = "the built-in glyphs" if panel.root() == BUILTIN_GLYPHS else panel.root()
        if panel.is_loading():
            return f"Loading {name}…"
        if panel.errors():
            return f"Cannot use {name}: {panel.errors()[0]}"
        if panel.index is None:
            return "No data set loaded yet."
        return (f"Ready: {name}, {len(panel.index.classes):,} classes and {panel.index.n_images:,} images "
                "(the Data tab shows them and how they are split).")

    def trained(self) -> bool:
        """Step 2's run finished and left a model for step 3."""
        return self.run_dir is not None and self.run_status == "finished"

    # ------------------------------------------------------------------ step 1
    def use_builtin(self) -> None:
        panel = self.window_.dataset_panel
        if panel.root() != BUILTIN_GLYPHS:
            panel.set_root(BUILTIN_GLYPHS)
        elif panel.index is None and not panel.is_loading():
            panel.load()
        self.window_.setup_tabs.setCurrentIndex(0)
        self.refresh()

    # ------------------------------------------------------------------ step 2
    def config(self) -> RunConfig | None:
        """The recommended setting on the chosen data and device (None while the data settings are invalid)."""
        data = self.window_.dataset_panel.data_config(strict=False)
        if data is None:
            return None
        config = copy.deepcopy(self.recommended)
        config.data = data
        config.train.device = self.window_.device_panel.device()
        return config

    def _start_estimate(self) -> None:
        config = self.config()
        if config is None:
            return
        key = json.dumps(config.to_dict(), sort_keys=True)
        if key == self._estimated_for:
            if self.estimate is not None:  # measured already: show it again (another message may have replaced it)
                self.estimate_label.setText(describe_estimate(self.estimate, config))
            return
        data = self.window_.dataset_panel.loaded_data(config.data)
        if data is None:
            self.estimate_label.setText("How long it takes is measured once the data is decoded.")
            return
        self._estimated_for = key
        self.estimate = None
        self.estimate_label.setText("Measuring how long this takes on this computer (a few training steps)…")

        def job(progress: Any, should_stop: Any) -> TrainingTimeEstimate | None:
            return measure_training_time(config, data, should_stop=should_stop)

        self._estimate_job.start(job, on_result=lambda result: self._estimated(config, result),
                                 on_error=self._estimate_failed)

    def _estimated(self, config: RunConfig, estimate: TrainingTimeEstimate | None) -> None:
        if estimate is None:
            self._estimated_for = None
            return
        self.estimate = estimate
        self.estimate_label.setText(describe_estimate(estimate, config))

    def _estimate_failed(self, message: str) -> None:
        self.estimate_label.setText(f"Could not measure how long it takes: {message}")

    def _stop_estimate(self) -> None:
        """Stop a measurement still running (it is taken again when nothing else trains)."""
        if self._estimate_job.is_running():
            self._estimate_job.drop()
            self._estimated_for = None

    def train(self) -> bool:
        """Put the recommended setting into the Algorithm tab and start training it."""
        window = self.window_
        config = self.config()
        if config is None:
            self.train_status.setText(f"Cannot train yet: {(window.config_errors() or ['data settings'])[0]}")
            return False
        self._stop_estimate()  # the run must not share the CPU with a measurement
        window.algorithm_panel.load_config(config)
        worker = window.start_training()
        if worker is None:
            reason = window.training_panel.blocked_message or "a training job is already running"
            self.train_status.setText(f"Cannot train yet: {reason}")
            return False
        self.run_dir, self.run_status = window.current_run_dir, ""
        self.progress.setRange(0, config.train.steps)
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        worker.steps.connect(self._steps)
        self.train_status.setText("Training. The curves show it learning; you can close this and come back "
                                  "(Help > Getting started).")
        self.refresh()
        return True

    def _steps(self, batch: list[StepMetrics]) -> None:
        last = batch[-1]
        self.progress.setRange(0, last.total_steps)
        self.progress.setValue(last.step)
        left = f", {format_duration(last.eta_s)} left" if last.eta_s == last.eta_s and last.eta_s > 0 else ""
        self.progress.setFormat(f"step {last.step:,} of {last.total_steps:,}{left}")

    def _training_ended(self, status: str) -> None:
        window = self.window_
        if self.run_dir is None or window.current_run_dir != self.run_dir or self.run_status:
            return
        self.run_status = status
        if status == "finished":
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat("finished")
            self.train_status.setText("Finished: the model is saved in the Runs list.")
            self.try_status.setText("Ready: open the Adapt tab and try the model.")
        else:
            self.train_status.setText(f"The run {status} (see the log); press Train this setting to train again.")
            self.run_dir = None
        self.refresh()

    # ------------------------------------------------------------------ step 3
    def open_adapt(self) -> bool:
        """Show the Adapt tab with step 2's model."""
        window = self.window_
        if not self.trained():
            return False
        try:
            record = window.store.record(self.run_dir)
        except EngineError as error:
            self.try_status.setText(f"Cannot open the run: {error}")
            return False
        if not window.adapt_panel.set_run(record):
            self.try_status.setText(window.adapt_panel.banner_text())
            return False
        tabs = window.center_tabs
        for index in range(tabs.count()):
            page: QWidget = tabs.widget(index)
            if page is window.adapt_panel or page.isAncestorOf(window.adapt_panel):
                tabs.setCurrentIndex(index)
        self.try_status.setText(f"The Adapt tab uses {record.name}.")
        return True

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        self.refresh()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        """A measurement still running stops (it is taken again when the guide shows again)."""
        self._stop_estimate()
        super().closeEvent(event)
