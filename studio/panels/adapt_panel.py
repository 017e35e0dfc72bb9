"""The Adapt panel: few-shot learning live. Make new classes by dropping a handful of images on class
cards; the trained model adapts at once (no retraining of the network) and classifies test images.

* ProtoNet, Matching Networks and SimpleShot adapt directly (one forward pass); MAML, Reptile and the
  fine-tuning baselines run their inner loop in a worker thread (``studio.worker.run_in_worker``) with
  a small progress bar. Every change bumps a generation counter; results of an older generation are
  dropped, and a running inner loop is cancelled when a newer change arrives.
* Works with the current run, any run of the history, a checkpoint file, or a saved adapted
  classifier; images are converted with the checkpoint's preprocessing (size, channels).
* Saves the adapted classifier (``engine.adapted``) for the panel and ``meta-engine predict``, and
  exports it to TorchScript.
* "Demo" loads ``assets/demo_model.pt`` and five characters of an alphabet the model never saw.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QLabel, QProgressBar, QProgressDialog,
                               QPushButton, QScrollArea, QSizePolicy, QSplitter, QVBoxLayout, QWidget)

from engine.data.folder import IMAGE_EXTENSIONS, SkippedFile
from engine.errors import EngineError
from studio.panels.adapt_cards import (LEVEL_COLOURS, ClassCard, colour_for, mime_paths, set_message,
                                      set_style)
from studio.panels.adapt_map import EmbeddingMap
from studio.panels.adapt_model import (BULK_FILES, CACHEABLE_ALGORITHMS, FAST_ALGORITHMS, MAX_SYNC_IMAGES,
                                       AdaptationCancelled, AdaptOutput, ClassState, DecodeResult, DropListing,
                                       Example, FeatureCache, SupportSet,
                                       UndoStack, adapt_and_predict, decode_files, list_dropped, map_data,
                                       name_problem, new_uid, next_class_name, reprocess, support_key,
                                       usable_classes)
from studio.panels.adapt_test_zone import TestZone
from studio.worker import WorkerHandle, run_in_worker

DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo_model.pt"
DEMO_CLASSES, DEMO_SHOTS, DEMO_QUERIES = 5, 5, 2
MAX_LISTED_PROBLEMS = 4


class _CardList(QWidget):
    """The column of class cards; files dropped between cards make new classes."""

    files_dropped = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        self.setAcceptDrops(True)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(2, 2, 6, 2)
        self.layout_.setSpacing(8)
        self.layout_.addStretch(1)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        paths, _ = mime_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)


class AdaptPanel(QWidget):
    """Few-shot adaptation playground (see the module docstring)."""

    adapted = Signal(object)       # AdaptOutput, after the predictions on screen were updated
    model_loaded = Signal(str)     # path of the model now in use

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.algorithm: Any = None
        self.checkpoint: Any = None
        self.model_path: Path | None = None
        self.support: SupportSet = ()
        self.undo_stack = UndoStack()
        self.cards: dict[int, ClassCard] = {}
        self._card_order: list[ClassCard] = []   # the cards in layout order
        self.colours: dict[int, str] = {}
        self.tile_examples: list[Example] = []
        self.folder_examples: list[Example] = []
        self.folder_name: str | None = None
        self.generation = 0
        self.output: AdaptOutput | None = None
        self.output_generation = -1
        self._job: WorkerHandle | None = None
        self._job_pending = False
        self._background: list[WorkerHandle] = []   # imports and demo preparation until their `done`
        self.import_dialog: QProgressDialog | None = None
        self._clipboard_dir: tempfile.TemporaryDirectory | None = None
        self.feature_cache: FeatureCache | None = None   # per-image features of the current model
        self._build()
        self._update_controls()

    # =================================================================================== layout
    def _build(self) -> None:
        self.open_button = QPushButton("Open model...")
        self.open_button.setToolTip("A training checkpoint (.pt) or a saved adapted classifier")
        self.open_button.clicked.connect(self._open_dialog)
        self.demo_button = QPushButton("Demo")
        self.demo_button.setToolTip("Load the bundled glyph model and five characters of an alphabet it never saw")
        self.demo_button.clicked.connect(self.start_demo)
        self.model_label = QLabel("No model. Open a checkpoint, pick a run, or press Demo.")
        self.model_label.setObjectName("model_label")
        self.model_label.setStyleSheet("color: #444;")
        self.model_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last change of the classes (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        self.save_button = QPushButton("Save classifier...")
        self.save_button.setToolTip("Save the classes, their images and the fitted classifier to one file "
                                    "(reopen it here or use it with meta-engine predict)")
        self.save_button.clicked.connect(self._save_dialog)
        self.export_button = QPushButton("Export TorchScript...")
        self.export_button.setToolTip("A TorchScript module: normalised images [B, C, H, W] -> probabilities")
        self.export_button.clicked.connect(self._export_dialog)
        self.progress = QProgressBar()
        self.progress.setObjectName("adapt_progress")
        self.progress.setFixedWidth(110)
        self.progress.setFixedHeight(14)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        self.status_label = QLabel("")
        self.status_label.setObjectName("adapt_status")
        self.status_label.setStyleSheet("color: #666;")

        toolbar = QHBoxLayout()
        toolbar.setSpacing(6)
        toolbar.addWidget(self.open_button)
        toolbar.addWidget(self.demo_button)
        toolbar.addSpacing(8)
        toolbar.addWidget(self.model_label, 1)
        toolbar.addWidget(self.progress)
        toolbar.addWidget(self.status_label)
        toolbar.addSpacing(8)
        toolbar.addWidget(self.undo_button)
        toolbar.addWidget(self.save_button)
        toolbar.addWidget(self.export_button)

        self.banner = QLabel("")
        self.banner.setObjectName("adapt_banner")
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)

        classes_title = QLabel("New classes")
        classes_title.setStyleSheet("font-weight: 600; font-size: 11pt;")
        self.add_class_button = QPushButton("+ Class")
        self.add_class_button.setToolTip("Add a class card, then drop a few images on it")
        self.add_class_button.clicked.connect(lambda: self.add_class())
        classes_header = QHBoxLayout()
        classes_header.addWidget(classes_title)
        classes_header.addStretch(1)
        classes_header.addWidget(self.add_class_button)
        self.card_list = _CardList()
        self.card_list.files_dropped.connect(self.add_classes_from_drop)
        self.cards_scroll = QScrollArea()
        self.cards_scroll.setWidgetResizable(True)
        self.cards_scroll.setWidget(self.card_list)
        self.cards_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.cards_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        hint = QLabel("Drop images or folders on a card \u00b7 Ctrl+V pastes \u00b7 Delete removes \u00b7 "
                      "Ctrl+Z undoes \u00b7 drop sub-folders here to make one class each")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #888; font-size: 8pt;")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(classes_header)
        left_layout.addWidget(self.cards_scroll, 1)
        left_layout.addWidget(hint)

        self.test_zone = TestZone()
        self.test_zone.files_dropped.connect(self.add_test_files)
        self.test_zone.images_pasted.connect(self._test_images_pasted)
        self.test_zone.remote_dropped.connect(
            lambda urls: self.test_zone.show_message(_remote_message(urls), "error"))
        self.test_zone.clear_requested.connect(self.clear_tests)
        self.test_zone.remove_requested.connect(self.remove_test_image)
        self.map = EmbeddingMap()

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.test_zone)
        right.addWidget(self.map)
        right.setStretchFactor(0, 1)
        right.setStretchFactor(1, 1)
        right.setSizes([400, 500])
        right.setChildrenCollapsible(False)
        self.main_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.main_splitter.addWidget(left)
        self.main_splitter.addWidget(right)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setSizes([470, 1000])
        self.main_splitter.setChildrenCollapsible(False)
        left.setMinimumWidth(330)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(toolbar)
        layout.addWidget(self.banner)
        layout.addWidget(self.main_splitter, 1)

        undo = QShortcut(QKeySequence(QKeySequence.StandardKey.Undo), self)
        undo.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        undo.activated.connect(self.undo)

    # =================================================================================== messages
    def show_banner(self, text: str, level: str = "info") -> None:
        """A message above the panel ('' hides it)."""
        set_message(self.banner, text, level)
        backgrounds = {"error": "#fdecea", "warning": "#fff4e5", "ok": "#edf7ed"}
        set_style(self.banner, f"color: {LEVEL_COLOURS.get(level, LEVEL_COLOURS['info'])}; background: "
                               f"{backgrounds.get(level, '#e8f1fb')}; border-radius: 4px; padding: 5px 8px;")

    def banner_text(self) -> str:
        return self.banner.text() if self.banner.isVisibleTo(self) else ""

    # =================================================================================== model
    def set_run(self, run: Any) -> bool:
        """Use a run's best checkpoint (else its last one); ``run`` is a run folder or a RunRecord."""
        run_dir = Path(getattr(run, "run_dir", run))
        for name in ("best.pt", "last.pt"):
            path = run_dir / "checkpoints" / name
            if path.is_file():
                return self.load_checkpoint(path)
        self.show_banner(f"The run {run_dir.name} has no checkpoint yet; the Adapt view keeps its current model.",
                         "warning")
        return False

    def load_checkpoint(self, path: Path | str) -> bool:
        """Load a training checkpoint or a saved adapted classifier; the classes on screen are kept
        (converted to the new model's image size) unless the file brings its own."""
        from engine.adapted import is_adapted_file, load_adapted
        from engine.training.checkpoint import load_algorithm

        path = Path(path)
        adapted = None
        try:
            if is_adapted_file(path):
                adapted = load_adapted(path)
                algorithm, checkpoint = adapted.algorithm, adapted.checkpoint
            else:
                algorithm, checkpoint = load_algorithm(path)
        except EngineError as error:
            self.show_banner(f"Cannot open the model: {error}", "error")
            return False
        self._cancel_job()
        self.algorithm, self.checkpoint, self.model_path = algorithm, checkpoint, path
        cacheable = checkpoint.config.algorithm.name in CACHEABLE_ALGORITHMS
        self.feature_cache = FeatureCache(algorithm.backbone) if cacheable else None
        self.output = None
        self.tile_examples = [reprocess(e, checkpoint.preprocessing) for e in self.tile_examples]
        self.folder_examples = [reprocess(e, checkpoint.preprocessing) for e in self.folder_examples]
        self.support = self._conform(self.support)
        self.test_zone.set_tiles(self.tile_examples)
        self.test_zone.set_folder(self.folder_name, self.folder_examples)
        self.model_label.setText(self._describe_model(path, adapted is not None))
        self.model_label.setToolTip(str(path))
        self.show_banner("")
        if adapted is not None:
            self._commit(self._support_from_adapted(adapted), "open saved classifier")
        else:
            self._sync_cards()
            self.refresh()
        self.model_loaded.emit(str(path))
        return True

    def _describe_model(self, path: Path, adapted: bool) -> str:
        config, prep = self.checkpoint.config, self.checkpoint.preprocessing
        title = config.algorithm.title or config.algorithm.name
        colour = "grey" if prep.channels == 1 else "colour"
        kind = "adapted classifier" if adapted else f"step {self.checkpoint.step}"
        return (f"<b>{title}</b> \u00b7 {config.model.backbone} ({config.model.hidden_channels}) \u00b7 "
                f"{prep.image_size}\u00d7{prep.image_size} {colour} \u00b7 {kind} \u00b7 {path.name}")

    def _support_from_adapted(self, adapted: Any) -> SupportSet:
        prep = adapted.preprocessing
        images = adapted.support_images
        if images.dtype != torch.uint8:  # float support saved by another tool: back to pixels for display
            images = (images * prep.std + prep.mean).mul(255).round().clamp(0, 255).to(torch.uint8)
        names = adapted.support_names or [f"image {i + 1}" for i in range(len(images))]
        classes = []
        stem = adapted.path.name if adapted.path is not None else "classifier"
        for label, class_name in enumerate(adapted.class_names):
            examples = tuple(Example(f"saved:{stem}:{i}", names[i], images[i].clone())
                             for i in range(len(images)) if int(adapted.support_labels[i]) == label)
            classes.append(ClassState(new_uid(), class_name, examples))
        return tuple(classes)

    def _conform(self, support: SupportSet) -> SupportSet:
        """The support set with every image at the current model's preprocessing."""
        if self.checkpoint is None:
            return support
        prep = self.checkpoint.preprocessing
        shape = (prep.channels, prep.image_size, prep.image_size)
        return tuple(replace(c, examples=tuple(e if tuple(e.pixels.shape) == shape else reprocess(e, prep)
                                               for e in c.examples)) for c in support)

    # =================================================================================== classes
    def add_class(self, name: str | None = None) -> ClassCard:
        """Add an (empty) class card and return it; ``name`` defaults to ``Class N``."""
        name = (name or "").strip() or next_class_name(self.support)
        if name_problem(name, self.support) is not None:
            name = next_class_name(self.support)
        state = ClassState(new_uid(), name)
        self._commit(self.support + (state,), f"add class {name}")
        card = self.cards[state.uid]
        card.name_edit.setFocus()
        self.cards_scroll.ensureWidgetVisible(card)
        return card

    def remove_class(self, card: ClassCard) -> None:
        self._commit(tuple(c for c in self.support if c.uid != card.uid), f"remove class {card.state.name}")

    def rename_class(self, card: ClassCard, name: str) -> bool:
        """Rename a class; an empty or already used name is refused with a message on the card."""
        problem = name_problem(name, self.support, own_uid=card.uid)
        if problem is not None:
            card.show_message(problem + " The name was not changed.", "error")
            card.reset_name()
            return False
        name = name.strip()
        if name == card.state.name:
            return True
        self._commit(tuple(replace(c, name=name) if c.uid == card.uid else c for c in self.support),
                     f"rename {card.state.name} to {name}")
        card.show_message("")
        return True

    def card_named(self, name: str) -> ClassCard | None:
        for state in self.support:
            if state.name == name:
                return self.cards[state.uid]
        return None

    def add_classes_from_drop(self, paths: Sequence[Path]) -> None:
        """Files dropped between the cards: each folder whose sub-folders hold images gives one class per
        sub-folder; anything else goes to one new class."""
        loose: list[Path] = []
        for path in map(Path, paths):
            subfolders = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
            subfolders = [p for p in subfolders if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in p.iterdir())]
            if subfolders:
                for folder in subfolders:
                    card = self.add_class(folder.name)
                    self.add_files(card, [folder])
            else:
                loose.append(path)
        if loose:
            name = loose[0].name if len(loose) == 1 and loose[0].is_dir() else None
            self.add_files(self.add_class(name), loose)

    # =================================================================================== support images
    def add_files(self, card: ClassCard, paths: Sequence[Path | str]) -> None:
        """Image files and folders dropped on a card become its support examples."""
        if not self._model_ready(card.show_message):
            return
        listing = list_dropped(paths)
        if not listing.files and not listing.skipped:
            card.show_message("Nothing to add: the folder holds no files.", "warning")
            return
        if len(listing.files) > BULK_FILES:
            self._bulk_decode(listing, lambda result: self._add_decoded(card.uid, listing, result),
                              f"Adding {len(listing.files)} images to {card.state.name}")
            return
        self._add_decoded(card.uid, listing, decode_files(listing.files, self.checkpoint.preprocessing))

    def add_images(self, card: ClassCard, images: Sequence[QImage]) -> None:
        """Pasted clipboard images become support examples (saved as PNG files in a temporary folder)."""
        if not self._model_ready(card.show_message):
            return
        self.add_files(card, [self._clipboard_file(image) for image in images])

    def _add_decoded(self, uid: int, listing: DropListing, result: DecodeResult) -> None:
        card = self.cards.get(uid)
        if card is None:
            self.show_banner("The class was removed before its images were decoded; nothing was added.", "warning")
            return
        if result.cancelled:
            card.show_message(f"Import cancelled: none of the {len(listing.files)} files was added.", "warning")
            return
        state = next(c for c in self.support if c.uid == uid)
        result = self._at_current_size(result)
        owner = {e.key: c.name for c in self.support for e in c.examples}
        added: list[Example] = []
        duplicates, elsewhere = [], []
        for example in result.examples:
            if example.key in owner or any(e.key == example.key for e in added):
                (duplicates if owner.get(example.key, state.name) == state.name else elsewhere).append(
                    (example.name, owner.get(example.key, state.name)))
                continue
            added.append(replace(example, truth=None))
        skipped = listing.skipped + result.skipped
        card.show_message(*_drop_message(len(added), skipped, duplicates, elsewhere, "this class"))
        if added:
            new_state = replace(state, examples=state.examples + tuple(added))
            self._commit(tuple(new_state if c.uid == uid else c for c in self.support),
                         f"add {len(added)} image(s) to {state.name}")

    def remove_examples(self, card: ClassCard, keys: Sequence[str]) -> None:
        """Remove support images (Delete key or context menu)."""
        state = next(c for c in self.support if c.uid == card.uid)
        keep = tuple(e for e in state.examples if e.key not in set(keys))
        if len(keep) == len(state.examples):
            return
        n = len(state.examples) - len(keep)
        self._commit(tuple(replace(c, examples=keep) if c.uid == card.uid else c for c in self.support),
                     f"remove {n} image(s) from {state.name}")
        card.show_message(f"Removed {n} image{'s' if n != 1 else ''} (Ctrl+Z brings {'them' if n != 1 else 'it'} "
                          "back).", "info")

    def undo(self) -> bool:
        """Restore the support set as it was before the last change."""
        item = self.undo_stack.pop()
        if item is None:
            self.show_banner("Nothing to undo.", "info")
            return False
        snapshot, description = item
        self.support = self._conform(snapshot)
        self._sync_cards()
        self.show_banner(f"Undone: {description}.", "info")
        self.refresh()
        return True

    def _commit(self, support: SupportSet, description: str) -> None:
        self.undo_stack.push(self.support, description)
        self.support = support
        self._sync_cards()
        self.refresh()

    def _sync_cards(self) -> None:
        """Make the card widgets match ``self.support`` (order, names, thumbnails, notes)."""
        wanted = {c.uid for c in self.support}
        for uid in [uid for uid in self.cards if uid not in wanted]:
            card = self.cards.pop(uid)
            card.setParent(None)
            card.deleteLater()
        included = len(usable_classes(self.support)) >= 2
        layout = self.card_list.layout_
        order = list(self._card_order)
        if [c.uid for c in order] != [s.uid for s in self.support]:
            for card in order:
                if card.uid in self.cards:
                    layout.removeWidget(card)
            order = []
        for index, state in enumerate(self.support):
            colour = self.colours.setdefault(state.uid, self._free_colour())
            card = self.cards.get(state.uid)
            if card is None:
                card = ClassCard(state, colour)
                card.files_dropped.connect(self.add_files)
                card.images_pasted.connect(self.add_images)
                card.remove_requested.connect(self.remove_examples)
                card.rename_requested.connect(self.rename_class)
                card.delete_requested.connect(self.remove_class)
                card.remote_dropped.connect(lambda c, urls: c.show_message(_remote_message(urls), "error"))
                self.cards[state.uid] = card
            if not order:
                layout.insertWidget(index, card)
                card.show()
            card.set_state(state, colour, included=included)
        self._card_order = [self.cards[s.uid] for s in self.support]
        self._update_controls()

    def _free_colour(self) -> str:
        used = {self.colours[c.uid] for c in self.support if c.uid in self.colours}
        for index in range(64):
            if colour_for(index) not in used:
                return colour_for(index)
        return colour_for(len(used))

    # =================================================================================== test images
    def add_test_files(self, paths: Sequence[Path | str]) -> None:
        """Dropped test images become tiles; a dropped folder fills the table (replacing the previous one)."""
        if not self._model_ready(self.test_zone.show_message):
            return
        listing = list_dropped(paths)
        if not listing.files and not listing.skipped:
            self.test_zone.show_message("Nothing to classify: the folder holds no files.", "warning")
            return
        if len(listing.files) > BULK_FILES:
            self._bulk_decode(listing, lambda result: self._add_test_decoded(listing, paths, result),
                              f"Decoding {len(listing.files)} test images")
            return
        self._add_test_decoded(listing, paths, decode_files(listing.files, self.checkpoint.preprocessing,
                                                            truth=listing.truth))

    def _add_test_decoded(self, listing: DropListing, paths: Sequence[Path | str], result: DecodeResult) -> None:
        if result.cancelled:
            self.test_zone.show_message(f"Import cancelled: none of the {len(listing.files)} files was added.",
                                        "warning")
            return
        result = self._at_current_size(result)
        folders = [Path(p) for p in paths if Path(p).is_dir()]
        in_folder = [e for e in result.examples if e.source is not None and _under(e.source, folders)]
        loose = [e for e in result.examples if not (e.source is not None and _under(e.source, folders))]
        shown = {e.key for e in self.tile_examples}
        duplicates = [(e.name, "the test zone") for e in loose if e.key in shown]
        new_tiles = []
        for example in loose:
            if example.key not in shown:
                shown.add(example.key)
                new_tiles.append(example)
        self.tile_examples = self.tile_examples + new_tiles
        if folders:
            self.folder_examples = in_folder
            self.folder_name = folders[0].name if len(folders) == 1 else f"{len(folders)} folders"
            self.test_zone.set_folder(self.folder_name, self.folder_examples)
        text, level = _drop_message(len(new_tiles) + len(in_folder), listing.skipped + result.skipped, duplicates,
                                    [], "the test zone")
        self.test_zone.show_message(text, level)
        self.test_zone.set_tiles(self.tile_examples)
        self.refresh()

    def _test_images_pasted(self, images: Sequence[QImage]) -> None:
        if self._model_ready(self.test_zone.show_message):
            self.add_test_files([self._clipboard_file(image) for image in images])

    def remove_test_image(self, key: str) -> None:
        self.tile_examples = [e for e in self.tile_examples if e.key != key]
        self.test_zone.set_tiles(self.tile_examples)
        self.refresh()

    def clear_tests(self) -> None:
        self.tile_examples, self.folder_examples, self.folder_name = [], [], None
        self.test_zone.set_tiles([])
        self.test_zone.set_folder(None, [])
        self.test_zone.show_message("")
        self.refresh()

    # =================================================================================== adaptation
    def refresh(self) -> None:
        """Re-adapt (or reuse the predictor when only the test images or names changed) and update the view."""
        self.generation += 1
        self._update_controls()
        classes = usable_classes(self.support)
        if self.algorithm is None:
            return
        if len(classes) < 2:
            self._cancel_job()
            self.output = None
            self._show_no_classifier(classes)
            return
        if self._job is not None:  # one job at a time: stop it; the latest state is adapted when it is done
            self._job.stop()
            self._job_pending = True
            return
        predictor = self.output.predictor if self.output and self.output.key == support_key(self.support) else None
        n_images = sum(len(c.examples) for c in classes) + len(self.tile_examples) + len(self.folder_examples)
        fast = self.checkpoint.config.algorithm.name in FAST_ALGORITHMS or predictor is not None
        if fast and n_images <= MAX_SYNC_IMAGES:
            self._adapt_now(predictor)
        else:
            self._start_job(predictor)

    def _adapt_now(self, predictor: Any) -> None:
        """Adapt in the GUI thread; the predictions show at once, the map follows in the next event-loop turn."""
        try:
            output = adapt_and_predict(self.algorithm, self.checkpoint.preprocessing, self.support,
                                       self.tile_examples + self.folder_examples, predictor=predictor,
                                       with_map=False, feature_cache=self.feature_cache)
        except (EngineError, RuntimeError, ValueError) as error:
            self.show_banner(f"Adaptation failed: {error}", "error")
            return
        self._apply(self.generation, output)
        QTimer.singleShot(0, lambda generation=self.generation: self._deferred_map(generation))

    def _deferred_map(self, generation: int) -> None:
        if generation != self.generation or self.output is None or self.output_generation != generation:
            return  # a newer change already scheduled its own map
        try:
            self.output.map = map_data(self.output.predictor, self.checkpoint.preprocessing, self.support,
                                       self.tile_examples + self.folder_examples, self.output.query_probs)
        except (RuntimeError, ValueError) as error:
            self.map.clear(f"No map: {error}")
            return
        self._show_map(self.output)

    def _start_job(self, predictor: Any) -> None:
        generation = self.generation
        algorithm, prep, cache = self.algorithm, self.checkpoint.preprocessing, self.feature_cache
        support, queries = self.support, self.tile_examples + self.folder_examples

        def job(progress, should_stop):
            try:
                return generation, adapt_and_predict(algorithm, prep, support, queries, predictor=predictor,
                                                     progress=progress, should_stop=should_stop,
                                                     feature_cache=cache)
            except AdaptationCancelled:
                return generation, None

        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.status_label.setText("adapting...")
        self._job_pending = False
        handle = run_in_worker(job, on_result=self._job_result,
                               on_error=lambda message: self._job_error(generation, message),
                               on_progress=self._job_progress)
        handle.done.connect(lambda: self._job_done(handle))
        self._job = handle

    def _job_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.status_label.setText(f"inner loop {done}/{total}")

    def _job_result(self, value: tuple[int, AdaptOutput | None]) -> None:
        generation, output = value
        if output is not None and generation == self.generation:
            self._apply(generation, output)

    def _job_error(self, generation: int, message: str) -> None:
        if generation == self.generation:  # an error of a stale job is moot
            self.show_banner(f"Adaptation failed: {message}", "error")

    def _job_done(self, handle: WorkerHandle) -> None:
        if handle is not self._job:
            return
        self._job = None
        self.progress.setVisible(False)
        if self._job_pending:  # a change arrived while the job ran: adapt to the latest state
            self._job_pending = False
            self.refresh()
        self._update_controls()

    def _cancel_job(self) -> None:
        if self._job is not None:
            self._job.stop()
        self._job_pending = False

    def is_busy(self) -> bool:
        """True until every adaptation, import and demo preparation in the worker has delivered its result."""
        return self._job is not None or bool(self._background)

    def _track(self, handle: WorkerHandle) -> WorkerHandle:
        self._background.append(handle)
        handle.done.connect(lambda: self._background.remove(handle) if handle in self._background else None)
        return handle

    def is_current(self) -> bool:
        """True when the predictions on screen belong to the classes and test images on screen."""
        return self.output is not None and self.output_generation == self.generation

    def _apply(self, generation: int, output: AdaptOutput) -> None:
        """Show an adaptation result (only called for the current generation)."""
        self.output, self.output_generation = output, generation
        names = [self._state(uid).name for uid in output.class_uids]
        colours = [self.colours[uid] for uid in output.class_uids]
        probs = output.query_probs.tolist()
        n_tiles = len(self.tile_examples)
        self.test_zone.set_predictions(names, colours, probs[:n_tiles], probs[n_tiles:])
        if output.map is not None:
            self._show_map(output)
        n_support = sum(len(c.examples) for c in usable_classes(self.support))
        self.status_label.setText(f"{len(names)} classes \u00b7 {n_support} images \u00b7 updated in "
                                  f"{1000 * output.seconds:.0f} ms")
        self._update_controls()
        self.adapted.emit(output)

    def _show_map(self, output: AdaptOutput) -> None:
        if output.map is None:
            self.map.clear("This algorithm has no embedding to draw.")
            return
        names = [self._state(uid).name for uid in output.class_uids]
        colours = [self.colours[uid] for uid in output.class_uids]
        support_examples = [e for c in usable_classes(self.support) for e in c.examples]
        self.map.set_map(output.map, names, colours, support_examples, self.tile_examples + self.folder_examples)

    def _show_no_classifier(self, classes: list[ClassState]) -> None:
        text = ("Add images to at least two classes to start classifying." if self.support
                else "Press + Class and drop a few images of each new class.")
        self.test_zone.set_predictions([], [], None, None)
        self.map.clear(text)
        self.status_label.setText(f"{len(classes)} class{'es' if len(classes) != 1 else ''} with images")

    def _state(self, uid: int) -> ClassState:
        return next(c for c in self.support if c.uid == uid)

    # =================================================================================== results
    def class_names(self) -> list[str]:
        """Names of the classes of the current classifier, in label order."""
        if self.output is None:
            return []
        return [self._state(uid).name for uid in self.output.class_uids]

    def predictions(self) -> dict[str, list[float]]:
        """Current probabilities per test image, keyed by file path (tiles and folder rows)."""
        if self.output is None:
            return {}
        queries = self.tile_examples + self.folder_examples
        return {str(e.source or e.key): row for e, row in zip(queries, self.output.query_probs.tolist())}

    def save_classifier(self, path: Path | str) -> Path | None:
        """Save the classes, their images and the fitted classifier (engine.adapted format)."""
        from engine.adapted import save_adapted

        if not self._classifier_ready():
            return None
        classes = usable_classes(self.support)
        images = torch.stack([e.pixels for c in classes for e in c.examples])
        labels = torch.tensor([i for i, c in enumerate(classes) for _ in c.examples], dtype=torch.int64)
        names = [e.name for c in classes for e in c.examples]
        try:
            saved = save_adapted(path, self.checkpoint, [c.name for c in classes], images, labels,
                                 self.output.predictor.state(), algorithm=self.algorithm, support_names=names)
        except (EngineError, OSError, NotImplementedError) as error:
            self.show_banner(f"Cannot save the classifier: {error}", "error")
            return None
        self.show_banner(f"Saved the classifier ({len(classes)} classes) to {saved}. Use it with: meta-engine "
                         f"predict --checkpoint {saved} --query IMAGES", "ok")
        return saved

    def export_torchscript(self, path: Path | str) -> Path | None:
        """Export the current classifier as TorchScript (normalised images -> probabilities)."""
        from engine.adapted import AdaptedClassifier, export_torchscript

        if not self._classifier_ready():
            return None
        classes = usable_classes(self.support)
        adapted = AdaptedClassifier(
            path=None, algorithm=self.algorithm, checkpoint=self.checkpoint, class_names=[c.name for c in classes],
            support_images=torch.stack([e.pixels for c in classes for e in c.examples]),
            support_labels=torch.tensor([i for i, c in enumerate(classes) for _ in c.examples]),
            predictor=self.output.predictor)
        try:
            saved = export_torchscript(adapted, path)
        except (EngineError, OSError) as error:
            self.show_banner(f"Cannot export: {error}", "error")
            return None
        prep = self.checkpoint.preprocessing
        self.show_banner(f"Exported TorchScript to {saved}: input [B, {prep.channels}, {prep.image_size}, "
                         f"{prep.image_size}] float, (x/255 - {prep.mean:g}) / {prep.std:g}; output probabilities "
                         f"of {', '.join(c.name for c in classes)}.", "ok")
        return saved

    def _classifier_ready(self) -> bool:
        if self.algorithm is None or not self.is_current() or len(usable_classes(self.support)) < 2:
            self.show_banner("Nothing to save yet: wait for the classifier of at least two classes with images.",
                             "warning")
            return False
        return True

    # =================================================================================== demo
    def start_demo(self) -> bool:
        """Load the bundled model and five new classes of glyphs (characters of a held-out alphabet)."""
        if not DEMO_MODEL.is_file():
            self.show_banner(f"The demo model is missing: {DEMO_MODEL}. Create it with "
                             "'python assets/make_demo_model.py' (a few minutes on a CPU).", "error")
            return False
        if not self.load_checkpoint(DEMO_MODEL):
            return False
        split = self.checkpoint.split
        self.show_banner("Preparing the demo (the glyph images are generated on first use)...", "info")
        self.demo_button.setEnabled(False)
        handle = self._track(run_in_worker(lambda progress, should_stop: demo_selection(split),
                                           on_result=self._fill_demo, on_error=self._demo_failed))
        handle.done.connect(lambda: self.demo_button.setEnabled(True))
        return True

    def _fill_demo(self, selection: list[tuple[str, list[Path], list[Path]]]) -> None:
        if self.model_path != DEMO_MODEL:
            self.show_banner("Demo stopped: another model was opened meanwhile.", "warning")
            return
        self._cancel_job()
        self.undo_stack.clear()
        self.support = ()
        self._sync_cards()
        self.tile_examples, self.folder_examples, self.folder_name = [], [], None
        prep = self.checkpoint.preprocessing
        classes, tests = [], []
        for name, support_paths, query_paths in selection:
            examples = decode_files(support_paths, prep).examples
            classes.append(ClassState(new_uid(), name, tuple(examples)))
            tests += [replace(e, truth=name, name=f"{name} \u00b7 {e.name}")  # the demo knows the answers
                      for e in decode_files(query_paths, prep).examples]
        self.support = tuple(classes)
        self.tile_examples = tests
        self.test_zone.set_folder(None, [])
        self.test_zone.set_tiles(tests)
        self.test_zone.show_message("")
        self._sync_cards()
        alphabet = selection[0][1][0].parent.parent.name.split("_")[-1] if selection else ""
        self.show_banner(f"Demo: {len(classes)} characters of the alphabet {alphabet}, which the model never saw "
                         f"in training, {DEMO_SHOTS} images each, and {len(tests)} other images of them to classify. "
                         "Drop more images, remove some, add a class: the predictions follow at once.", "ok")
        self.refresh()

    def _demo_failed(self, message: str) -> None:
        self.show_banner(f"The demo could not start: {message}", "error")

    # =================================================================================== helpers
    def _model_ready(self, show: Any) -> bool:
        if self.algorithm is None:
            show("Open a model first (Open model..., a run, or Demo).", "warning")
            return False
        return True

    def _bulk_decode(self, listing: DropListing, done: Any, title: str) -> None:
        """Decode many files in the worker behind a cancellable progress dialog."""
        prep = self.checkpoint.preprocessing
        dialog = QProgressDialog(f"{title}...", "Cancel", 0, len(listing.files), self)
        dialog.setWindowTitle("Importing images")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(300)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        self.import_dialog = dialog

        def finish(result: DecodeResult) -> None:
            if dialog.wasCanceled():  # cancelled at the last moment: keep nothing, as promised
                result = DecodeResult([], result.skipped, cancelled=True)
            dialog.close()
            done(result)

        def progress(done_files: int, total: int) -> None:
            if dialog.wasCanceled():
                handle.stop()
            else:
                dialog.setValue(done_files)

        def fail(message: str) -> None:
            dialog.close()
            self.show_banner(f"Import failed: {message}", "error")

        handle = run_in_worker(
            lambda progress, should_stop: decode_files(listing.files, prep, truth=listing.truth, progress=progress,
                                                       should_stop=should_stop),
            on_result=finish, on_error=fail, on_progress=progress)
        dialog.canceled.connect(handle.stop)
        self._track(handle)

    def _at_current_size(self, result: DecodeResult) -> DecodeResult:
        """Images decoded in the worker for a model that was replaced meanwhile are converted to the new one."""
        prep = self.checkpoint.preprocessing
        shape = (prep.channels, prep.image_size, prep.image_size)
        if all(tuple(e.pixels.shape) == shape for e in result.examples):
            return result
        return replace(result, examples=[reprocess(e, prep) for e in result.examples])

    def _clipboard_file(self, image: QImage) -> Path:
        """Save a pasted image as PNG (named by its content, so pasting it twice is a duplicate)."""
        if self._clipboard_dir is None:
            self._clipboard_dir = tempfile.TemporaryDirectory(prefix="meta-studio-clipboard-")
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        buffer.close()
        raw = bytes(data.data())
        path = Path(self._clipboard_dir.name) / f"pasted-{hashlib.sha1(raw).hexdigest()[:10]}.png"
        if not path.exists():
            path.write_bytes(raw)
        return path

    def _update_controls(self) -> None:
        has_model = self.algorithm is not None
        self.add_class_button.setEnabled(True)
        self.undo_button.setEnabled(len(self.undo_stack) > 0)
        self.undo_button.setToolTip(f"Undo: {self.undo_stack.last_description} (Ctrl+Z)" if len(self.undo_stack)
                                    else "Nothing to undo")
        ready = has_model and self.is_current()
        self.save_button.setEnabled(ready)
        self.export_button.setEnabled(ready)

    # =================================================================================== dialogs
    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", "Models (*.pt *.pth);;All files (*)")
        if path:
            self.load_checkpoint(Path(path))

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the adapted classifier", "classifier.pt",
                                              "Adapted classifier (*.pt)")
        if path:
            self.save_classifier(Path(path))

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export TorchScript", "classifier.ts.pt", "TorchScript (*.pt)")
        if path:
            self.export_torchscript(Path(path))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._cancel_job()
        for handle in self._background:
            handle.stop()
        super().closeEvent(event)


# ======================================================================================= module helpers
def demo_selection(split: Any, n_classes: int = DEMO_CLASSES, n_shots: int = DEMO_SHOTS,
                   n_queries: int = DEMO_QUERIES) -> list[tuple[str, list[Path], list[Path]]]:
    """(display name, support files, test files) for characters of one alphabet of the model's test split."""
    from engine.data.glyphs import ensure_glyph_dataset

    root = ensure_glyph_dataset()
    by_alphabet: dict[str, list[str]] = {}
    for name in split.test:
        if "/" in name:
            alphabet, character = name.split("/", 1)
            by_alphabet.setdefault(alphabet, []).append(character)
    if not by_alphabet:
        raise EngineError("the demo model's test split names no glyph characters")
    alphabet = max(sorted(by_alphabet), key=lambda a: len(by_alphabet[a]))
    short = alphabet.split("_")[-1]
    selection = []
    for character in sorted(by_alphabet[alphabet])[:n_classes]:
        files = sorted((root / alphabet / character).glob("*.png"))
        if len(files) < n_shots + n_queries:
            raise EngineError(f"{root / alphabet / character}: too few images for the demo")
        step = max(1, (len(files) - n_shots) // n_queries)
        queries = [files[n_shots + step * i] for i in range(n_queries)]
        selection.append((f"{short} {character.removeprefix('character')}", files[:n_shots], queries))
    return selection


def _under(path: Path, folders: Sequence[Path]) -> bool:
    return any(folder == path or folder in path.parents for folder in folders)


def _remote_message(urls: Sequence[str]) -> str:
    return (f"Only local files can be dropped; {urls[0]}" + (f" and {len(urls) - 1} more" if len(urls) > 1 else "")
            + " is not a local file. Save it to disk first.")


def _drop_message(n_added: int, skipped: list[SkippedFile], duplicates: list[tuple[str, str]],
                  elsewhere: list[tuple[str, str]], where: str) -> tuple[str, str]:
    """One message about a drop: what was added, and every problem with examples of file names."""
    parts = []
    if n_added:
        parts.append(f"Added {n_added} image{'s' if n_added != 1 else ''}.")
    if duplicates:
        parts.append(f"Already in {where}: {_names([d[0] for d in duplicates])}.")
    if elsewhere:
        parts.append("Already in another class: " +
                     ", ".join(f"{n} ({c})" for n, c in elsewhere[:MAX_LISTED_PROBLEMS]) +
                     (f" and {len(elsewhere) - MAX_LISTED_PROBLEMS} more" if len(elsewhere) > MAX_LISTED_PROBLEMS
                      else "") + ".")
    if skipped:
        shown = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:MAX_LISTED_PROBLEMS])
        more = f"; and {len(skipped) - MAX_LISTED_PROBLEMS} more" if len(skipped) > MAX_LISTED_PROBLEMS else ""
        parts.append(f"Skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} ({shown}{more}).")
    if not parts:
        return "", "info"
    level = "ok" if not (skipped or duplicates or elsewhere) else ("warning" if n_added else "error")
    return " ".join(parts), level


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED_PROBLEMS])
    return shown + (f" and {len(names) - MAX_LISTED_PROBLEMS} more" if len(names) > MAX_LISTED_PROBLEMS else "")
