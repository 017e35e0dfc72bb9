"""Draw your own examples (issue 17): the draw pad of the class cards and of the test zone, drawn on
with real mouse events (press, moves, release), adds PNG drawings that adapt the classifier at once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from engine.adapted import load_adapted
from engine.sessions import DEMO_MODEL
from studio.panels.adapt_panel import AdaptPanel
from studio.widgets.draw_pad import DrawPad

def ring(rx: float = 40, ry: float = 40) -> list[tuple[float, float]]:
    return [(66 + rx * math.cos(t), 66 + ry * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 25)]


def cross(lean: float = 0) -> list[list[tuple[float, float]]]:
    return [[(30, 66), (100, 66 + lean)], [(100, 30), (30 + lean, 100)]]


CIRCLE = ring()
BAR, SLASH = cross()


@pytest.fixture
def panel(qtbot) -> AdaptPanel:
    widget = AdaptPanel()
    qtbot.addWidget(widget)
    widget.resize(1400, 900)
    widget.show()
    assert widget.load_checkpoint(DEMO_MODEL)
    yield widget
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=30_000)


def draw(pad: DrawPad, *strokes: list[tuple[float, float]]) -> None:
    """Each stroke with real mouse events on the pad: press at its first point, a move to each next one,
    release at its last."""
    for stroke in strokes:
        points = [QPoint(round(x), round(y)) for x, y in stroke]
        QTest.mousePress(pad, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
        for point in points[1:]:
            QTest.mouseMove(pad, point)
        QTest.mouseRelease(pad, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1])


def activate(qtbot, panel: AdaptPanel) -> None:
    panel.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is panel.window(), timeout=5_000)


def open_pad(qtbot, toggle, box) -> DrawPad:
    QTest.mouseClick(toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.isVisible() and box.pad.hasFocus(), timeout=5_000)
    return box.pad


def test_drawn_classes_adapt_at_once_and_a_drawn_test_is_classified(panel, qtbot, tmp_path):
    activate(qtbot, panel)
    for name, drawings in (("ring", [[ring()], [ring(34, 42)]]), ("cross", [cross(), cross(12)])):
        card = panel.add_class(name)
        pad = open_pad(qtbot, card.draw_button, card.draw_box)
        for strokes in drawings:
            draw(pad, *strokes)
            qtbot.keyClick(pad, Qt.Key.Key_Return)            # Enter adds the drawing
            assert pad.is_empty()
        assert card.thumbs.count() == 2 and len(panel.session.class_state(card.uid).examples) == 2

    example = panel.session.support[0].examples[0]
    assert example.source.name.startswith("drawn-") and example.source.suffix == ".png"
    pixels = np.asarray(Image.open(example.source))
    assert pixels.shape == (105, 105) and pixels[0, 0] == 255 and pixels.min() == 0  # Omniglot-like: black on white
    assert tuple(example.pixels.shape) == (1, 28, 28)                                 # at the checkpoint's size

    zone = panel.test_zone
    pad = open_pad(qtbot, zone.draw_button, zone.draw_box)
    draw(pad, ring(38, 36))
    QTest.mouseClick(zone.draw_box.add_button, Qt.MouseButton.LeftButton)     # the Add button does the same
    qtbot.waitUntil(lambda: len(zone.tiles) == 1 and panel.is_current(), timeout=30_000)
    tile = zone.tiles[0]
    assert tile.example.source.name.startswith("drawn-")
    assert tile.name_label.full_text() == tile.example.source.name   # not the session folder's temporary name
    assert len(tile.probabilities) == 2 and tile.predicted == "ring", tile.probabilities

    saved = panel.save_classifier(tmp_path / "drawn.pt")                 # the drawings go with the classifier
    adapted = load_adapted(saved)
    assert adapted.class_names == ["ring", "cross"] and len(adapted.support_names) == 4
    assert all(name.startswith("drawn-") for name in adapted.support_names)
    assert adapted.support_images[0].tolist() == panel.session.support[0].examples[0].pixels.tolist()


def test_ctrl_z_takes_back_a_stroke_then_the_added_drawing_and_esc_clears(panel, qtbot):
    activate(qtbot, panel)
    card = panel.add_class("ring")
    pad = open_pad(qtbot, card.draw_button, card.draw_box)
    draw(pad, BAR, SLASH)
    assert len(pad.strokes) == 2 and len(pad.strokes[0]) == 2 and pad.strokes[0][0][2] is None  # a mouse: no pressure
    qtbot.keyClick(pad, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)    # on the pad: the last stroke
    assert len(pad.strokes) == 1 and len(panel.session.history) == 1          # (only "add class" to undo)
    qtbot.keyClick(pad, Qt.Key.Key_Escape)
    assert pad.is_empty() and not card.draw_box.add_button.isEnabled()

    draw(pad, CIRCLE)
    qtbot.keyClick(pad, Qt.Key.Key_Enter)
    assert card.thumbs.count() == 1
    qtbot.keyClick(pad, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)    # empty pad: the view's undo
    assert card.thumbs.count() == 0 and not panel.session.class_state(card.uid).examples
    assert "Undone" in panel.banner_text()


def test_pen_pressure_widens_the_pad_strokes(qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QPointingDevice, QTabletEvent

    pad = DrawPad()
    qtbot.addWidget(pad)
    device = QPointingDevice.primaryPointingDevice()
    for kind, x, pressure in ((QTabletEvent.Type.TabletPress, 20, 0.2), (QTabletEvent.Type.TabletMove, 60, 0.9),
                              (QTabletEvent.Type.TabletRelease, 100, 0.9)):
        point = QPointF(x, 50)
        event = QTabletEvent(kind, device, point, pad.mapToGlobal(point), pressure, 0, 0, 0, 0, 0,
                             Qt.KeyboardModifier.NoModifier, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton)
        QApplication.sendEvent(pad, event)
    assert [p[2] for p in pad.strokes[0]] == pytest.approx([0.2, 0.9, 0.9])


def test_a_drawing_dragged_out_of_its_card_is_its_png_and_drops_on_the_test_zone(panel, qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QDragEnterEvent, QDropEvent

    def drop(widget, mime) -> None:
        enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(widget, enter)
        assert enter.isAccepted()
        QApplication.sendEvent(widget, QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime,
                                                  Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))

    activate(qtbot, panel)
    source_card, other_card = panel.add_class("ring"), panel.add_class("other")
    pad = open_pad(qtbot, source_card.draw_button, source_card.draw_box)
    draw(pad, CIRCLE)
    qtbot.keyClick(pad, Qt.Key.Key_Return)
    thumbs = source_card.thumbs
    assert thumbs.dragEnabled() and thumbs.count() == 1
    mime = thumbs.mimeData([thumbs.item(0)])                        # what a drag of the thumbnail carries
    drawn = panel.session.class_state(source_card.uid).examples[0].source
    assert [url.toLocalFile() for url in mime.urls()] == [str(drawn)]
    drop(panel.test_zone, mime)
    assert [tile.example.source for tile in panel.test_zone.tiles] == [drawn]
    drop(other_card, mime)                                          # one image is in one class only
    assert other_card.thumbs.count() == 0 and "Already in another class: drawn-" in other_card.message()
