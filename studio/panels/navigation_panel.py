"""Navigation view: meta-reinforcement learning on the 2-D point-robot tasks of Finn et al. 2017 (section 5.3).

Three planes side by side (MAML | Reptile | pre-trained), each with the goals' square, the start
at the origin, the goal (a star) and the policy's path before adaptation and after each
policy-gradient adaptation step (a colour per step: the average of its 20 sampled episodes); next to them the average return of the sampled
episodes against the adaptation step, for the three policies.

* Click a plane to set the goal: every policy samples 20 episodes towards it, takes one vanilla
  policy-gradient step (step size 0.1) on them, and again, up to 3 steps. A click outside the
  task family's square [-0.5, 0.5]^2 is refused with the reason under the planes.
* Each plane shows the current step's 20 sampled episodes (thin) and the average path of every step up
  to it (bold: the current step). The step slider (0..3) picks the step; Play animates
  0 -> 3. "New random goal" draws a goal of the family.
* The policies are the shipped ``assets/policies/navigation_*.pt`` (``python -m
  engine.rl.make_policies``). Train retrains the chosen algorithm in a worker thread with a live
  curve of the meta-training return; the result replaces that policy ("Load shipped policies" goes back).

Adaptation runs in a worker through a :class:`studio.jobs.latest.LatestJob` (a newer goal drops an
older job's result) with one PyTorch thread; the slider and Play only call ``setData`` with the
paths computed once per goal. ``bench/bench_navigation_adapt.py`` measures click-to-paths.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QSpinBox, QVBoxLayout,
                               QWidget)

from engine.api import (GOAL_HIGH, GOAL_LOW, POLICY_KINDS, POLICY_TITLES, EngineError, GoalAdaptation,
                        NavigationConfig, NavigationPolicy, adapt_to_goal, check_goal, load_policies, torch_threads,
                        train_policy)
from studio.jobs.latest import LatestJob
from studio.jobs.thread import WorkerHandle
from studio.panels.navigation_plots import CLICK_TIP, PlanePlot, ReturnsPlot, TrainingCurve
from studio.panels.panel_parts import BackgroundTraining, StepPlayback, action_button
from studio.widgets.elide import ElidedLabel

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "policies"
ADAPT_STEPS = NavigationConfig.eval_steps
PLAY_INTERVAL_MS = 600
DEFAULT_GOAL = (0.35, -0.3)
DEFAULT_TRAIN_ITERS = 40
ERROR_STYLE = "color: #b00020;"


@dataclass
class AdaptResult:
    """One goal's adaptation of every policy, as numpy arrays for the plots."""

    goal: tuple[float, float]
    episodes: dict[str, np.ndarray]   # kind -> [steps + 1, N, H + 1, 2] sampled episodes
    paths: dict[str, np.ndarray]      # kind -> [steps + 1, H + 1, 2] their average path
    returns: dict[str, np.ndarray]    # kind -> [steps + 1]
    milliseconds: float


def adapt_job(policies: dict[str, NavigationPolicy], goal: tuple[float, float]) -> Any:
    """The function the worker runs: adapt every policy to ``goal`` for 0..ADAPT_STEPS steps."""

    def job(progress: Any, should_stop: Any) -> AdaptResult:
        started = time.perf_counter()
        inner_lr = NavigationConfig.inner_lr
        with torch_threads(1):
            result: GoalAdaptation = adapt_to_goal({k: p.params for k, p in policies.items()}, goal,
                                                   steps=ADAPT_STEPS, inner_lr=inner_lr, seed=0)
        return AdaptResult(result.goal, {k: v.numpy() for k, v in result.episodes.items()},
                           {k: v.numpy() for k, v in result.paths.items()},
                           {k: v.numpy() for k, v in result.returns.items()}, (time.perf_counter() - started) * 1e3)

    return job


def training_job(config: NavigationConfig, history: list[tuple[float, float]]) -> Any:
    """The function the worker runs for Train; each iteration's returns are appended to ``history``."""

    def job(progress: Any, should_stop: Any) -> NavigationPolicy:
        with torch_threads(1):
            return train_policy(config, progress, should_stop, history)

    return job


class NavigationPanel(StepPlayback, BackgroundTraining, QWidget):
    """The navigation demo tab; ``window`` is the MainWindow (or None) for error dialogs."""

    adapted = Signal()               # the paths and returns now show the current goal and policies
    policies_changed = Signal(str)   # description of the policies now shown
    training_progress = Signal(int, int)   # meta-iterations done, total (the curve shows them)
    training_failed_title = "Navigation training failed"

    def __init__(self, window: Any = None, parent: QWidget | None = None, *, seed: int = 11) -> None:
        super().__init__(parent)
        self.main_window = window
        self.policies: dict[str, NavigationPolicy] = {}
        self.goal: tuple[float, float] = DEFAULT_GOAL
        self.result: AdaptResult | None = None
        self.rng = np.random.default_rng(seed)
        self.train_history: list[tuple[float, float]] = []
        self._adapt = LatestJob()
        self._training = LatestJob()
        self._training_kind = ""
        self._shown = False          # adapt only once the tab is first shown (not for every window built)
        self._build()
        self.load_shipped_policies()

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.goal_label = QLabel("")
        self.goal_label.setObjectName("navigation_goal")
        self.random_goal_button = action_button("New random goal", self.random_goal,
                                                "Draw a goal uniformly from the task family's square.")
        hint = ElidedLabel("Click a plane to set the goal", mode=Qt.TextElideMode.ElideRight)
        hint.setStyleSheet("color: #777;")
        hint.setToolTip(CLICK_TIP)
        top = QHBoxLayout()
        top.addWidget(self.goal_label)
        top.addWidget(self.random_goal_button)
        top.addWidget(hint, 1)

        procedure = ElidedLabel(f"each step: 20 episodes, one vanilla policy-gradient step of size "
                                f"{NavigationConfig.inner_lr:g} (same for all three)", mode=Qt.TextElideMode.ElideRight)
        procedure.setStyleSheet("color: #555;")
        steps_row = self._step_row("Adaptation step", ADAPT_STEPS, PLAY_INTERVAL_MS, what="adaptation",
                                   slider_tip="Policy-gradient adaptation steps (0 = the trained policy as is).",
                                   slider_width=200, label_width=90, procedure=procedure, procedure_stretch=1)

        self.planes = {kind: PlanePlot(kind, ADAPT_STEPS) for kind in POLICY_KINDS}
        self.returns_plot = ReturnsPlot(POLICY_KINDS, ADAPT_STEPS)
        self.training_curve = TrainingCurve()
        grid = QGridLayout()
        for column, plane in enumerate(self.planes.values()):
            plane.clicked.connect(self.click_goal)
            grid.addWidget(plane, 0, column, 2, 1)
            grid.setColumnStretch(column, 3)
        grid.addWidget(self.returns_plot, 0, len(self.planes))
        grid.addWidget(self.training_curve, 1, len(self.planes))
        grid.setColumnStretch(len(self.planes), 3)

        self.message_label = QLabel("")
        self.message_label.setObjectName("navigation_message")
        self.message_label.setWordWrap(True)
        self.policies_label = QLabel("")
        self.policies_label.setObjectName("navigation_policies")
        self.policies_label.setWordWrap(True)
        self.algorithm_combo = QComboBox()
        for kind in POLICY_KINDS:
            self.algorithm_combo.addItem(POLICY_TITLES[kind], kind)
        self.algorithm_combo.setToolTip("The policy Train retrains (MAML is second order); the curve shows how "
                                        "the current one was trained.")
        self.algorithm_combo.currentIndexChanged.connect(lambda _index: self.show_stored_history())
        self.iters_spin = QSpinBox()
        self.iters_spin.setRange(1, 100_000)
        self.iters_spin.setValue(DEFAULT_TRAIN_ITERS)
        self.iters_spin.setSuffix(" meta-iterations")
        self.iters_spin.setToolTip("Meta-iterations of Train, 20 goals each (the shipped policies: 100-200; "
                                   "about 1-3 s per MAML iteration on two busy CPU cores).")
        self.train_button = action_button("Train", self.start_training, "Train the chosen policy again from scratch "
                                          "in the background, with a live curve of its meta-training return. (The "
                                          "window's Train button trains the few-shot classifier.)")
        self.cancel_button = action_button("Cancel training", self.cancel_training, "Stop; keep the current policies.")
        self.cancel_button.setEnabled(False)
        self.shipped_button = action_button("Load shipped policies", self.load_shipped_policies,
                                            f"Reload the policies shipped in {ASSETS}.")
        self.progress = QProgressBar()
        self.progress.setObjectName("navigation_progress")
        self.progress.hide()
        train_row = QHBoxLayout()
        for widget in (self.algorithm_combo, self.iters_spin, self.train_button, self.cancel_button,
                       self.shipped_button):
            train_row.addWidget(widget)
        train_row.addWidget(self.progress, 1)
        train_row.addStretch(0)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addLayout(steps_row)
        layout.addLayout(grid, 1)
        layout.addWidget(self.message_label)
        layout.addWidget(self.policies_label)
        layout.addLayout(train_row)
        self._show_goal()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            self.readapt()

    # -- policies -------------------------------------------------------------------------------------
    def load_shipped_policies(self, folder: Path = ASSETS) -> bool:
        """Load the shipped policies; on failure say why and keep what was shown."""
        try:
            policies = load_policies(folder)
        except EngineError as error:
            self.policies_label.setText(f"<span style='{ERROR_STYLE}'>Could not load the shipped policies: "
                                        f"{error}</span> Press Train to make new ones.")
            return False
        self.set_policies(policies, "shipped policies")
        return True

    def set_policies(self, policies: dict[str, NavigationPolicy], source: str) -> None:
        """Show these policies (keys of POLICY_KINDS) and adapt them to the goal."""
        self.policies = dict(policies)
        parts = [f"{p.title}: {p.iterations_done:,} meta-iterations" for p in self.policies.values()]
        self.policies_label.setText(f"Policies: {source} ({'; '.join(parts)}).")
        self.show_stored_history()
        self.readapt()
        self.policies_changed.emit(source)

    def show_stored_history(self) -> None:
        """The training curve of the chosen policy as it was trained (unless a training is running)."""
        if self.is_training():
            return
        kind = str(self.algorithm_combo.currentData())
        policy = self.policies.get(kind)
        history = policy.history if policy is not None else []
        if kind == "pretrained":
            history = [(before, float("nan")) for before, _after in history]
        self.training_curve.show_history(history)
        self.training_curve.setTitle(f"Meta-training return: {POLICY_TITLES[kind]}", size="10pt")

    # -- the goal -------------------------------------------------------------------------------------
    def click_goal(self, x: float, y: float) -> None:
        """A click on a plane: the new goal, or the reason it is refused."""
        self.set_goal(x, y)

    def set_goal(self, x: float, y: float) -> bool:
        """Move the goal to (x, y) and adapt; a goal outside the square is refused with a one-line message."""
        try:
            self.goal = check_goal((x, y))
        except EngineError as error:
            self.message_label.setStyleSheet(ERROR_STYLE)
            self.message_label.setText(str(error))
            return False
        self.message_label.setText("")
        self._show_goal()
        self.readapt()
        return True

    def random_goal(self) -> None:
        x, y = self.rng.uniform(GOAL_LOW, GOAL_HIGH, size=2)
        self.set_goal(round(float(x), 3), round(float(y), 3))

    def _show_goal(self) -> None:
        self.goal_label.setText(f"Goal ({self.goal[0]:+.2f}, {self.goal[1]:+.2f})")
        for plane in self.planes.values():
            plane.set_goal(*self.goal)

    # -- adapting and drawing -------------------------------------------------------------------------
    def readapt(self) -> None:
        """Adapt every policy to the goal in a worker (the newest request wins); before the tab was first
        shown, only remember that it is due."""
        if not self.policies or not self._shown:
            return
        self._adapt.start(adapt_job(dict(self.policies), self.goal), on_result=self._adapted,
                          on_error=self._adapt_failed)

    def is_adapting(self) -> bool:
        return self._adapt.is_running()

    def _adapted(self, result: AdaptResult) -> None:
        self.result = result
        self.show_step(self.step_slider.value())
        self.adapted.emit()

    def _adapt_failed(self, message: str) -> None:
        self.message_label.setStyleSheet(ERROR_STYLE)
        self.message_label.setText(f"Adaptation failed: {message}")

    def show_step(self, step: int) -> None:
        """Paths up to ``step`` on every plane and the returns plot's marker (setData only)."""
        self.step_label.setText(f"step {step} / {ADAPT_STEPS}")
        result = self.result
        for kind, plane in self.planes.items():
            paths = result.paths.get(kind) if result is not None else None
            episodes = result.episodes[kind][step] if paths is not None else None
            plane.show_paths(paths, episodes, step)
            title = self.policies[kind].title if kind in self.policies else POLICY_TITLES[kind]
            if result is not None and kind in result.returns:
                title += f": return {result.returns[kind][step]:.1f} after {step} step{'s' if step != 1 else ''}"
            plane.set_caption(title)
        self.returns_plot.show_returns(result.returns if result is not None else {}, step)

    def path_at(self, kind: str, step: int | None = None) -> np.ndarray:
        """The path of ``kind`` after ``step`` steps (default: the slider's), [H + 1, 2]."""
        assert self.result is not None
        return self.result.paths[kind][self.step_slider.value() if step is None else step]

    # -- training -------------------------------------------------------------------------------------
    def _locked_while_training(self) -> tuple[QWidget, ...]:
        return (self.train_button, self.shipped_button, self.algorithm_combo)

    def start_training(self, iterations: int | None = None) -> WorkerHandle | None:
        """Retrain the chosen policy in a worker; returns its handle, or None if one is training already."""
        if self.is_training():
            return None
        kind = str(self.algorithm_combo.currentData())
        config = NavigationConfig(algorithm=kind, meta_iters=int(iterations or self.iters_spin.value()))
        self._training_kind = kind
        self.train_history = []
        self.training_curve.show_history([])
        self.training_curve.setTitle(f"Meta-training return: {POLICY_TITLES[kind]}", size="10pt")
        self._show_training_started(config.meta_iters, f"training {POLICY_TITLES[kind]}… %v/%m")
        return self._training.start(training_job(config, self.train_history), on_result=self._trained,
                                    on_error=self._training_failed, on_progress=self._training_progress)

    def _training_progress(self, done: int, total: int) -> None:
        self._show_training_progress(done, total)
        history = list(self.train_history[:done])
        if self._training_kind == "pretrained":
            history = [(before, float("nan")) for before, _after in history]
        self.training_curve.show_history(history)
        self.training_progress.emit(done, total)

    def _trained(self, policy: NavigationPolicy) -> None:
        self._training_done()
        if policy.stopped:
            self.policies_label.setText(self.policies_label.text() + " Training cancelled; these policies are kept.")
            return
        self.set_policies({**self.policies, policy.kind: policy},
                          f"{policy.title} trained here in {policy.train_seconds:.0f} s")

    def _training_failed(self, message: str) -> None:
        self._report_training_failure(self.policies_label, ERROR_STYLE, message)
