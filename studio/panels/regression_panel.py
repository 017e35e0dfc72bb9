"""Regression view: few-shot sine fitting live, MAML next to a pre-trained baseline (Finn et al. 2017).

Two plots side by side (MAML | pre-trained), each with the true sine (dashed), the
support points, the model before fine-tuning (dotted) and the fitted curve after the
slider's number of SGD steps on the support points, with its MSE against the true curve.

* Click on a plot to add a support point at the clicked x; its y is the true sine's value
  there (noise-free, like the paper's tasks), so a click only has to pick an x. "Undo last
  point" and "Clear points" edit the set; "New sine" draws a random task of the family
  (amplitude 0.1-5, phase 0-pi) and "Draw K points" K random support points on it.
* The K spin box always shows the number of support points: a click, an undo or a clear
  changes it, and changing it adds random points or removes the last ones.
* The step slider (0..10) shows the fit after that many steps; "Play" animates 0 -> 10 at
  300 ms per step with a QTimer.
* The models are the shipped ``assets/sinusoid_maml.pt`` and ``assets/sinusoid_pretrained.pt``
  (trained at the paper's settings, see assets/make_sinusoid_models.py); "Retrain both models"
  trains both live in a worker thread with a progress bar ("Load shipped models" goes back).

Fits run in a worker thread. :func:`engine.regression.fit_trajectory` (10 steps, 11 x 200
predictions) measured 5-17 ms per model with one PyTorch thread, but 170-560 ms with PyTorch's
default two threads, on a two-core machine busy with other work (load 8-10: every tiny matrix
product then waits for a core), which in the GUI thread would freeze the window. So each
change of the points, the sine or the models starts one fit job through a
:class:`studio.jobs.latest.LatestJob` (the previous fit is asked to stop before its next model
and whatever it still delivers is dropped) and moving the slider only calls
``setData`` with the precomputed curves. The true sine and the support points are redrawn
at once.

Jobs of this view (fits and training) run their tensor work with one intra-op thread
(``engine.api.torch_threads(1)``): the 2x40 network is fastest that way and does not fight other work
for cores. With PyTorch's OpenMP backend the count is a setting of the calling thread (the
GUI thread and running trainings keep theirs); PyTorch also records it as the default for
threads that start their first parallel work while the job runs, and the job restores it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSpinBox, QVBoxLayout, QWidget

from engine.api import (KINDS, MODEL_TITLES, EngineError, RegressionConfig, RegressionModel, SinusoidTask,
                        SinusoidTasks, fit_trajectory, load_models, torch_threads, train_both, trajectory_mse)
from studio.jobs.latest import LatestJob
from studio.jobs.thread import WorkerHandle
from studio.panels.panel_parts import BackgroundTraining, ClickablePlot, StepPlayback, action_button
from studio.widgets.elide import ElidedLabel
from studio.widgets.plot_parts import PALETTE

ASSETS = Path(__file__).resolve().parents[2] / "assets"
X_RANGE = (-5.0, 5.0)
GRID_POINTS = 200
TEST_STEPS = RegressionConfig.test_steps
PLAY_INTERVAL_MS = 300
DEFAULT_K = 5
MAX_POINTS = 100
DEFAULT_TRAIN_STEPS = 5000
Y_LIMIT = 6.5
COLOURS = {"maml": PALETTE[0], "pretrained": PALETTE[1]}
CLICK_TIP = ("Click to add a support point at that x. Its y is the true sine's value there (noise-free, like "
             "the paper's tasks), so only the x you click matters; the fits then use every support point.")


@dataclass
class FitResult:
    """Curves of one fit job: per model kind, [TEST_STEPS + 1, GRID_POINTS] predictions and MSE per step."""

    trajectories: dict[str, np.ndarray]
    mses: dict[str, np.ndarray]
    milliseconds: float


def fit_job(models: dict[str, RegressionModel], x_support: torch.Tensor, y_support: torch.Tensor,
            grid: torch.Tensor, true_y: torch.Tensor) -> Any:
    """The function the worker runs: fit every model to the support points, 0..TEST_STEPS steps.

    x_support, y_support: [K]; grid, true_y: [GRID_POINTS]. A job asked to stop (a newer fit
    replaced it) skips its remaining models: its result is dropped anyway.
    """

    def job(progress: Any, should_stop: Any) -> FitResult:
        started = time.perf_counter()
        trajectories, mses = {}, {}
        with torch_threads(1):
            for kind, model in models.items():
                if should_stop():
                    break
                trajectory = fit_trajectory(model.params, x_support, y_support, grid, steps=TEST_STEPS,
                                            lr=model.config.inner_lr)
                trajectories[kind] = trajectory.numpy()
                mses[kind] = trajectory_mse(trajectory, true_y).numpy()
        return FitResult(trajectories, mses, (time.perf_counter() - started) * 1000.0)

    return job


def training_job(config: RegressionConfig) -> Any:
    """The function the worker runs for Train: both models, one thread."""

    def job(progress: Any, should_stop: Any) -> dict[str, RegressionModel]:
        with torch_threads(1):
            return train_both(config, progress, should_stop)

    return job


class SinePlot(ClickablePlot):
    """One model's view: true sine, support points, prior and fitted curve, MSE; emits clicks in data units."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        self.showGrid(x=True, y=True, alpha=0.15)
        self.setXRange(*X_RANGE, padding=0.03)
        self.setYRange(-Y_LIMIT, Y_LIMIT, padding=0)
        self.setTitle(MODEL_TITLES[kind], size="11pt", bold=True)
        self.getPlotItem().getAxis("bottom").setLabel("x")
        self.getPlotItem().getAxis("left").setLabel("y")
        self.setToolTip(CLICK_TIP)
        legend = self.addLegend(offset=(-6, -6), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 210))
        colour = COLOURS[kind]
        self.true_curve = self.plot([], [], pen=pg.mkPen("#555555", width=1.6, style=Qt.PenStyle.DashLine),
                                    name="true sine")
        self.prior_curve = self.plot([], [], pen=pg.mkPen(colour, width=1.2, style=Qt.PenStyle.DotLine),
                                     name="before fine-tuning")
        self.fit_curve = self.plot([], [], pen=pg.mkPen(colour, width=2.6), name="fine-tuned")
        self.points = pg.ScatterPlotItem(size=10, brush=pg.mkBrush("#ffbf00"), pen=pg.mkPen("#303030", width=1.2))
        self.addItem(self.points)
        legend.addItem(self.points, "support points")
        self.mse_text = pg.TextItem(anchor=(0, 0), color="#202020", fill=pg.mkBrush(255, 255, 255, 220),
                                    border=pg.mkPen("#bbbbbb"))
        self.mse_text.setPos(X_RANGE[0], Y_LIMIT - 0.1)
        self.addItem(self.mse_text)


class RegressionPanel(StepPlayback, BackgroundTraining, QWidget):
    """The regression demo tab; ``window`` is the MainWindow (or None) for error dialogs."""

    models_changed = Signal(str)    # description of the models now shown
    fitted = Signal()               # after every refit (points, sine or models changed)
    rewind_on_play = False          # Play continues from the slider's step (from 0 when at the last step)
    training_failed_title = "Regression training failed"

    def __init__(self, window: Any = None, parent: QWidget | None = None, *, seed: int = 7) -> None:
        super().__init__(parent)
        self.main_window = window
        self.models: dict[str, RegressionModel] = {}
        self.models_source = ""
        self.sampler = SinusoidTasks(seed=seed)
        self.rng = np.random.default_rng(seed)
        self.task: SinusoidTask = self.sampler.sample(k_shot=1, k_query=0)
        self.support_x: list[float] = []
        self.grid = torch.linspace(*X_RANGE, GRID_POINTS)
        self.grid_np = self.grid.numpy()
        self.trajectories: dict[str, np.ndarray] = {}
        self.mses: dict[str, np.ndarray] = {}
        self.fit_ms = 0.0
        self._training = LatestJob()
        self._fits = LatestJob()

        self._build()
        self.load_shipped_models()
        self.draw_points(DEFAULT_K)

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.new_sine_button = action_button("New sine", self.new_sine, "Draw a random sine of the family "
                                             "(amplitude 0.1-5, phase 0-pi) with K random support points.")
        self.k_spin = QSpinBox()
        self.k_spin.setObjectName("regression_points")
        self.k_spin.setRange(0, MAX_POINTS)
        self.k_spin.setValue(DEFAULT_K)
        self.k_spin.setPrefix("K = ")
        self.k_spin.setKeyboardTracking(False)
        self.k_spin.setToolTip("The number of support points (the paper reports K = 5). Raising it adds random "
                               "points on the sine, lowering it removes the last ones; clicks on a plot, Undo "
                               "and Clear change it too.")
        self.k_spin.valueChanged.connect(self.set_k)
        self.draw_button = action_button("Draw K points", self.draw_points,
                                         "Replace the support points with K new random x on this sine.")
        self.undo_button = action_button("Undo last point", self.undo_point, "Remove the last support point.")
        self.clear_button = action_button("Clear points", self.clear_points, "Remove every support point.")
        top = QHBoxLayout()
        for widget in (self.new_sine_button, self.k_spin, self.draw_button, self.undo_button, self.clear_button):
            top.addWidget(widget)
        top.addStretch(1)
        hint = ElidedLabel("Click a plot to add a point", mode=Qt.TextElideMode.ElideRight)
        hint.setStyleSheet("color: #777;")
        hint.setToolTip(CLICK_TIP)
        top.addWidget(hint)

        self.procedure_label = ElidedLabel(f"plain SGD, lr {RegressionConfig.inner_lr:g}, on the support MSE "
                                           "(same for both)", mode=Qt.TextElideMode.ElideRight)
        self.procedure_label.setStyleSheet("color: #555;")
        steps_row = self._step_row("Fine-tuning step", TEST_STEPS, PLAY_INTERVAL_MS, what="fit",
                                   slider_tip="Gradient steps of fine-tuning on the support points (0 = the trained "
                                   "model as is).", slider_width=260, label_width=110,
                                   procedure=self.procedure_label, procedure_stretch=0)

        self.plots = {kind: SinePlot(kind) for kind in KINDS}
        plots_row = QHBoxLayout()
        for plot in self.plots.values():
            plot.clicked.connect(self.add_point)
            plots_row.addWidget(plot, 1)

        self.models_label = QLabel("")
        self.models_label.setObjectName("regression_models")
        self.models_label.setWordWrap(True)
        self.train_steps_spin = QSpinBox()
        self.train_steps_spin.setRange(10, 1_000_000)
        self.train_steps_spin.setSingleStep(1000)
        self.train_steps_spin.setValue(DEFAULT_TRAIN_STEPS)
        self.train_steps_spin.setSuffix(" steps")
        self.train_steps_spin.setToolTip("Training steps of each model for Retrain both models (the shipped "
                                         "models: 70000, the paper's; about 20 minutes for both on two CPU cores).")
        self.train_button = action_button("Retrain both models", self.start_training, "Train the two sine models of "
                                          "this view again from scratch in the background (MAML, then the "
                                          "pre-trained baseline), with the paper's settings except the number of "
                                          "steps. (The window's Train button trains the few-shot classifier.)")
        self.cancel_button = action_button("Cancel retraining", self.cancel_training,
                                           "Stop retraining; keep the current models.")
        self.cancel_button.setEnabled(False)
        self.shipped_button = action_button("Load shipped models", self.load_shipped_models,
                                            f"Reload the models shipped in {ASSETS}.")
        self.progress = QProgressBar()
        self.progress.setObjectName("regression_progress")
        self.progress.hide()
        train_row = QHBoxLayout()
        train_row.addWidget(self.models_label, 1)
        for widget in (self.train_steps_spin, self.train_button, self.cancel_button, self.shipped_button):
            train_row.addWidget(widget)
        train_row.addWidget(self.progress, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addLayout(steps_row)
        layout.addLayout(plots_row, 1)
        layout.addLayout(train_row)

    # -- models ---------------------------------------------------------------------------------------
    def load_shipped_models(self, folder: Path = ASSETS) -> bool:
        """Load the two shipped models; on failure say why in the models line and keep what was shown."""
        try:
            models = load_models(folder)
        except EngineError as error:
            self.models_label.setText(f"<span style='color:#b00020'>Could not load the shipped models: "
                                      f"{error}</span> Press Retrain both models to make new ones.")
            return False
        self.set_models(models, "shipped models")
        return True

    def set_models(self, models: dict[str, RegressionModel], source: str) -> None:
        """Show these models (keys "maml" and "pretrained") and refit."""
        self.models = dict(models)
        self.models_source = source
        parts = [f"{model.title}: {model.steps_done:,} steps" for model in self.models.values()]
        self.models_label.setText(f"Models: {source} ({'; '.join(parts)}).")
        lr = next(iter(self.models.values())).config.inner_lr
        self.procedure_label.setText(f"plain SGD, lr {lr:g}, on the support MSE (same for both)")
        self.refit()
        self.models_changed.emit(source)

    # -- the task and its support points ------------------------------------------------------------
    def new_sine(self) -> None:
        """A random sine of the family with K random support points (K = 5 when there were none)."""
        self.task = self.sampler.sample(k_shot=1, k_query=0)
        self.draw_points(self.k_spin.value() or DEFAULT_K)

    def draw_points(self, k: int | None = None) -> None:
        """Replace the support points with ``k`` (default: K) uniformly random x on the current sine."""
        self.support_x = self._random_x(self.k_spin.value() if k is None else k)
        self.refit()

    def set_k(self, k: int) -> None:
        """Make K support points: random ones are added, or the last ones removed."""
        k = max(0, min(int(k), MAX_POINTS))
        if k == len(self.support_x):
            return
        self.support_x = self.support_x[:k] + self._random_x(k - len(self.support_x))
        self.refit()

    def _random_x(self, n: int) -> list[float]:
        return [float(x) for x in self.rng.uniform(*X_RANGE, size=max(0, n))]

    def add_point(self, x: float, _y: float = 0.0) -> None:
        """Add a support point at ``x`` (y = the true sine's value there); x outside [-5, 5] is ignored."""
        if not X_RANGE[0] <= x <= X_RANGE[1] or len(self.support_x) >= MAX_POINTS:
            return
        self.support_x.append(float(x))
        self.refit()

    def undo_point(self) -> None:
        if self.support_x:
            self.support_x.pop()
            self.refit()

    def clear_points(self) -> None:
        self.support_x = []
        self.refit()

    def support_y(self) -> list[float]:
        """y of the support points: the true sine at their x."""
        return self.task.true_curve(torch.tensor(self.support_x, dtype=torch.float32)).tolist()

    # -- fitting and drawing ----------------------------------------------------------------------------
    def refit(self) -> None:
        """Redraw the sine and the points now, and fit both models to the points in a worker."""
        true_y = self.task.true_curve(self.grid)
        xs = torch.tensor(self.support_x, dtype=torch.float32)
        ys = self.task.true_curve(xs)
        true_np, points_y = true_y.numpy(), ys.numpy()
        for plot in self.plots.values():
            plot.true_curve.setData(self.grid_np, true_np)
            plot.points.setData(np.asarray(self.support_x, dtype=np.float64), points_y)
        n = len(self.support_x)
        self._show_k(n)
        self.undo_button.setEnabled(n > 0)
        self.clear_button.setEnabled(n > 0)
        self.draw_button.setEnabled(n > 0)
        if not self.models:
            return
        job = fit_job(dict(self.models), xs, ys, self.grid, true_y)
        self._fits.start(job, on_result=self._fitted, on_error=self._fit_failed)

    def _show_k(self, n: int) -> None:
        """The K spin box shows the number of support points (without reacting to its own change)."""
        self.k_spin.setSuffix(f" support point{'s' if n != 1 else ''}")
        if self.k_spin.value() != n:
            self.k_spin.blockSignals(True)
            self.k_spin.setValue(n)
            self.k_spin.blockSignals(False)

    def is_fitting(self) -> bool:
        """True while the curves do not yet show the current points, sine and models."""
        return self._fits.is_running()

    def _fitted(self, result: FitResult) -> None:
        self.trajectories, self.mses, self.fit_ms = result.trajectories, result.mses, result.milliseconds
        for kind, plot in self.plots.items():
            plot.prior_curve.setData(self.grid_np, self.trajectories[kind][0])
        self.show_step(self.step_slider.value())
        self.fitted.emit()

    def _fit_failed(self, message: str) -> None:
        self.models_label.setText(f"<span style='color:#b00020'>Fitting failed: {message}</span>")

    def show_step(self, step: int) -> None:
        """Draw the fit after ``step`` steps on both plots (setData only) with its MSE."""
        self.step_label.setText(f"step {step} / {TEST_STEPS}")
        for kind, plot in self.plots.items():
            if kind not in self.trajectories:
                plot.fit_curve.setData([], [])
                plot.mse_text.setText("no model loaded")
                continue
            plot.fit_curve.setData(self.grid_np, self.trajectories[kind][step])
            note = "" if self.support_x else "  (no support points: nothing to fit)"
            before = f"  (before fine-tuning: {self.mses[kind][0]:.3f})" if step else ""
            plot.mse_text.setText(f"step {step}: MSE {self.mses[kind][step]:.3f}{before}{note}")
            plot.mse_text.setToolTip("Mean squared error of the curve against the true sine on "
                                     f"{GRID_POINTS} evenly spaced x in [-5, 5].")

    def mse_at(self, kind: str, step: int | None = None) -> float:
        """MSE of ``kind`` against the true sine after ``step`` steps (default: the slider's)."""
        return float(self.mses[kind][self.step_slider.value() if step is None else step])

    # -- training -------------------------------------------------------------------------------------
    def _locked_while_training(self) -> tuple[QWidget, ...]:
        return (self.train_button, self.shipped_button)

    def start_training(self, steps: int | None = None) -> WorkerHandle | None:
        """Retrain both models (``steps`` each, default the spin box) in a worker thread; returns its
        handle, or None if a training is already running."""
        if self.is_training():
            return None
        config = RegressionConfig(steps=int(steps or self.train_steps_spin.value()))
        self._show_training_started(2 * config.steps, "training MAML… %p%")
        return self._training.start(training_job(config), on_result=self._trained,
                                    on_error=self._training_failed, on_progress=self._training_progress)

    def _training_progress(self, done: int, total: int) -> None:
        self._show_training_progress(done, total)
        self.progress.setFormat(("training MAML" if done <= total // 2 else "training the baseline") + "… %p%")

    def _trained(self, models: dict[str, RegressionModel]) -> None:
        self._training_done()
        if any(model.stopped for model in models.values()):
            self.models_label.setText(self.models_label.text() + " Training cancelled; these models are kept.")
            return
        seconds = sum(model.train_seconds for model in models.values())
        self.set_models(models, f"trained here in {seconds:.0f} s")

    def _training_failed(self, message: str) -> None:
        self._report_training_failure(self.models_label, "color:#b00020", message)
