"""studio.plots: amortised storage, smoothing, refresh only on new data, overlays, hover, confusion matrix."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from studio.plots import ConfusionMatrixView, EmaSeries, GrowingArray, TrainingPlots, split_metric_rows


def _steps(start: int, stop: int):
    return [SimpleNamespace(step=s, loss=1.0 / s, accuracy=s / 1000, lr=1e-3) for s in range(start, stop)]


def test_growing_array_doubles_and_keeps_values():
    array = GrowingArray(capacity=4)
    capacities = set()
    for i in range(1000):
        array.append(i)
        capacities.add(array.capacity)
    array.extend(np.arange(1000, 1500))
    assert np.array_equal(array.view, np.arange(1500))
    assert sorted(capacities) == [4 * 2**k for k in range(9)]  # 4, 8, ..., 1024: O(log n) growths
    assert array.capacity == 2048


def test_incremental_ema_equals_recomputed_ema():
    values = list(np.random.default_rng(0).normal(size=300))
    incremental = EmaSeries(alpha=0.9)
    for i in range(0, 300, 7):
        incremental.extend(range(i, min(i + 7, 300)), values[i:i + 7])
    recomputed = EmaSeries(alpha=0.0)
    recomputed.extend(range(300), values)
    recomputed.set_alpha(0.9)
    assert np.allclose(incremental.smooth.view, recomputed.smooth.view)
    assert incremental.smooth.view[0] == values[0]  # bias-corrected: starts at the first value
    raw = EmaSeries(alpha=0.0)
    raw.extend(range(300), values)
    assert np.allclose(raw.smooth.view, values)


def test_plots_update_only_with_new_data(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.timer.stop()
    plots.refresh(everything=True)
    assert not plots.refresh()  # nothing new: nothing drawn
    plots.add_steps(_steps(1, 101))
    plots.add_validation(50, 0.6, 0.05)
    plots.refresh(everything=True)
    x, y = plots.loss_curve.getData()
    assert np.array_equal(x, np.arange(1, 101)) and len(y) == 100
    assert np.allclose(plots.loss_raw.getData()[1], 1.0 / np.arange(1, 101))
    assert np.allclose(plots.val_upper.getData()[1], [0.65]) and np.allclose(plots.val_lower.getData()[1], [0.55])
    assert not plots.refresh()
    curve = plots.loss_curve
    plots.add_steps(_steps(101, 111))
    assert plots.refresh()
    assert plots.loss_curve is curve  # curves are built once and updated
    for plot in (plots.loss_plot, plots.accuracy_plot, plots.val_plot, plots.lr_plot):
        assert plot.clipToViewMode() and plot.downsampleMode()[1]  # clip to view, auto down-sampling


def test_refresh_spreads_plots_over_timer_ticks(qtbot):
    plots = TrainingPlots(plots_per_tick=1)
    qtbot.addWidget(plots)
    plots.timer.stop()
    plots.refresh(everything=True)
    plots.add_steps(_steps(1, 11))   # loss, accuracy and lr change
    updated = 0
    while plots.refresh():
        updated += 1
    assert updated == 3
    assert len(plots.lr_curve.getData()[0]) == 10


def test_smoothing_slider_changes_the_smoothed_curve(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    values = np.random.default_rng(1).random(50)
    plots.add_steps([SimpleNamespace(step=i + 1, loss=v, accuracy=0.5, lr=1e-3) for i, v in enumerate(values)])
    plots.set_smoothing(0.0)
    assert np.allclose(plots.loss_curve.getData()[1], values)
    plots.set_smoothing(0.9)
    smooth = plots.loss_curve.getData()[1]
    assert np.std(np.diff(smooth)) < np.std(np.diff(values))


def test_overlays_and_hover_readout(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    rows = [{"kind": "step", "step": s, "loss": 2.0 / s, "accuracy": 0.1, "lr": 1e-3} for s in range(1, 31)]
    rows.append({"kind": "validation", "step": 30, "accuracy": 0.7, "ci95": 0.02})
    plots.set_smoothing(0.0)
    plots.set_overlays([("run A", rows), ("run B", rows[:10])])
    assert plots.n_overlays == 2
    names = [item.name() for item in plots.val_plot.listDataItems()]
    assert "run A" in names and "run B" in names
    plots.add_steps(_steps(1, 21))
    plots.refresh(everything=True)
    text = plots.readouts[0].show_at(10.2)
    assert text.startswith("step 10") and "loss: 0.1" in text and "run A: " in text
    plots.set_overlays([])
    assert plots.n_overlays == 0
    assert [item.name() for item in plots.val_plot.listDataItems() if item.name()] == ["val accuracy"]


def test_split_metric_rows_skips_malformed_rows():
    rows = [{"kind": "step", "step": 1, "loss": 1.0, "accuracy": 0.5, "lr": 0.1},
            {"kind": "step", "step": "x"}, {"kind": "validation", "step": 1, "accuracy": 0.4, "ci95": 0.1},
            {"kind": "other"}]
    steps, vals = split_metric_rows(rows)
    assert steps["step"] == [1.0] and vals["accuracy"] == [0.4]


def test_confusion_matrix_view_is_row_normalised(qtbot):
    view = ConfusionMatrixView()
    qtbot.addWidget(view)
    counts = np.array([[8, 2, 0], [0, 5, 5], [0, 0, 0]])
    view.set_matrix(counts, ["a", "b", "c"])
    assert view.image.image.shape == (3, 3)
    assert np.allclose(view.matrix[0], [0.8, 0.2, 0.0]) and np.allclose(view.matrix[2], 0.0)
    ticks = view.plot.getAxis("bottom")._tickLevels[0]
    assert [label for _, label in ticks] == ["0", "1", "2"]
