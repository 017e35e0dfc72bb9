"""The plots of the Navigation view: the plane with a policy's paths, return per adaptation step, and the
meta-training curve. Each builds its curves once; updates only call ``setData``."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from engine.api import GOAL_HIGH, GOAL_LOW, POLICY_TITLES
from studio.panels.panel_parts import ClickablePlot

PLANE_LIMIT = 0.7
STEP_COLOURS = ("#8c8c8c", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
POLICY_COLOURS = {"maml": "#9467bd", "reptile": "#17becf", "pretrained": "#8c564b"}
CLICK_TIP = ("Click to set the goal (inside the dashed square, the goals of the task family). Every policy then "
             "samples 20 episodes, takes one policy-gradient step on them, and again, up to 3 steps. Thin lines: "
             "the current step's 20 episodes; bold: their average path.")


def step_colour(step: int) -> str:
    return STEP_COLOURS[step % len(STEP_COLOURS)]


class PlanePlot(ClickablePlot):
    """One policy: the goals' square, the start, the goal and its sampled episodes and their average path after each adaptation step."""

    def __init__(self, kind: str, steps: int) -> None:
        super().__init__()
        self.kind = kind
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        self.setAspectLocked(True)
        self.showGrid(x=True, y=True, alpha=0.12)
        self.setXRange(-PLANE_LIMIT, PLANE_LIMIT, padding=0)
        self.setYRange(-PLANE_LIMIT, PLANE_LIMIT, padding=0)
        self.setToolTip(CLICK_TIP)
        self.setMinimumSize(140, 140)
        square = np.array([[GOAL_LOW, GOAL_LOW], [GOAL_HIGH, GOAL_LOW], [GOAL_HIGH, GOAL_HIGH], [GOAL_LOW, GOAL_HIGH],
                           [GOAL_LOW, GOAL_LOW]])
        self.plot(square[:, 0], square[:, 1], pen=pg.mkPen("#999999", width=1, style=Qt.PenStyle.DashLine))
        legend = self.addLegend(offset=(-4, 4), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 200))
        self.episodes = self.plot([], [], pen=pg.mkPen("#888888", width=1))
        self.paths = [self.plot([], [], pen=pg.mkPen(step_colour(s), width=2), name=self._step_name(s))
                      for s in range(steps + 1)]
        self.start = pg.ScatterPlotItem([0.0], [0.0], size=8, brush=pg.mkBrush("#202020"), pen=None)
        self.goal = pg.ScatterPlotItem(size=18, symbol="star", brush=pg.mkBrush("#ffbf00"),
                                       pen=pg.mkPen("#303030", width=1.2))
        self.addItem(self.start)
        self.addItem(self.goal)
        legend.addItem(self.goal, "goal")

    @staticmethod
    def _step_name(step: int) -> str:
        return "before adaptation" if step == 0 else f"after {step} step{'s' if step != 1 else ''}"

    def set_goal(self, x: float, y: float) -> None:
        self.goal.setData([x], [y])

    def show_paths(self, paths: np.ndarray | None, episodes: np.ndarray | None, step: int) -> None:
        """Average paths [steps + 1, H + 1, 2] of steps 0..``step`` (the current one bold, the later ones hidden)
        and the current step's sampled episodes [N, H + 1, 2] as thin lines."""
        for index, curve in enumerate(self.paths):
            if paths is None or index > step:
                curve.setData([], [])
                continue
            colour = pg.mkColor(step_colour(index))
            if index < step:
                colour.setAlpha(150)
            curve.setPen(pg.mkPen(colour, width=3.2 if index == step else 1.8))
            curve.setData(paths[index, :, 0], paths[index, :, 1])
        if episodes is None:
            self.episodes.setData([], [])
            return
        colour = pg.mkColor(step_colour(step))
        colour.setAlpha(55)
        self.episodes.setPen(pg.mkPen(colour, width=1))
        connect = np.ones(episodes.shape[:2], dtype=bool)
        connect[:, -1] = False                          # no line from one episode's end to the next's start
        self.episodes.setData(episodes[..., 0].reshape(-1), episodes[..., 1].reshape(-1), connect=connect.reshape(-1))

    def set_caption(self, text: str) -> None:
        self.setTitle(text, size="10pt")


class ReturnsPlot(pg.PlotWidget):
    """Average return of the sampled episodes against the adaptation step, one curve per policy."""

    def __init__(self, kinds: Sequence[str], steps: int) -> None:
        super().__init__(background="w")
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        self.showGrid(x=True, y=True, alpha=0.15)
        self.setTitle("Return for this goal", size="10pt")
        self.getPlotItem().getAxis("bottom").setLabel("adaptation step")
        self.getPlotItem().getAxis("left").setLabel("average return")
        self.getPlotItem().getAxis("bottom").setTicks([[(s, str(s)) for s in range(steps + 1)]])
        self.setXRange(-0.2, steps + 0.2, padding=0)
        self.setMinimumSize(170, 120)
        self.addLegend(offset=(-4, -4), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 200))
        self.curves = {kind: self.plot([], [], pen=pg.mkPen(POLICY_COLOURS.get(kind, "#333"), width=2), symbol="o",
                                       symbolSize=6, symbolBrush=POLICY_COLOURS.get(kind, "#333"),
                                       name=POLICY_TITLES.get(kind, kind))
                       for kind in kinds}
        self.marker = pg.InfiniteLine(0, angle=90, pen=pg.mkPen("#bbbbbb", width=1, style=Qt.PenStyle.DashLine))
        self.addItem(self.marker)

    def show_returns(self, returns: Mapping[str, np.ndarray], step: int) -> None:
        for kind, curve in self.curves.items():
            values = returns.get(kind)
            curve.setData([] if values is None else np.arange(len(values)), [] if values is None else values)
        self.marker.setValue(step)


class TrainingCurve(pg.PlotWidget):
    """The meta-training return of the policy being trained: before adaptation and after one step."""

    def __init__(self) -> None:
        super().__init__(background="w")
        self.setMenuEnabled(False)
        self.hideButtons()
        self.showGrid(x=True, y=True, alpha=0.15)
        self.setTitle("Meta-training return", size="10pt")
        self.getPlotItem().getAxis("bottom").setLabel("meta-iteration")
        self.setMinimumSize(170, 110)
        self.addLegend(offset=(-4, -4), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 200))
        self.before = self.plot([], [], pen=pg.mkPen(step_colour(0), width=1.6), name="before adaptation")
        self.after = self.plot([], [], pen=pg.mkPen(step_colour(1), width=2), name="after one step")

    def show_history(self, history: Sequence[tuple[float, float]]) -> None:
        values = np.asarray(history, dtype=np.float64).reshape(-1, 2)
        x = np.arange(1, len(values) + 1)
        self.before.setData(x, values[:, 0])
        finite = np.isfinite(values[:, 1])      # the pre-trained policy has no "after" return
        self.after.setData(x[finite], values[finite, 1])
