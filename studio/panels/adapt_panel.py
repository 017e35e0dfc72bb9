"""The Adapt panel: few-shot learning live. Make new classes by dropping a handful of images on class
cards; the trained model adapts at once (no retraining of the network) and classifies test images.

The state and the workflow (model, classes, test images, undo, feature cache, predictions, save,
export, demo) live in a Qt-free :class:`engine.sessions.adapt.AdaptSession`; this panel renders it
and forwards what the user does.

* Algorithms that declare ``one_pass_adaptation`` (ProtoNet, Matching Networks, SimpleShot) adapt
  directly in the GUI thread; the others (MAML, Reptile, the fine-tuning baselines) run their inner
  loop in a worker thread through one :class:`studio.jobs.latest.LatestJob` with a small progress
  bar: a newer change stops the running inner loop and drops what it still delivers.
* Works with the current run, any run of the history, a checkpoint file, or a saved adapted
  classifier; images are converted with the checkpoint's preprocessing (size, channels). A run or a file
  is opened in the worker thread (``open_model``; a second LatestJob), the Demo's small model at once.
* Saves the adapted classifier (``engine.adapted``) for the panel and ``meta-engine predict``, and
  exports it (ONNX, pt2 or TorchScript, with the parity check: ``export_dialog.py``).
* "Demo" loads ``assets/demo_model.pt`` and five characters of an alphabet the model never saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import QFrame, QLabel, QProgressBar, QProgressDialog, QVBoxLayout, QWidget

from engine.api import (BULK_FILES, DEMO_MODEL, AdaptOutput, AdaptSession, ClassState, DecodeResult,
                        DropListing, EngineError, FeatureCache, OpenedModel, checkpoint_label, class_folder_groups,
                        list_dropped, open_model, remote_message, usable_classes)
from studio.jobs.latest import LatestJob
from studio.jobs.thread import WorkerHandle, run_in_worker
from studio.panels.adapt_cards import (LEVEL_COLOURS, CardList, ClassCard, button, decode_in_worker, hbox, png_bytes,
                                      set_message, set_style, splitter)
from studio.panels import adapt_input
from studio.panels.adapt_input import CardScroll
from studio.panels.adapt_map import EmbeddingMap
from studio.panels.adapt_test_zone import TestZone
from studio.panels.export_dialog import ExportDialog
from studio.widgets.elide import ElidedLabel, WrappedLabel
from studio.widgets.transductive_note import TransductiveNote

__all__ = ["AdaptPanel", "DEMO_MODEL"]

ADAPTATION_FAILED = "Adaptation failed"
_BANNER_BACKGROUNDS = {"error": "#fdecea", "warning": "#fff4e5", "ok": "#edf7ed"}


class AdaptPanel(QWidget):
    """Few-shot adaptation playground (see the module docstring)."""

    adapted = Signal(object)       # AdaptOutput, after the predictions on screen were updated
    model_loaded = Signal(str)     # path of the model now in use

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = AdaptSession()
        self.job = LatestJob()                      # the adaptation in the worker thread (latest wins)
        self.opening = LatestJob()                  # a model opened in the worker thread (latest wins)
        self._job_pending = False                   # a change arrived while the job ran: re-adapt when it ends
        self._background: list[WorkerHandle] = []   # imports and demo preparation until their `done`
        self.import_dialog: QProgressDialog | None = None
        self._build()
        self._update_controls()

    @property
    def feature_cache(self) -> FeatureCache | None:
        """The session's per-image features of the current model (the latency benchmark clears it)."""
        return self.session.feature_cache

    # =================================================================================== layout
    def _build(self) -> None:
        self.demo_button = button("Demo", "Load the bundled glyph model and five characters of an alphabet it "
                                  "never saw", self.start_demo)
        self.model_label = ElidedLabel("No model. Open a checkpoint, pick a run, or press Demo.")
        self.model_label.setObjectName("model_label")
        self.model_label.setStyleSheet("color: #333;")
        self.undo_button = button("Undo", "Undo the last change of the classes (Ctrl+Z)", self.undo)
        self.save_button = button("Save classifier...", "Save the classes, their images and the fitted classifier "
                                  "to one file (reopen it here or use it with meta-engine predict)",
                                  lambda: self._file_dialog("save", self.save_classifier))
        self.export_button = button("Export...", "The classifier as ONNX, pt2 or TorchScript (normalised images -> "
                                    "probabilities), checked against PyTorch", self.open_export_dialog)
        toolbar = hbox([button("Open model...", "A training checkpoint (.pt) or a saved adapted classifier",
                               lambda: self._file_dialog("open", self.open_model)), self.demo_button, 8,
                        (self.model_label, 1), 8, self.undo_button, self.save_button, self.export_button], spacing=6)
        self.banner = WrappedLabel("")
        self.banner.setObjectName("adapt_banner")
        self.banner.setVisible(False)
        self.transductive_note = TransductiveNote()  # shown while a transductive model is in use

        self.test_zone = TestZone()
        self.test_zone.files_dropped.connect(self.add_test_files)
        self.test_zone.images_pasted.connect(
            lambda images: self._model_ready(self.test_zone.show_message)
            and self.add_test_files(self._clipboard_files(images)))
        self.test_zone.remote_dropped.connect(lambda urls: self.test_zone.show_message(remote_message(urls), "error"))
        self.test_zone.clear_requested.connect(self.clear_tests)
        self.test_zone.remove_requested.connect(self.remove_test_image)
        self.test_zone.drawing_added.connect(self.add_test_drawing)
        self.map = EmbeddingMap()
        right = splitter(Qt.Orientation.Vertical, [self.test_zone, self.map], [1, 1], [400, 500])
        main_splitter = splitter(Qt.Orientation.Horizontal, [self._build_classes(), right], [0, 1], [470, 1000])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(toolbar)
        layout.addWidget(self.banner)
        layout.addWidget(self.transductive_note)
        layout.addWidget(main_splitter, 1)
        undo = QShortcut(QKeySequence(QKeySequence.StandardKey.Undo), self)
        undo.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        undo.activated.connect(self.undo)

    def _build_classes(self) -> QWidget:
        """The left column: title, "+ Class", the adaptation's status, the scrolling card list and a hint."""
        classes_title = QLabel("New classes")
        classes_title.setStyleSheet("font-weight: 600; font-size: 11pt;")
        self.progress = QProgressBar()
        self.progress.setObjectName("adapt_progress")
        self.progress.setFixedSize(110, 12)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        self.status_label = ElidedLabel("")
        self.status_label.setObjectName("adapt_status")
        self.status_label.setStyleSheet("color: #666; font-size: 8pt;")
        self.add_class_button = button("+ Class", "Add a class card, then add or drop a few images on it",
                                       lambda: self.add_class())
        self.card_list = CardList()
        self.card_list.files_dropped.connect(self.add_classes_from_drop)
        self.cards_scroll = CardScroll()
        self.cards_scroll.setWidgetResizable(True)
        self.cards_scroll.setWidget(self.card_list)
        self.cards_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.cards_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        hint = QLabel("Add or drop images or folders on a card \u00b7 \u270E draws one \u00b7 Ctrl+V pastes \u00b7 "
                      "Delete removes \u00b7 Ctrl+Z undoes \u00b7 drop sub-folders here to make one class each")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #888; font-size: 8pt;")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(hbox([classes_title, 1, self.add_class_button]))
        left_layout.addLayout(hbox([(self.status_label, 1), self.progress], spacing=6))
        left_layout.addWidget(self.cards_scroll, 1)
        left_layout.addWidget(hint)
        left.setMinimumWidth(330)
        return left

    # =================================================================================== messages
    def show_banner(self, text: str, level: str = "info") -> None:
        """A message above the panel ('' hides it)."""
        set_message(self.banner, text, level)
        set_style(self.banner, f"color: {LEVEL_COLOURS.get(level, LEVEL_COLOURS['info'])}; background: "
                               f"{_BANNER_BACKGROUNDS.get(level, '#e8f1fb')}; border-radius: 4px; padding: 5px 8px;")

    def banner_text(self) -> str:
        return self.banner.text() if self.banner.isVisibleTo(self) else ""

    # =================================================================================== model
    def set_run(self, run: Any) -> bool:
        """:meth:`open_model` of a run's best checkpoint (else its last; ``run``: a folder or a RunRecord); False,
        with a banner, when it has none yet."""
        path = self.session.run_checkpoint(run)
        if path is not None:
            self.open_model(path)
            return True
        self.show_banner(f"The run {Path(getattr(run, 'run_dir', run)).name} has no checkpoint yet; the Adapt view "
                         "keeps its current model.", "warning")
        return False

    def open_model(self, path: Path | str) -> WorkerHandle:
        """Open a training checkpoint or a saved adapted classifier in the worker thread (ResNet-50: about a second
        of reading and building): the current model stays until the new one is ready, the latest open wins, a
        bad file leaves a banner. Timed single-threaded, as the GUI thread runs quick adaptations (jobs.policy)."""
        path = Path(path)
        self.show_banner(f"Opening {checkpoint_label(path)}...", "info")
        return self.opening.start(lambda progress, should_stop: open_model(path, timing_threads=1),
                                  on_result=self._use_model, on_error=self._open_failed)

    def load_checkpoint(self, path: Path | str) -> bool:
        """The same here and now (the Demo's small model); the classes stay (at the new model's image size) unless
        the file brings its own. False, with a banner, for a bad file."""
        self.opening.drop()  # an open still running in the worker would replace this one when it ends
        try:
            opened = open_model(path)
        except EngineError as error:
            self._open_failed(str(error))
            return False
        self._use_model(opened)
        return True

    def _open_failed(self, message: str) -> None:
        self.show_banner(f"Cannot open the model: {message}", "error")

    def _use_model(self, opened: OpenedModel) -> None:
        self.session.use_model(opened)
        self._cancel_job()
        self.test_zone.set_tiles(self.session.tile_examples)
        self.test_zone.set_folder(self.session.folder_name, self.session.folder_examples)
        self.model_label.setText(opened.summary())
        self.model_label.setToolTip(str(opened.path))
        self.transductive_note.show_for(opened.algorithm.transductive,
                                        opened.algorithm.display_title(opened.checkpoint.config.algorithm))
        self.show_banner("")
        self._support_changed()
        self.model_loaded.emit(str(opened.path))

    # =================================================================================== classes
    def add_class(self, name: str | None = None) -> ClassCard:
        """Add an (empty) class card and return it, scrolled into view with its name selected for typing;
        ``name`` defaults to ``Class N``."""
        state = self.session.add_class(name)
        self._support_changed()
        card = self.card_list.cards[state.uid]
        card.name_edit.setFocus()
        card.name_edit.selectAll()
        self.cards_scroll.scroll_to(card)
        return card

    def remove_class(self, card: ClassCard) -> None:
        self.session.remove_class(card.uid)
        self._support_changed()

    def rename_class(self, card: ClassCard, name: str) -> bool:
        """Rename a class; an empty or already used name is refused with a message on the card."""
        problem = self.session.name_problem(card.uid, name)
        if problem is not None:
            card.show_message(problem + " The name was not changed.", "error")
            card.reset_name()
            return False
        if self.session.rename_class(card.uid, name):
            self._support_changed()
            card.show_message("")
        return True

    def add_classes_from_drop(self, paths: Sequence[Path]) -> None:
        """Files dropped between the cards: each folder whose sub-folders hold images gives one class per
        sub-folder; anything else goes to one new class."""
        for name, files in class_folder_groups(paths):
            self.add_files(self.add_class(name), files)

    # =================================================================================== support images
    def add_files(self, card: ClassCard, paths: Sequence[Path | str]) -> None:
        """Image files and folders dropped on a card become its support examples."""
        if not self._model_ready(card.show_message):
            return
        listing = list_dropped(paths)
        if not listing.files and not listing.skipped:
            card.show_message("Nothing to add: the folder holds no files.", "warning")
            return
        self._decode(listing, lambda result: self._add_decoded(card.uid, listing, result),
                     f"Adding {len(listing.files)} images to {card.state.name}")

    def add_images(self, card: ClassCard, images: Sequence[QImage]) -> None:
        """Pasted clipboard images become support examples (saved as PNG files in a temporary folder)."""
        if self._model_ready(card.show_message):
            self.add_files(card, self._clipboard_files(images))

    def add_drawing(self, card: ClassCard, strokes: list) -> None:
        """A drawing of the card's pad becomes a support example: a PNG rendered like an Omniglot drawing at
        the model's size (AdaptSession.drawing_file), added like a dropped file (so Ctrl+Z takes it back)."""
        if self._model_ready(card.show_message):
            self.add_files(card, [self.session.drawing_file(strokes)])

    def _add_decoded(self, uid: int, listing: DropListing, result: DecodeResult) -> None:
        card = self.card_list.cards.get(uid)
        if card is None or not self.session.has_class(uid):
            self.show_banner("The class was removed before its images were decoded; nothing was added.", "warning")
            return
        if result.cancelled:
            card.show_message(f"Import cancelled: none of the {len(listing.files)} files was added.", "warning")
            return
        outcome = self.session.add_support_images(uid, listing, result)
        card.show_message(*outcome.message("this class"))
        if outcome.added:
            self._support_changed()

    def remove_examples(self, card: ClassCard, keys: Sequence[str]) -> None:
        """Remove support images (Delete key or context menu)."""
        n = self.session.remove_examples(card.uid, keys)
        if n:
            self._support_changed()
            card.show_message(f"Removed {n} image{'s' if n != 1 else ''} (Ctrl+Z brings "
                              f"{'them' if n != 1 else 'it'} back).", "info")

    def undo(self) -> bool:
        """Restore the support set as it was before the last change."""
        description = self.session.undo()
        if description is None:
            self.show_banner("Nothing to undo.", "info")
            return False
        self.show_banner(f"Undone: {description}.", "info")
        self._support_changed()
        return True

    def _support_changed(self) -> None:
        """Make the cards match the session's support set (order, names, thumbnails, notes) and re-adapt."""
        self.card_list.sync(self.session.support, self._new_card)
        self.refresh()

    def _new_card(self, state: ClassState, colour: str) -> ClassCard:
        card = ClassCard(state, colour)
        card.files_dropped.connect(self.add_files)
        card.images_pasted.connect(self.add_images)
        card.drawing_added.connect(self.add_drawing)
        card.remove_requested.connect(self.remove_examples)
        card.rename_requested.connect(self.rename_class)
        card.delete_requested.connect(self.remove_class)
        card.remote_dropped.connect(lambda c, urls: c.show_message(remote_message(urls), "error"))
        return card

    # =================================================================================== test images
    def add_test_files(self, paths: Sequence[Path | str]) -> None:
        """Dropped test images become tiles; a dropped folder fills the table (replacing the previous one)."""
        if not self._model_ready(self.test_zone.show_message):
            return
        listing = list_dropped(paths)
        if not listing.files and not listing.skipped:
            self.test_zone.show_message("Nothing to classify: the folder holds no files.", "warning")
            return
        self._decode(listing, lambda result: self._add_test_decoded(listing, paths, result),
                     f"Decoding {len(listing.files)} test images")

    def _add_test_decoded(self, listing: DropListing, paths: Sequence[Path | str], result: DecodeResult) -> None:
        if result.cancelled:
            self.test_zone.show_message(f"Import cancelled: none of the {len(listing.files)} files was added.",
                                        "warning")
            return
        outcome = self.session.add_test_images(listing, paths, result)
        if outcome.replaced_folder:
            self.test_zone.set_folder(self.session.folder_name, self.session.folder_examples)
        self.test_zone.show_message(*outcome.message("the test zone"))
        self.test_zone.set_tiles(self.session.tile_examples)
        self.refresh()

    def add_test_drawing(self, strokes: list) -> None:
        """A drawing of the test zone's pad is classified like a dropped test image."""
        if self._model_ready(self.test_zone.show_message):
            self.add_test_files([self.session.drawing_file(strokes)])

    def remove_test_image(self, key: str) -> None:
        self.session.remove_test_image(key)
        self.test_zone.set_tiles(self.session.tile_examples)
        self.refresh()

    def clear_tests(self) -> None:
        self.session.clear_tests()
        self.test_zone.set_tiles([])
        self.test_zone.set_folder(None, [])
        self.test_zone.show_message("")
        self.refresh()

    # =================================================================================== adaptation
    def refresh(self) -> None:
        """Re-adapt (or reuse the predictor when only the test images or names changed) and update the view."""
        self._update_controls()
        session = self.session
        if session.algorithm is None:
            return
        if not session.can_classify():
            self._cancel_job()
            session.clear_output()
            self._show_no_classifier()
            return
        if self.job.is_running():  # one job at a time: stop it; the latest state is adapted when it is done
            self.job.drop()
            self._job_pending = True
            return
        predictor = session.reusable_predictor()
        if session.adapts_in_gui_thread(predictor):
            self._adapt_now(predictor)
        else:
            self._start_job(predictor)

    def _adapt_now(self, predictor: Any) -> None:
        """Adapt in the GUI thread; the predictions show at once, the map follows in the next event-loop turn."""
        try:
            output = self.session.adapt_now(predictor)
        except (EngineError, RuntimeError, ValueError) as error:
            self.show_banner(f"{ADAPTATION_FAILED}: {error}", "error")
            return
        self._show_output(output)
        QTimer.singleShot(0, lambda revision=self.session.revision: self._deferred_map(revision))

    def _deferred_map(self, revision: int) -> None:
        try:
            if not self.session.compute_map(revision):
                return  # a newer change already scheduled its own map
        except (RuntimeError, ValueError) as error:
            self.map.clear(f"No map: {error}")
            return
        self._show_map(self.session.output)

    def _start_job(self, predictor: Any) -> None:
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.status_label.setText("adapting...")
        self._job_pending = False
        handle = self.job.start(self.session.adaptation_job(predictor), on_result=self._job_result,
                                on_error=lambda message: self.show_banner(f"{ADAPTATION_FAILED}: {message}", "error"),
                                on_progress=self._job_progress)
        handle.done.connect(lambda: self._job_done(handle))

    def _job_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.status_label.setText(f"inner loop {done}/{total}")

    def _job_result(self, value: tuple[int, AdaptOutput | None]) -> None:
        revision, output = value
        if output is not None and self.session.accept(revision, output):
            self._show_output(output)

    def _job_done(self, handle: WorkerHandle) -> None:
        if handle is not self.job.handle:
            return
        self.progress.setVisible(False)
        if self._job_pending:  # a change arrived while the job ran: adapt to the latest state
            self._job_pending = False
            self.refresh()
        self._update_controls()

    def _cancel_job(self) -> None:
        self.job.drop()
        self._job_pending = False

    def is_busy(self) -> bool:
        """True until every adaptation, model opening, import and demo preparation in the worker has delivered."""
        return self.job.is_running() or self.opening.is_running() or bool(self._background)

    def is_current(self) -> bool:
        """True when the predictions on screen belong to the classes and test images on screen."""
        return self.session.is_current()

    def _track(self, handle: WorkerHandle) -> WorkerHandle:
        self._background.append(handle)
        handle.done.connect(lambda: self._background.remove(handle) if handle in self._background else None)
        return handle

    def _show_output(self, output: AdaptOutput) -> None:
        """Show the session's current adaptation result."""
        names, colours = self._class_legend(output)
        probs = output.query_probs.tolist()
        n_tiles = len(self.session.tile_examples)
        self.test_zone.set_predictions(names, colours, probs[:n_tiles], probs[n_tiles:])
        if self.banner_text().startswith(ADAPTATION_FAILED):  # e.g. one test image for a transductive model
            self.show_banner("")
        if output.map is not None:
            self._show_map(output)
        n_support = sum(len(c.examples) for c in usable_classes(self.session.support))
        self.status_label.setText(f"{len(names)} classes \u00b7 {n_support} images \u00b7 updated in "
                                  f"{1000 * output.seconds:.0f} ms")
        self._update_controls()
        self.adapted.emit(output)

    def _show_map(self, output: AdaptOutput) -> None:
        if output.map is None:
            self.map.clear("This algorithm has no embedding to draw.")
            return
        names, colours = self._class_legend(output)
        support_examples = [e for c in usable_classes(self.session.support) for e in c.examples]
        self.map.set_map(output.map, names, colours, support_examples, self.session.queries)

    def _class_legend(self, output: AdaptOutput) -> tuple[list[str], list[str]]:
        """Names and colours of the output's classes, in label order."""
        uids = output.class_uids
        return [self.session.class_state(uid).name for uid in uids], [self.card_list.colours[uid] for uid in uids]

    def _show_no_classifier(self) -> None:
        support = self.session.support
        n = len(usable_classes(support))
        text = ("Add images to at least two classes to start classifying." if support
                else "Press + Class and drop a few images of each new class.")
        self.test_zone.set_predictions([], [], None, None)
        self.map.clear(text)
        self.status_label.setText(f"{n} class{'es' if n != 1 else ''} with images")

    # =================================================================================== save / export
    def save_classifier(self, path: Path | str) -> Path | None:
        """Save the classes, their images and the fitted classifier (engine.adapted format)."""
        if not self._classifier_ready():
            return None
        try:
            saved = self.session.save_classifier(path)
        except (EngineError, OSError, NotImplementedError) as error:
            self.show_banner(f"Cannot save the classifier: {error}", "error")
            return None
        self.show_banner(f"Saved the classifier ({len(usable_classes(self.session.support))} classes) to {saved}. "
                         f"Use it with: meta-engine predict --checkpoint {saved} --query IMAGES", "ok")
        return saved

    def export_torchscript(self, path: Path | str) -> Path | None:
        """Export the current classifier as TorchScript (normalised images -> probabilities)."""
        if not self._classifier_ready():
            return None
        try:
            saved = self.session.export_torchscript(path)
        except (EngineError, OSError) as error:
            self.show_banner(f"Cannot export: {error}", "error")
            return None
        prep = self.session.prep
        names = ", ".join(c.name for c in usable_classes(self.session.support))
        self.show_banner(f"Exported TorchScript to {saved}: input [B, {prep.channels}, {prep.image_size}, "
                         f"{prep.image_size}] float, (x/255 - {prep.mean:g}) / {prep.std:g}; output probabilities "
                         f"of {names}.", "ok")
        return saved

    def open_export_dialog(self) -> ExportDialog | None:
        """The Export dialog (ONNX, pt2 or TorchScript, with the parity figure) on a copy of the current classifier."""
        try:
            dialog = ExportDialog(self.session.export_snapshot(), self) if self._classifier_ready() else None
        except EngineError as error:
            self.show_banner(f"Cannot export: {error}", "error")
            return None
        if dialog is not None:
            dialog.open()  # window-modal: the classes cannot change under the export
        return dialog

    def _classifier_ready(self) -> bool:
        if not self.session.classifier_ready():
            self.show_banner("Nothing to save yet: wait for the classifier of at least two classes with images.",
                             "warning")
            return False
        return True

    # =================================================================================== demo
    def start_demo(self) -> bool:
        """Load the bundled model and five new classes (characters of an alphabet it never saw: its shipped
        sample drawings, else glyphs of its held-out alphabets)."""
        if not DEMO_MODEL.is_file():
            self.show_banner(f"The demo model is missing: {DEMO_MODEL}. Create it with "
                             "'python assets/make_demo_model.py' (a few minutes on a CPU).", "error")
            return False
        if not self.load_checkpoint(DEMO_MODEL):
            return False
        self.show_banner("Preparing the demo...", "info")
        self.demo_button.setEnabled(False)
        handle = self._track(run_in_worker(
            self.session.demo_job(), on_result=lambda selection: self._fill_demo(selection, DEMO_MODEL),
            on_error=lambda message: self.show_banner(f"The demo could not start: {message}", "error")))
        handle.done.connect(lambda: self.demo_button.setEnabled(True))
        return True

    def _fill_demo(self, selection: list[tuple[str, list[Path], list[Path]]], demo_model: Path) -> None:
        if self.session.model_path != demo_model:
            self.show_banner("Demo stopped: another model was opened meanwhile.", "warning")
            return
        self._cancel_job()
        summary = self.session.fill_demo(selection, demo_model)
        self.test_zone.set_folder(None, [])
        self.test_zone.set_tiles(self.session.tile_examples)
        self.test_zone.show_message("")
        self.show_banner(summary.message(), "ok")
        self._support_changed()

    # =================================================================================== helpers
    def _model_ready(self, show: Callable[[str, str], None]) -> bool:
        if self.session.algorithm is None:
            show("Open a model first (Open model..., a run, or Demo).", "warning")
            return False
        return True

    def _decode(self, listing: DropListing, done: Callable[[DecodeResult], None], title: str) -> None:
        """Decode the listing at once, or (more than BULK_FILES files) in the worker behind a cancellable
        progress dialog; ``done(result)`` gets the result either way."""
        if len(listing.files) <= BULK_FILES:
            done(self.session.decode(listing))
            return
        self.import_dialog, handle = decode_in_worker(
            self, f"{title}...", len(listing.files), self.session.decode_job(listing), done,
            lambda message: self.show_banner(f"Import failed: {message}", "error"))
        self._track(handle)

    def _clipboard_files(self, images: Sequence[QImage]) -> list[Path]:
        """Pasted images saved as PNG files (named by content, so pasting one twice is a duplicate)."""
        return [self.session.clipboard_file(png_bytes(image)) for image in images]

    def _update_controls(self) -> None:
        history = self.session.history
        self.undo_button.setEnabled(len(history) > 0)
        self.undo_button.setToolTip(f"Undo: {history.last_description} (Ctrl+Z)" if len(history)
                                    else "Nothing to undo")
        ready = self.session.algorithm is not None and self.session.is_current()
        self.save_button.setEnabled(ready)
        self.export_button.setEnabled(ready)

    def _file_dialog(self, kind: str, use: Callable[[Path], Any]) -> None:
        """Ask for a file (``kind``: "open", "save" or "export") and pass the chosen path to ``use``."""
        if (path := adapt_input.ask_model_file(self, kind)) is not None:
            use(path)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._cancel_job()
        self.opening.drop()
        for handle in self._background:
            handle.stop()
        super().closeEvent(event)
