"""The Adapt panel: drops on cards and on the test zone, live predictions equal to ``meta-engine predict``,
undo, bad input messages, worker-thread adaptation with stale results discarded, save/export, demo mode."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from engine.cli import main as cli_main
from engine.sessions import support_key
from studio.panels import adapt_panel as adapt_panel_module
from studio.panels.adapt_cards import message_level
from studio.panels.adapt_panel import AdaptPanel
from tests.engine.helpers import tiny_config

torch.set_num_threads(1)

CLASSES = ["class000", "class004", "class009"]


# -- fixtures ------------------------------------------------------------------------------------------
def _train(root: Path, run_dir: Path, algorithm: str, **algo: object) -> Path:
    from engine.training.trainer import Trainer

    config = tiny_config(root, algorithm, steps=2, **algo)
    config.train.val_every, config.train.val_episodes = 2, 2
    summary = Trainer(config, run_dir=run_dir).run()
    assert summary.status == "finished", summary.message
    return run_dir


@pytest.fixture(scope="session")
def protonet_run(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tiny_flat, tmp_path_factory.mktemp("adapt") / "protonet", "protonet")


@pytest.fixture(scope="session")
def protonet_ckpt(protonet_run: Path) -> Path:
    return protonet_run / "checkpoints" / "best.pt"


@pytest.fixture(scope="session")
def maml_ckpt(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = _train(tiny_flat, tmp_path_factory.mktemp("adapt") / "maml", "maml", test_inner_steps=25)
    return run / "checkpoints" / "best.pt"


@pytest.fixture
def panel(qtbot) -> AdaptPanel:
    widget = AdaptPanel()
    qtbot.addWidget(widget)
    widget.resize(1400, 900)
    widget.show()
    yield widget
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=30_000)


def images_of(root: Path, name: str, start: int, stop: int) -> list[Path]:
    return sorted((root / name).glob("*.png"))[start:stop]


def wait_idle(qtbot, panel: AdaptPanel) -> None:
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=30_000)


def focus(qtbot, panel: AdaptPanel, widget) -> None:
    """Activate the panel's window and focus ``widget`` (keyboard shortcuts need both)."""
    panel.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is panel.window(), timeout=5_000)
    widget.setFocus()
    qtbot.waitUntil(widget.hasFocus, timeout=5_000)


def mime_for(paths: list[Path]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def drop(widget, mime: QMimeData) -> QDropEvent:
    """A real drag-enter then drop, delivered through Qt's event dispatch."""
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    return event


def make_classes(panel: AdaptPanel, root: Path, shots: int = 3, names: list[str] = CLASSES) -> None:
    for name in names:
        panel.add_files(panel.add_class(name), images_of(root, name, 0, shots))


# -- drops and live predictions ---------------------------------------------------------------------------
def test_real_drops_on_cards_and_test_zone_show_thumbnails_and_predictions(panel, qtbot, protonet_ckpt, tiny_flat):
    assert panel.load_checkpoint(protonet_ckpt)
    cards = [panel.add_class(name) for name in CLASSES[:2]]
    for card, name in zip(cards, CLASSES[:2]):
        event = drop(card, mime_for(images_of(tiny_flat, name, 0, 3)))
        assert event.isAccepted()
        assert card.thumbs.count() == 3 and "Added 3 images" in card.message()
    assert panel.session.class_names() == CLASSES[:2]

    query = images_of(tiny_flat, CLASSES[1], 6, 7)
    drop(panel.test_zone, mime_for(query))
    tile = panel.test_zone.tiles[0]
    assert tile.predicted in CLASSES[:2]
    assert sum(tile.probabilities) == pytest.approx(1.0, abs=1e-5) and len(tile.probabilities) == 2

    before = list(tile.probabilities)
    drop(panel.add_class(CLASSES[2]), mime_for(images_of(tiny_flat, CLASSES[2], 0, 3)))
    assert len(tile.probabilities) == 3 and tile.probabilities[:2] != before  # re-adapted at once
    qtbot.waitUntil(lambda: panel.map.n_support == 9, timeout=10_000)  # the map follows the predictions
    assert panel.map.n_prototypes == 3 and panel.map.n_queries == 1


def test_predictions_equal_meta_engine_predict(panel, protonet_ckpt, tiny_flat, tmp_path, capsys):
    support_dir, query_dir = tmp_path / "support", tmp_path / "query"
    queries = []
    for name in CLASSES:
        (support_dir / name).mkdir(parents=True)
        for path in images_of(tiny_flat, name, 0, 3):
            shutil.copy(path, support_dir / name / path.name)
        (query_dir / name).mkdir(parents=True)
        for path in images_of(tiny_flat, name, 5, 8):
            shutil.copy(path, query_dir / name / path.name)
        queries += images_of(tiny_flat, name, 5, 8)

    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat)
    panel.add_test_files(queries)
    capsys.readouterr()
    assert cli_main(["predict", "--checkpoint", str(protonet_ckpt), "--support", str(support_dir),
                     "--query", *map(str, queries), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == panel.session.class_names()
    shown = panel.session.predictions()
    assert len(report["predictions"]) == len(queries) == len(shown)
    for row in report["predictions"]:
        assert shown[row["file"]] == pytest.approx(row["probabilities"], abs=2e-6)
        tile = next(t for t in panel.test_zone.tiles if str(t.example.source) == row["file"])
        assert tile.predicted == row["predicted"]

    # a dropped folder fills the table; sub-folders named like the classes give the accuracy
    drop(panel.test_zone, mime_for([query_dir]))
    assert panel.test_zone.table.rowCount() == 9
    assert cli_main(["predict", "--checkpoint", str(protonet_ckpt), "--support", str(support_dir),
                     "--query", str(query_dir), "--json"]) == 0
    folder_report = json.loads(capsys.readouterr().out)
    assert panel.test_zone.accuracy == pytest.approx(folder_report["accuracy"])
    assert "accuracy" in panel.test_zone.folder_label.text()
    predicted = [panel.test_zone.table.item(r, 2).text().split(" ")[0] for r in range(9)]
    assert predicted == [row["predicted"] for row in folder_report["predictions"]]


def test_undo_restores_previous_support_sets(panel, qtbot, protonet_ckpt, tiny_flat):
    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2)
    card_a, card_b = panel.card_list.card_named(CLASSES[0]), panel.card_list.card_named(CLASSES[1])
    before = support_key(panel.session.support)

    focus(qtbot, panel, card_a.thumbs)
    card_a.thumbs.item(0).setSelected(True)
    qtbot.keyClick(card_a.thumbs, Qt.Key.Key_Delete)
    assert card_a.thumbs.count() == 1
    qtbot.keyClick(card_a.thumbs, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert card_a.thumbs.count() == 2 and support_key(panel.session.support) == before

    assert panel.rename_class(card_b, "renamed")
    panel.remove_class(panel.card_list.card_named(CLASSES[2]))
    assert [c.name for c in panel.session.support] == [CLASSES[0], "renamed"]
    assert panel.undo() and [c.name for c in panel.session.support] == [CLASSES[0], "renamed", CLASSES[2]]
    assert len(panel.card_list.card_named(CLASSES[2]).state.examples) == 2
    assert panel.undo() and panel.card_list.card_named(CLASSES[1]) is card_b
    assert card_b.name_edit.text() == CLASSES[1]
    assert panel.session.class_names() == CLASSES


# -- bad input -----------------------------------------------------------------------------------------------
def test_bad_files_duplicates_and_empty_classes_are_explained_on_the_card(panel, protonet_ckpt, tiny_flat, tmp_path):
    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2, names=CLASSES[:2])
    card = panel.card_list.card_named(CLASSES[0])
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(images_of(tiny_flat, CLASSES[0], 5, 6)[0].read_bytes()[:60])

    panel.add_files(card, [notes, truncated])
    assert "notes.txt" in card.message() and "truncated.png" in card.message()
    assert message_level(card.message_label) == "error"
    assert card.thumbs.count() == 2

    panel.add_files(card, images_of(tiny_flat, CLASSES[0], 0, 1) + images_of(tiny_flat, CLASSES[0], 4, 5))
    assert "Already in this class: 00.png" in card.message() and "Added 1 image" in card.message()
    assert card.thumbs.count() == 3

    panel.add_files(card, images_of(tiny_flat, CLASSES[1], 0, 1))
    assert f"Already in another class: 00.png ({CLASSES[1]})" in card.message()

    empty = panel.add_class("empty")
    assert "No images yet" in empty.note()
    assert panel.session.class_names() == CLASSES[:2]  # the empty class is left out

    assert not panel.rename_class(empty, "   ")
    assert "needs a name" in empty.message() and empty.name_edit.text() == "empty"
    assert not panel.rename_class(empty, CLASSES[0].upper())
    assert "already used" in empty.message() and empty.state.name == "empty"

    drop(card, _remote_mime())
    assert "Only local files" in card.message()
    assert card.thumbs.count() == 3 and len(panel.test_zone.tiles) == 0


def _remote_mime() -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl("https://example.com/cat.png")])
    return mime


def test_test_zone_reports_bad_and_duplicate_files(panel, protonet_ckpt, tiny_flat, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    panel.add_test_files([notes])
    assert "Open a model first" in panel.test_zone.message()

    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2, names=CLASSES[:2])
    query = images_of(tiny_flat, CLASSES[0], 7, 8)
    panel.add_test_files(query + [notes])
    assert "notes.txt" in panel.test_zone.message() and "Added 1 image" in panel.test_zone.message()
    panel.add_test_files(query)
    assert "Already in the test zone" in panel.test_zone.message()
    assert len(panel.test_zone.tiles) == 1 and panel.test_zone.tiles[0].predicted in CLASSES[:2]


def test_clipboard_paste_on_a_focused_card(panel, qtbot, protonet_ckpt, tiny_flat):
    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2, names=CLASSES[:2])
    card = panel.card_list.card_named(CLASSES[0])
    image = QImage(str(images_of(tiny_flat, CLASSES[0], 8, 9)[0]))
    QGuiApplication.clipboard().setImage(image)
    focus(qtbot, panel, card.thumbs)
    qtbot.keyClick(card.thumbs, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert card.thumbs.count() == 3
    card.paste_from_clipboard()
    assert card.thumbs.count() == 3 and "Already in this class" in card.message()

    QGuiApplication.clipboard().setMimeData(mime_for(images_of(tiny_flat, CLASSES[0], 9, 10)))
    card.paste_from_clipboard()
    assert card.thumbs.count() == 4


def test_more_than_1000_files_import_in_the_worker_and_can_be_cancelled(panel, qtbot, protonet_ckpt, tiny_flat,
                                                                        tmp_path):
    from PIL import Image

    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2, names=CLASSES[:2])
    folder = tmp_path / "many"
    folder.mkdir()
    pixels = Image.open(images_of(tiny_flat, CLASSES[0], 0, 1)[0])
    for i in range(1001):
        pixels.save(folder / f"{i:04d}.png")
    card = panel.card_list.card_named(CLASSES[0])

    panel.add_files(card, [folder])
    assert panel.is_busy() and panel.import_dialog is not None
    panel.import_dialog.cancel()
    wait_idle(qtbot, panel)
    assert "cancelled" in card.message() and card.thumbs.count() == 2

    drop(card, mime_for([folder]))
    wait_idle(qtbot, panel)
    assert card.thumbs.count() == 1003 and "Added 1001 images" in card.message()
    qtbot.waitUntil(panel.is_current, timeout=30_000)
    assert panel.session.class_names() == CLASSES[:2]


# -- gradient-based algorithms in the worker ---------------------------------------------------------------
def test_maml_adapts_in_the_worker_and_stale_results_are_discarded(panel, qtbot, maml_ckpt, tiny_flat):
    applied = []
    panel.adapted.connect(lambda output: applied.append((output.key, support_key(panel.session.support))))
    panel.load_checkpoint(maml_ckpt)
    make_classes(panel, tiny_flat, shots=2, names=CLASSES[:2])
    assert panel.progress.isVisibleTo(panel)  # the inner loop runs in the worker
    panel.add_test_files(images_of(tiny_flat, CLASSES[0], 6, 8))
    panel.add_files(panel.add_class(CLASSES[2]), images_of(tiny_flat, CLASSES[2], 0, 2))
    panel.remove_examples(panel.card_list.card_named(CLASSES[0]), [panel.session.support[0].examples[0].key])
    wait_idle(qtbot, panel)
    assert panel.is_current() and panel.session.class_names() == CLASSES
    assert applied and all(shown == current for shown, current in applied)
    assert panel.session.output.key == support_key(panel.session.support)
    assert all(len(t.probabilities) == 3 for t in panel.test_zone.tiles)

    current = panel.session.output
    panel._job_result((panel.session.revision - 1, object()))  # a result of an older revision arriving late
    assert panel.session.output is current


# -- models ---------------------------------------------------------------------------------------------------
def test_set_run_uses_best_else_last_and_bad_files_keep_the_model(panel, qtbot, protonet_run, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(protonet_run / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    with qtbot.waitSignal(panel.model_loaded, timeout=60_000):
        assert panel.set_run(run)
    assert panel.session.model_path.name == "last.pt"
    assert not panel.set_run(tmp_path / "empty-run") and "no checkpoint" in panel.banner_text()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert not panel.load_checkpoint(garbage)
    assert "garbage.pt" in panel.banner_text() and panel.session.model_path.name == "last.pt"


def test_a_model_opens_in_the_worker_keeping_the_current_one_until_ready_and_the_latest_open_wins(
        panel, qtbot, protonet_ckpt, maml_ckpt, tiny_flat, tmp_path, monkeypatch):
    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2, names=CLASSES[:2])
    wait_idle(qtbot, panel)
    gate, opened_in = threading.Event(), []
    real_open = adapt_panel_module.open_model

    def slow_open(path, timing_threads=None):
        in_gui_thread = threading.current_thread() is threading.main_thread()
        opened_in.append((in_gui_thread, timing_threads))
        assert in_gui_thread or gate.wait(30)
        return real_open(path, timing_threads)

    monkeypatch.setattr(adapt_panel_module, "open_model", slow_open)
    panel.open_model(maml_ckpt)
    qtbot.waitUntil(lambda: len(opened_in) == 1)
    # while the worker reads the file the panel keeps its model and classes, and says what it is doing
    assert panel.session.model_path == protonet_ckpt and panel.is_busy()
    assert panel.banner_text() == f"Opening {maml_ckpt.parent.parent.name}/{maml_ckpt.name}..."  # the run's name
    assert opened_in == [(False, 1)]  # in the worker, timed single-threaded like the GUI thread
    panel.open_model(protonet_ckpt)  # a second open before the first ends: only the latest is used
    with qtbot.waitSignal(panel.model_loaded, timeout=60_000) as loaded:
        gate.set()
    wait_idle(qtbot, panel)
    assert Path(loaded.args[0]) == protonet_ckpt and panel.session.model_path == protonet_ckpt
    assert panel.session.class_names() == CLASSES[:2] and panel.banner_text() == ""

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    panel.open_model(garbage)
    qtbot.waitUntil(lambda: "Cannot open the model" in panel.banner_text(), timeout=60_000)
    assert "garbage.pt" in panel.banner_text() and panel.session.model_path == protonet_ckpt

    gate.clear()
    panel.open_model(maml_ckpt)  # a model opened here and now meanwhile wins over the one still being read
    qtbot.waitUntil(lambda: len(opened_in) == 4)
    assert panel.load_checkpoint(protonet_ckpt) and opened_in[-1] == (True, None)
    gate.set()
    wait_idle(qtbot, panel)
    assert panel.session.model_path == protonet_ckpt


def test_switching_to_a_colour_model_converts_the_images(panel, protonet_ckpt, tiny_flat, tmp_path):
    from tests.engine.test_adapted import make_checkpoint

    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2, names=CLASSES[:2])
    panel.add_test_files(images_of(tiny_flat, CLASSES[0], 6, 7))
    assert panel.load_checkpoint(make_checkpoint(tmp_path / "colour.pt", image_size=32, channels=3))
    assert all(tuple(e.pixels.shape) == (3, 32, 32) for c in panel.session.support for e in c.examples)
    assert panel.is_current() and len(panel.test_zone.tiles[0].probabilities) == 2


def test_saved_classifier_reloads_in_the_panel_and_in_meta_engine_predict(panel, qtbot, protonet_ckpt, tiny_flat,
                                                                         tmp_path, capsys):
    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat)
    queries = images_of(tiny_flat, CLASSES[1], 6, 9)
    panel.add_test_files(queries)
    saved = panel.save_classifier(tmp_path / "mine.pt")
    assert saved is not None and "Saved" in panel.banner_text()

    other = AdaptPanel()
    qtbot.addWidget(other)
    assert other.load_checkpoint(saved)
    assert [c.name for c in other.session.support] == CLASSES
    assert [c.thumbs.count() for c in other.card_list.cards.values()] == [3, 3, 3]
    other.add_test_files(queries)
    for path in queries:
        assert other.session.predictions()[str(path)] == pytest.approx(panel.session.predictions()[str(path)],
                                                                      abs=1e-6)

    capsys.readouterr()
    assert cli_main(["predict", "--checkpoint", str(saved), "--query", *map(str, queries), "--json"]) == 0
    for row in json.loads(capsys.readouterr().out)["predictions"]:
        assert row["probabilities"] == pytest.approx(panel.session.predictions()[row["file"]], abs=2e-6)

    exported = panel.export_torchscript(tmp_path / "mine.ts")
    from tests.engine.test_adapted import _jit_load

    module = _jit_load(exported)
    x = panel.session.checkpoint.preprocessing.load_many(queries)[0]
    expected = torch.tensor([panel.session.predictions()[str(p)] for p in queries])
    assert torch.allclose(module(x), expected, atol=1e-5)


def test_hovering_a_map_point_shows_its_thumbnail(panel, qtbot, protonet_ckpt, tiny_flat):
    panel.load_checkpoint(protonet_ckpt)
    make_classes(panel, tiny_flat, shots=2)
    qtbot.waitUntil(lambda: panel.map.n_support == 6, timeout=10_000)
    point = panel.map.support_item.points()[0]
    panel.map._hovered(panel.map.support_item, [point], None)
    assert panel.map.popup.isVisibleTo(panel.map.plot)
    assert not panel.map.popup_image.pixmap().isNull()
    assert panel.map.hovered_text == CLASSES[0]
    panel.map._hovered(panel.map.support_item, [], None)
    assert not panel.map.popup.isVisibleTo(panel.map.plot)


# -- demo -----------------------------------------------------------------------------------------------------
def test_demo_without_the_model_file_says_so(panel, monkeypatch, tmp_path):
    monkeypatch.setattr(adapt_panel_module, "DEMO_MODEL", tmp_path / "nowhere.pt")
    assert not panel.start_demo()
    assert "demo model is missing" in panel.banner_text() and "make_demo_model.py" in panel.banner_text()


def test_demo_mode_with_the_shipped_model(panel, qtbot):
    """The shipped model (trained on Omniglot small1) demos its shipped drawings of an alphabet it never saw."""
    assert adapt_panel_module.DEMO_MODEL.is_file(), "assets/demo_model.pt is part of the repository"
    samples = adapt_panel_module.DEMO_MODEL.parent / "demo_samples"
    assert (samples / "LICENSE").is_file(), "the shipped Omniglot drawings keep their licence"
    assert panel.start_demo()
    wait_idle(qtbot, panel)
    qtbot.waitUntil(panel.is_current, timeout=30_000)
    trained_alphabets = {name.split("/")[0] for name in panel.session.checkpoint.split.train}
    assert len(panel.session.support) == 5 and all(len(c.examples) == 5 for c in panel.session.support)
    sources = [e.source for c in panel.session.support for e in c.examples]
    assert all(source.is_relative_to(samples) for source in sources)
    assert {source.parent.parent.name for source in sources}.isdisjoint(trained_alphabets)
    assert "never saw" in panel.banner_text()
    tiles = panel.test_zone.tiles
    assert len(tiles) == 10
    names = panel.session.class_names()
    truth = {f"{c.examples[0].source.parent}": c.name for c in panel.session.support}
    correct = sum(t.predicted == truth[str(t.example.source.parent)] for t in tiles)
    assert all(t.predicted in names for t in tiles) and correct >= 7


def test_a_folder_of_class_folders_dropped_beside_the_cards_makes_one_class_each(panel, protonet_ckpt, tiny_flat,
                                                                                  tmp_path):
    panel.load_checkpoint(protonet_ckpt)
    root = tmp_path / "new classes"
    for name in CLASSES[:2]:
        (root / name).mkdir(parents=True)
        for path in images_of(tiny_flat, name, 0, 3):
            shutil.copy(path, root / name / path.name)
    drop(panel.card_list, mime_for([root]))
    assert [c.name for c in panel.session.support] == CLASSES[:2]
    assert [len(c.examples) for c in panel.session.support] == [3, 3]
    assert panel.is_current() and panel.session.class_names() == CLASSES[:2]

    unrelated = tmp_path / "unrelated" / "other"
    unrelated.mkdir(parents=True)
    shutil.copy(images_of(tiny_flat, CLASSES[0], 6, 7)[0], unrelated / "x.png")
    panel.add_test_files([unrelated.parent])
    assert panel.test_zone.accuracy is None and "no sub-folder is named like a class" in \
        panel.test_zone.folder_label.text()
