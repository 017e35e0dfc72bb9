"""Issue 22, text and layouts that fit: the window opens no larger than its screen, short texts where the
room is short (the whole sentence in the tooltip), labels that never overlap each other or the curves,
fields that show their first letter, menus as wide as their longest entry."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtWidgets import QApplication

from studio.window.screen_fit import PREFERRED_SIZE, available_geometry, fit_rect, fit_to_screen
from tests.studio.conftest import make_window

SMALL_SCREEN = QRect(0, 0, 1366, 728)  # 1366x768 less a 40 px task bar


def test_fit_rect_shrinks_and_moves_a_rect_into_the_available_area():
    assert fit_rect(QRect(100, 50, 1500, 920), SMALL_SCREEN) == QRect(0, 0, 1366, 728)
    assert fit_rect(QRect(900, 600, 800, 600), SMALL_SCREEN) == QRect(566, 128, 800, 600)  # moved back in
    assert fit_rect(QRect(10, 20, 800, 600), SMALL_SCREEN) == QRect(10, 20, 800, 600)  # fits: unchanged
    second = QRect(1920, 0, 1366, 728)  # a screen to the right of the first
    assert fit_rect(QRect(0, 0, 1500, 920), second) == second


def test_the_window_is_no_larger_than_a_1366x768_screen(qtbot):
    window = make_window(qtbot, restore_settings=False)
    fit_to_screen(window, SMALL_SCREEN)
    QApplication.processEvents()
    frame = window.frameGeometry()
    assert frame.width() <= SMALL_SCREEN.width() and frame.height() <= SMALL_SCREEN.height(), frame
    assert SMALL_SCREEN.contains(frame), frame


def test_the_first_size_fits_the_screen_the_window_opens_on(qtbot):
    window = make_window(qtbot, restore_settings=False)
    QApplication.processEvents()
    available = available_geometry(window)
    expected = QSize(max(window.minimumSizeHint().width(), min(PREFERRED_SIZE.width(), available.width())),
                     max(window.minimumSizeHint().height(), min(PREFERRED_SIZE.height(), available.height())))
    assert window.width() <= max(expected.width(), available.width())
    assert window.height() <= max(expected.height(), available.height()), (window.size(), available)
    assert window.runs_dock.height() >= 150  # several rows of runs, not one


def test_the_end_of_a_run_fits_the_toolbar_at_1366_with_the_full_sentence_in_the_tooltip(qtbot):
    from types import SimpleNamespace

    window = make_window(qtbot, restore_settings=False)
    window.resize(1366, 728)
    QApplication.processEvents()
    summary = SimpleNamespace(status="finished", steps_done=1200, best_val_accuracy=0.4962, run_dir=None)
    window._on_finished(summary)
    QApplication.processEvents()
    label = window.training_panel.rate_label
    assert label.full_text() == "best val. acc. 49.6%"
    assert not label.is_elided(), (label.text(), label.width())
    assert "best validation accuracy of this run: 49.62%" in label.toolTip()


def _visible_texts_in(view_box) -> list:
    import pyqtgraph as pg

    area = view_box.sceneBoundingRect()
    return [item for item in view_box.scene().items()
            if isinstance(item, (pg.TextItem, pg.InfLineLabel, pg.LegendItem)) and item.isVisible()
            and item.sceneBoundingRect().intersects(area)]


def test_the_histograms_mean_and_ci_are_named_above_the_plot_not_over_the_bars(qtbot):
    from studio.widgets.accuracy_histogram import AccuracyHistogram

    plot = AccuracyHistogram()
    qtbot.addWidget(plot)
    plot.resize(520, 220)
    plot.show()
    bins = [(0.5 + i * 0.05, 0.55 + i * 0.05, list(range(i * 3, i * 3 + 1 + i % 3))) for i in range(8)]
    plot.set_data(bins, mean=0.656, ci95=0.022)
    QApplication.processEvents()
    view_box = plot.getPlotItem().getViewBox()
    assert _visible_texts_in(view_box) == []  # nothing written over the bars and lines
    title = plot.getPlotItem().titleLabel
    assert "mean 65.6%" in title.text and "95% CI 63.4% \u2013 67.8%" in title.text
    assert not title.sceneBoundingRect().intersects(view_box.sceneBoundingRect())


def test_the_inner_loop_plots_key_is_a_line_above_the_plots_not_over_the_curves(qtbot):
    from types import SimpleNamespace

    import torch

    from studio.widgets.trajectory_plot import TrajectoryPlot

    plot = TrajectoryPlot()
    qtbot.addWidget(plot)
    plot.resize(560, 420)
    plot.show()
    curve = torch.linspace(0.2, 0.9, 6)
    trajectory = SimpleNamespace(steps=5, query_accuracy=curve, support_accuracy=curve, query_loss=1 - curve,
                                 support_loss=1 - curve, train_steps=1, default_steps=3)
    plot.set_trajectory(trajectory)
    QApplication.processEvents()
    for inner in (plot.accuracy_plot, plot.loss_plot):
        view_box = inner.getViewBox()
        assert _visible_texts_in(view_box) == [], inner.titleLabel.text
        assert not plot.key.sceneBoundingRect().intersects(view_box.sceneBoundingRect())
    assert "training inner steps: 1" in plot.key.text and "adapt default: 3" in plot.key.text
    assert "query" in plot.key.text and "support" in plot.key.text


def test_a_class_cards_name_shows_its_first_letters_when_the_card_is_narrow(qtbot):
    from engine.api import ClassState
    from studio.panels.adapt_cards import ClassCard

    card = ClassCard(ClassState(uid=1, name="Alphabet_of_the_Magi/character01"), "#1f77b4")
    qtbot.addWidget(card)
    card.resize(220, card.sizeHint().height())
    card.show()
    QApplication.processEvents()
    assert card.name_edit.cursorPosition() == 0  # scrolled to its start: "Alphabet…", not "…acter01"
    card.set_state(ClassState(uid=1, name="Tifinagh/character55_and_a_long_tail"), "#1f77b4")
    assert card.name_edit.cursorPosition() == 0


def test_a_narrow_class_card_shows_its_whole_short_name_before_its_image_count(qtbot):
    """At 1366x768 five cards read "Chiic 0": the image count and the buttons took the room of the name."""
    from engine.api import ClassState
    from studio.panels.adapt_cards import ClassCard

    cards = []
    for uid in (1, 2):
        card = ClassCard(ClassState(uid=uid, name=f"Chiic 0{uid}"), "#1f77b4")
        qtbot.addWidget(card)
        card.count_label.setText("5 images")
        card.resize(card.minimumSizeHint().width(), card.sizeHint().height())
        card.show()
        cards.append(card)
    QApplication.processEvents()
    for card in cards:
        edit = card.name_edit
        assert edit.width() >= edit.fontMetrics().horizontalAdvance(edit.text()), (edit.width(), edit.text())
