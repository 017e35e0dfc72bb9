"""Live training curves and evaluation charts (pyqtgraph): the names views import from here.

The code lives in :mod:`studio.widgets`: ``plot_series`` (growing arrays, EMA series, metrics
rows; Qt-free), ``plot_parts`` (palette, axis caching, hover read-out), ``training_plots``
(:class:`TrainingPlots`: curves built once, updated with ``setData``, redraws rate-limited per
plot) and ``eval_charts`` (confusion matrix, per-class bars).
"""

from __future__ import annotations

from studio.widgets.eval_charts import BarChart, ConfusionMatrixView
from studio.widgets.plot_parts import PALETTE, HoverReadout, cache_axes
from studio.widgets.plot_series import EmaSeries, GrowingArray, ema, split_metric_rows
from studio.widgets.training_plots import TrainingPlots

__all__ = ["PALETTE", "BarChart", "ConfusionMatrixView", "EmaSeries", "GrowingArray", "HoverReadout",
           "TrainingPlots", "cache_axes", "ema", "split_metric_rows"]
