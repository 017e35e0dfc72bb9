"""The Adapt panel without drag and drop (issue 22): "Add images..." on the cards and the Test zone (files and a
folder), clicks on empty drop zones, text paste into class names, "+ Class" scrolling to its card, the wheel over
the cards, elided labels with their full text in the tooltip, and a page that does not scroll at 1366x768."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QRect, Qt, QTimer, QUrl
from PySide6.QtGui import QFontMetrics, QGuiApplication, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel, QScrollArea

from studio.panels import adapt_input
from studio.panels.adapt_input import name_from_clipboard
from studio.panels.adapt_panel import AdaptPanel
from studio.widgets.elide import ElidedLabel, elide_middle
from tests.studio.test_adapt_panel import (CLASSES, focus, images_of, mime_for, panel,  # noqa: F401 (fixtures)
                                           protonet_ckpt, protonet_run)

LONG_BANNER = ("Demo: 5 characters of the alphabet Chiic, which the model never saw in training, 5 images each, and "
               "10 other images of them to classify. Drop more images, remove some, add a class: the predictions "
               "follow at once.")


class FakeDialogs:
    """Replaces the file dialogs: records what each was asked and answers with the next prepared paths."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[list[Path]] = []
        self.asked: list[tuple[str, str]] = []   # (kind, title)
        monkeypatch.setattr(adapt_input, "ask_image_files", lambda parent, title: self._answer("files", title))
        monkeypatch.setattr(adapt_input, "ask_image_folder", lambda parent, title: self._answer("folder", title))

    def _answer(self, kind: str, title: str) -> list[Path]:
        self.asked.append((kind, title))
        return self.answers.pop(0) if self.answers else []


def click(qtbot, widget, pos: QPoint | None = None) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=pos if pos is not None else widget.rect().center())


def click_menu_entry(qtbot, button, action) -> None:
    """A real click on the button's menu arrow, then on ``action`` in the menu it opens."""
    menu = button.menu()

    def pick() -> None:
        if not menu.isVisible():
            QTimer.singleShot(20, pick)
            return
        QTest.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())

    QTimer.singleShot(20, pick)
    click(qtbot, button, QPoint(button.width() - 4, button.height() // 2))
    qtbot.waitUntil(lambda: not menu.isVisible(), timeout=10_000)


# -- "Add images..." and empty drop zones ---------------------------------------------------------------------
def test_add_images_on_cards_and_the_test_zone_adds_files_and_shows_predictions(panel, qtbot, monkeypatch,
                                                                               protonet_ckpt, tiny_flat, tmp_path):
    dialogs = FakeDialogs(monkeypatch)
    assert panel.load_checkpoint(protonet_ckpt)
    click(qtbot, panel.add_class_button)
    click(qtbot, panel.add_class_button)
    first, second = (panel.card_list.cards[c.uid] for c in panel.session.support)

    dialogs.answers = [images_of(tiny_flat, CLASSES[0], 0, 3)]
    click(qtbot, first.add_button)                                  # the button: a multi-selection file dialog
    assert dialogs.asked[-1][0] == "files" and first.thumbs.count() == 3 and "Added 3 images" in first.message()

    assert second.placeholder.isVisible()
    dialogs.answers = [images_of(tiny_flat, CLASSES[1], 0, 2)]
    click(qtbot, second.placeholder)                                # a click on the empty drop zone
    assert second.thumbs.count() == 2 and not second.placeholder.isVisible()

    folder = tmp_path / "more of class 1"
    folder.mkdir()
    for path in images_of(tiny_flat, CLASSES[1], 2, 4):
        shutil.copy(path, folder / path.name)
    dialogs.answers = [[folder]]
    click_menu_entry(qtbot, second.add_button, second.add_button.folder_action)   # the menu: a folder
    assert dialogs.asked[-1][0] == "folder" and second.thumbs.count() == 4

    click(qtbot, first.add_button)                                  # a cancelled dialog adds nothing
    assert first.thumbs.count() == 3 and panel.session.class_names() == ["Class 1", "Class 2"]

    zone = panel.test_zone
    assert zone.empty_label.isVisible()
    dialogs.answers = [images_of(tiny_flat, CLASSES[0], 6, 7)]
    click(qtbot, zone.empty_label)                                  # the Test zone's empty drop zone
    assert len(zone.tiles) == 1 and zone.tiles[0].predicted in ("Class 1", "Class 2")
    dialogs.answers = [images_of(tiny_flat, CLASSES[1], 6, 7)]
    click(qtbot, zone.add_button)
    assert len(zone.tiles) == 2 and all(sum(t.probabilities) == pytest.approx(1.0, abs=1e-5) for t in zone.tiles)

    dialogs.answers = [[folder.parent]]                             # a test folder fills the table
    click_menu_entry(qtbot, zone.add_button, zone.add_button.folder_action)
    assert zone.table.rowCount() == 2 and len(zone.folder_predictions) == 2
    assert all("to classify" in title for kind, title in dialogs.asked[-3:])


def test_add_images_before_a_model_is_open_says_so(panel, qtbot, monkeypatch, tiny_flat):
    dialogs = FakeDialogs(monkeypatch)
    card = panel.add_class("cats")
    dialogs.answers = [images_of(tiny_flat, CLASSES[0], 0, 1)]
    click(qtbot, card.add_button)
    assert "Open a model first" in card.message() and card.thumbs.count() == 0


# -- the class name --------------------------------------------------------------------------------------
def test_ctrl_v_in_a_class_name_pastes_text_and_never_a_file_url(panel, qtbot, protonet_ckpt, tiny_flat):
    panel.load_checkpoint(protonet_ckpt)
    card = panel.add_class("Class 1")
    image = images_of(tiny_flat, CLASSES[0], 0, 1)[0]
    clipboard = QGuiApplication.clipboard()

    clipboard.setMimeData(mime_for([image]))                        # a copied file: its name, not its URL
    focus(qtbot, panel, card.name_edit)
    card.name_edit.selectAll()
    qtbot.keyClick(card.name_edit, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert card.name_edit.text() == image.stem and card.thumbs.count() == 0

    clipboard.setText("tabby cats")
    card.name_edit.selectAll()
    qtbot.keyClick(card.name_edit, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert card.name_edit.text() == "tabby cats"
    qtbot.keyClick(card.name_edit, Qt.Key.Key_Return)
    assert panel.session.support[0].name == "tabby cats"

    clipboard.setMimeData(mime_for([image]))                        # focus elsewhere on the card: images
    focus(qtbot, panel, card)
    qtbot.keyClick(card, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert card.thumbs.count() == 1 and card.name_edit.text() == "tabby cats"


def test_name_from_clipboard_never_gives_a_url(tmp_path):
    as_text = QMimeData()
    as_text.setText(QUrl.fromLocalFile(str(tmp_path / "cat.png")).toString() + "\n")
    assert name_from_clipboard(as_text) == "cat"
    remote = QMimeData()
    remote.setUrls([QUrl("https://example.com/images/dog.jpg")])
    assert name_from_clipboard(remote) == "dog"
    lines = QMimeData()
    lines.setText("  golden\tretriever \nsecond line")
    assert name_from_clipboard(lines) == "golden retriever"
    assert name_from_clipboard(None) == ""


# -- scrolling -------------------------------------------------------------------------------------------
def _inside(widget, area: QScrollArea) -> bool:
    viewport = area.viewport()
    return viewport.rect().contains(QRect(widget.mapTo(viewport, QPoint(0, 0)), widget.size()))


def test_plus_class_scrolls_to_the_new_card_and_focuses_its_name(panel, qtbot):
    panel.resize(1000, 480)
    focus(qtbot, panel, panel.add_class_button)
    for number in range(1, 8):
        click(qtbot, panel.add_class_button)
        card = panel.card_list.card_named(f"Class {number}")
        qtbot.waitUntil(lambda: _inside(card, panel.cards_scroll), timeout=5_000)
        assert card.name_edit.hasFocus() and card.name_edit.selectedText() == f"Class {number}"
    assert panel.cards_scroll.verticalScrollBar().value() > 0       # the column did scroll
    qtbot.keyClicks(card.name_edit, "birds")                        # typing replaces the default name
    qtbot.keyClick(card.name_edit, Qt.Key.Key_Return)
    assert panel.session.support[-1].name == "birds"


def wheel(widget, steps: int) -> None:
    """A wheel turn over the middle of ``widget`` (negative: towards the user, scrolling down), passed on to the
    parents until one accepts it, as QApplication does with the wheel events of the window system."""
    position = QPointF(widget.rect().center())
    global_position = QPointF(widget.mapToGlobal(position.toPoint()))
    while widget is not None:
        event = QWheelEvent(position, global_position, QPoint(), QPoint(0, 120 * steps), Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        event.ignore()
        QApplication.sendEvent(widget, event)
        if event.isAccepted() or widget.isWindow():
            return
        position += QPointF(widget.pos())
        widget = widget.parentWidget()


def test_the_wheel_over_the_cards_scrolls_the_cards_not_the_page(qtbot):
    adapt = AdaptPanel()
    page = QScrollArea()                       # as the window shows the Adapt tab (a scroll area in both ways)
    page.setWidget(adapt)
    page.setWidgetResizable(True)
    qtbot.addWidget(page)
    page.resize(1000, 260)                     # lower than the panel: the page itself can scroll
    page.show()
    for _ in range(8):
        adapt.add_class()
    cards, page_bar = adapt.cards_scroll.verticalScrollBar(), page.verticalScrollBar()
    qtbot.waitUntil(lambda: cards.maximum() > 0 and page_bar.maximum() > 0, timeout=5_000)
    cards.setValue(0)
    page_bar.setValue(0)
    card = adapt.card_list.card_named("Class 1")

    wheel(card.count_label, -1)
    assert cards.value() > 0 and page_bar.value() == 0
    cards.setValue(cards.maximum())            # at the end of the column the wheel still stops at the cards
    wheel(adapt.card_list.card_named("Class 8").count_label, -3)
    assert cards.value() == cards.maximum() and page_bar.value() == 0
    cards.setValue(0)
    wheel(card.count_label, 2)
    assert page_bar.value() == 0
    wheel(adapt.test_zone.empty_label, -1)     # elsewhere the page scrolls as before
    assert page_bar.value() > 0


# -- text that does not fit -------------------------------------------------------------------------------
def test_elide_middle_keeps_both_ends():
    label = QLabel()
    metrics = QFontMetrics(label.font())
    text = "Alphabet_01_Zukiish/character07/03.png"
    short = elide_middle(text, metrics, metrics.horizontalAdvance(text) // 2)
    assert short.startswith("Alph") and short.endswith(".png") and "\u2026" in short
    assert metrics.horizontalAdvance(short) <= metrics.horizontalAdvance(text) // 2
    assert elide_middle(text, metrics, 10_000) == text


def test_elided_label_shows_the_full_text_in_its_tooltip(qtbot):
    label = ElidedLabel("Prototypical Networks \u00b7 conv4 (64) \u00b7 28\u00d728 grey \u00b7 step 400 \u00b7 demo.pt")
    label.setToolTip("/models/demo.pt")
    qtbot.addWidget(label)
    label.resize(label.sizeHint())
    label.show()
    assert not label.is_elided() and label.toolTip() == "/models/demo.pt"
    label.resize(120, label.height())
    assert label.is_elided() and label.text().endswith("demo.pt") and label.text().startswith("Proto")
    assert label.toolTip() == label.full_text() + "\n/models/demo.pt"
    assert label.minimumSizeHint().width() < 120 < label.sizeHint().width()


def test_the_adapt_header_hint_and_captions_elide_with_tooltips(panel, qtbot, protonet_ckpt, tiny_flat):
    panel.resize(700, 600)
    assert panel.load_checkpoint(protonet_ckpt)
    panel.add_test_files(images_of(tiny_flat, CLASSES[0], 6, 7))
    header, hint = panel.model_label, panel.test_zone.hint
    qtbot.waitUntil(lambda: header.is_elided() and hint.is_elided(), timeout=5_000)
    assert header.full_text().startswith("Prototypical Networks") and header.full_text().endswith("best.pt")
    assert header.text().endswith(".pt") and header.full_text() in header.toolTip()
    assert str(protonet_ckpt) in header.toolTip()
    assert hint.full_text() in hint.toolTip() and "\u2026" in hint.text()
    caption = panel.test_zone.tiles[0].name_label
    assert caption.full_text() == f"{CLASSES[0]}/06.png"           # the folder says which image it is

    panel.resize(1900, 900)
    qtbot.waitUntil(lambda: not header.is_elided(), timeout=5_000)
    assert header.text() == header.full_text() and header.toolTip() == str(protonet_ckpt)


@pytest.mark.parametrize("size", [(947, 608), (1515, 853)])   # the Adapt page at 1366x768 and 1920x1080
def test_a_long_banner_does_not_make_the_page_scroll(qtbot, size):
    adapt = AdaptPanel()
    page = QScrollArea()
    page.setWidget(adapt)
    page.setWidgetResizable(True)
    qtbot.addWidget(page)
    page.resize(*size)
    page.show()
    adapt.show_banner(LONG_BANNER, "ok")
    qtbot.waitUntil(lambda: adapt.banner.height() >= adapt.banner.heightForWidth(adapt.banner.width()) > 0,
                    timeout=5_000)
    assert page.verticalScrollBar().maximum() == 0 and page.horizontalScrollBar().maximum() == 0
    assert adapt.banner.height() < 80
