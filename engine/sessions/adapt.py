"""The adapt session: the Qt-free state and workflow behind the Adapt view.

An :class:`AdaptSession` holds the loaded model (a training checkpoint or a saved
adapted classifier), the class cards and their support images, the test images,
the undo/redo history, the per-image feature cache and the latest predictions.
Views render it and forward user actions to it; the session never touches a widget
or a thread. Every change bumps :attr:`AdaptSession.revision`; an adaptation result
is accepted only for the revision it was computed for, so :meth:`is_current` says
whether the predictions belong to the classes and test images as they are now.

Whether an adaptation may run at once in the caller's thread is decided from the
algorithm's declared capabilities (``one_pass_adaptation``), and the feature cache is
used for algorithms that declare ``cacheable_features``: no list of algorithm names.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from engine.adapted import AdaptedClassifier, export_torchscript, save_adapted
from engine.algorithms.base import Algorithm, Predictor
from engine.data.glyphs import ensure_glyph_dataset
from engine.data.preprocess import Preprocessing
from engine.data.splits import ClassSplit
from engine.data.strokes import Stroke, drawing_size, strokes_png
from engine.errors import EngineError
from engine.export import ExportSource, classifier_source
from engine.sessions.adapt_compute import (AdaptationCancelled, AdaptOutput, FeatureCache, adapt_and_predict,
                                           map_data)
from engine.sessions.adapt_model import OpenedModel, open_model
from engine.sessions.adapt_support import (ClassState, DecodeResult, DropListing, DropOutcome, Example, ProgressFn,
                                           StopFn, SupportSet, UndoHistory, conform, decode_files, name_problem,
                                           new_uid, next_class_name, reprocess, support_key, under, usable_classes)
from engine.training.checkpoint import Checkpoint
from engine.training.run_store import find_checkpoint

DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo_model.pt"
"""The bundled model of the demo (``assets/make_demo_model.py`` creates it, with its sample drawings)."""
DEMO_CLASSES, DEMO_SHOTS, DEMO_QUERIES = 5, 5, 2
SESSION_FILES_PREFIX = "meta-studio-clipboard-"
"""Start of the name of the temporary folder that holds a session's pasted and drawn PNG files."""
MAX_SYNC_IMAGES = 300
"""Above this many support + test images even one-pass algorithms adapt in the worker thread."""
GUI_THREAD_EMBEDDING_S = 0.25
"""Above this estimated embedding time (images without cached features x the model's measured seconds per
image) even one-pass algorithms adapt in the worker thread, which uses every core (the GUI thread runs
PyTorch single-threaded): a cold start of a large backbone then takes about half as long."""

AdaptJob = Callable[[ProgressFn, StopFn], tuple[int, "AdaptOutput | None"]]
"""``job(progress, should_stop) -> (revision it adapted, output or None when cancelled)``."""
DemoSelection = list[tuple[str, list[Path], list[Path]]]
"""(display name, support files, test files) per demo class."""


@dataclass(frozen=True)
class DemoSummary:
    """What :meth:`AdaptSession.fill_demo` set up."""

    n_classes: int
    n_tests: int
    alphabet: str

    def message(self) -> str:
        """What the Adapt view says about it."""
        return (f"Demo: {self.n_classes} characters of the alphabet {self.alphabet}, which the model never saw in "
                f"training, {DEMO_SHOTS} images each, and {self.n_tests} other images of them to classify. Drop more "
                "images, draw some, remove some, add a class: the predictions follow at once.")


class AdaptSession:
    """Model, support set, test images, undo/redo, feature cache and predictions of the adapt view."""

    def __init__(self) -> None:
        self.algorithm: Algorithm | None = None
        self.checkpoint: Checkpoint | None = None
        self.model_path: Path | None = None
        self.opened_adapted = False          # the model came from a saved adapted classifier
        self.support: SupportSet = ()
        self.history = UndoHistory()
        self.tile_examples: list[Example] = []
        self.folder_examples: list[Example] = []
        self.folder_name: str | None = None
        self.feature_cache: FeatureCache | None = None   # per-image features of the current model
        self.seconds_per_image: float | None = None      # one image's forward through the model, measured at load
        self._embedded: dict[int, weakref.ref[Tensor]] = {}  # id -> pixels whose features the cache holds
        self.revision = 0
        self.output: AdaptOutput | None = None
        self.output_revision = -1
        self._clipboard_dir: tempfile.TemporaryDirectory | None = None

    # ================================================================================ model
    @property
    def prep(self) -> Preprocessing:
        """The current model's preprocessing (size, channels, normalisation)."""
        if self.checkpoint is None:
            raise EngineError("no model is loaded")
        return self.checkpoint.preprocessing

    @property
    def queries(self) -> list[Example]:
        """The test images in prediction order: tiles, then the rows of the dropped folder."""
        return self.tile_examples + self.folder_examples

    @staticmethod
    def run_checkpoint(run: Any) -> Path | None:
        """A run's best checkpoint, else its last (None before the first); ``run``: a folder or a RunRecord."""
        return find_checkpoint(Path(getattr(run, "run_dir", run)), "best")

    def load_model(self, path: Path | str) -> None:
        """Load a training checkpoint or a saved adapted classifier (EngineError: nothing changes).

        The classes and test images are kept, converted to the new model's image size, unless the
        file brings its own classes (an adapted classifier; opening it is a change that can be undone).
        ``open_model`` then ``use_model``; a view opens large models in its worker thread that way.
        """
        self.use_model(open_model(path))

    def use_model(self, opened: OpenedModel) -> None:
        """Make a model read by :func:`open_model` the current one (quick: no file is read, nothing is built)."""
        adapted, algorithm, checkpoint = opened.adapted, opened.algorithm, opened.checkpoint
        self.algorithm, self.checkpoint, self.model_path = algorithm, checkpoint, opened.path
        self.opened_adapted = adapted is not None
        self.feature_cache, self.seconds_per_image = opened.feature_cache, opened.seconds_per_image
        self._embedded = {}
        self.output = None
        self.tile_examples = [reprocess(e, checkpoint.preprocessing) for e in self.tile_examples]
        self.folder_examples = [reprocess(e, checkpoint.preprocessing) for e in self.folder_examples]
        self.support = self._conformed(self.support)
        if adapted is not None:
            self._commit(support_from_adapted(adapted), "open saved classifier")
        else:
            self._changed()

    def _conformed(self, support: SupportSet) -> SupportSet:
        """The support set with every image at the current model's preprocessing."""
        if self.checkpoint is None:
            return support
        return tuple(replace(c, examples=conform(c.examples, self.prep)) for c in support)

    # ================================================================================ classes
    def class_state(self, uid: int) -> ClassState:
        """The card ``uid`` (StopIteration when it is gone)."""
        return next(c for c in self.support if c.uid == uid)

    def has_class(self, uid: int) -> bool:
        return any(c.uid == uid for c in self.support)

    def add_class(self, name: str | None = None) -> ClassState:
        """Add an empty class; ``name`` defaults to (and an unusable name becomes) ``Class N``."""
        name = (name or "").strip() or next_class_name(self.support)
        if name_problem(name, self.support) is not None:
            name = next_class_name(self.support)
        state = ClassState(new_uid(), name)
        self._commit(self.support + (state,), f"add class {name}")
        return state

    def remove_class(self, uid: int) -> None:
        self._commit(tuple(c for c in self.support if c.uid != uid), f"remove class {self.class_state(uid).name}")

    def name_problem(self, uid: int, name: str) -> str | None:
        """Why ``name`` cannot be the new name of class ``uid`` (None when it can)."""
        return name_problem(name, self.support, own_uid=uid)

    def rename_class(self, uid: int, name: str) -> bool:
        """Rename a class (ValueError naming the problem for an unusable name); False when unchanged."""
        problem = self.name_problem(uid, name)
        if problem is not None:
            raise ValueError(problem)
        old, name = self.class_state(uid).name, name.strip()
        if name == old:
            return False
        self._commit(tuple(replace(c, name=name) if c.uid == uid else c for c in self.support),
                     f"rename {old} to {name}")
        return True

    def add_support_images(self, uid: int, listing: DropListing, result: DecodeResult) -> DropOutcome | None:
        """Decoded images become support examples of class ``uid`` (None when that class is gone).

        Images already in this or another class are refused and reported, as are the listing's skipped files.
        """
        if not self.has_class(uid):
            return None
        state = self.class_state(uid)
        owner = {e.key: c.name for c in self.support for e in c.examples}
        outcome = DropOutcome(skipped=listing.skipped + result.skipped)
        added: list[Example] = []
        for example in self.at_current_size(result).examples:
            if example.key in owner or any(e.key == example.key for e in added):
                where = owner.get(example.key, state.name)
                (outcome.duplicates if where == state.name else outcome.elsewhere).append((example.name, where))
                continue
            added.append(replace(example, truth=None))
        outcome.added = len(added)
        if added:
            new_state = replace(state, examples=state.examples + tuple(added))
            self._commit(tuple(new_state if c.uid == uid else c for c in self.support),
                         f"add {len(added)} image(s) to {state.name}")
        return outcome

    def remove_examples(self, uid: int, keys: Sequence[str]) -> int:
        """Remove support images of class ``uid`` by key; returns how many were removed."""
        state = self.class_state(uid)
        keep = tuple(e for e in state.examples if e.key not in set(keys))
        removed = len(state.examples) - len(keep)
        if removed:
            self._commit(tuple(replace(c, examples=keep) if c.uid == uid else c for c in self.support),
                         f"remove {removed} image(s) from {state.name}")
        return removed

    def undo(self) -> str | None:
        """Restore the support set as it was before the last change; its description (None: nothing to undo)."""
        return self._restore(self.history.undo(self.support))

    def redo(self) -> str | None:
        """Make the last undone change again; its description (None: nothing to redo)."""
        return self._restore(self.history.redo(self.support))

    def _restore(self, item: tuple[SupportSet, str] | None) -> str | None:
        if item is None:
            return None
        snapshot, description = item
        self.support = self._conformed(snapshot)
        self._changed()
        return description

    def _commit(self, support: SupportSet, description: str) -> None:
        self.history.record(self.support, description)
        self.support = support
        self._changed()

    def _changed(self) -> None:
        self.revision += 1

    # ================================================================================ test images
    def add_test_images(self, listing: DropListing, paths: Sequence[Path | str], result: DecodeResult) -> DropOutcome:
        """Loose images become tiles (duplicates refused); dropped folders replace the folder table."""
        result = self.at_current_size(result)
        folders = [Path(p) for p in paths if Path(p).is_dir()]
        in_folder = [e for e in result.examples if e.source is not None and under(e.source, folders)]
        loose = [e for e in result.examples if not (e.source is not None and under(e.source, folders))]
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
        self._changed()
        return DropOutcome(len(new_tiles) + len(in_folder), listing.skipped + result.skipped, duplicates,
                           replaced_folder=bool(folders))

    def remove_test_image(self, key: str) -> None:
        self.tile_examples = [e for e in self.tile_examples if e.key != key]
        self._changed()

    def clear_tests(self) -> None:
        self.tile_examples, self.folder_examples, self.folder_name = [], [], None
        self._changed()

    # ================================================================================ decoding
    def decode_job(self, listing: DropListing) -> Callable[[ProgressFn | None, StopFn | None], DecodeResult]:
        """``job(progress, should_stop)`` decoding the listing at the current model's size (for a worker)."""
        prep = self.prep

        def job(progress: ProgressFn | None, should_stop: StopFn | None) -> DecodeResult:
            return decode_files(listing.files, prep, truth=listing.truth, progress=progress, should_stop=should_stop)

        return job

    def decode(self, listing: DropListing) -> DecodeResult:
        """Decode the listing now; each file that cannot be used is skipped with a reason naming it."""
        return self.decode_job(listing)(None, None)

    def at_current_size(self, result: DecodeResult) -> DecodeResult:
        """Images decoded in a worker for a model that was replaced meanwhile, converted to the current one."""
        prep = self.prep
        shape = (prep.channels, prep.image_size, prep.image_size)
        if all(tuple(e.pixels.shape) == shape for e in result.examples):
            return result
        return replace(result, examples=[reprocess(e, prep) for e in result.examples])

    def clipboard_file(self, png: bytes, kind: str = "pasted") -> Path:
        """Save a pasted (or drawn: ``kind``) PNG in a temporary folder, named by its content, so pasting it
        twice is a duplicate."""
        if self._clipboard_dir is None:
            self._clipboard_dir = tempfile.TemporaryDirectory(prefix=SESSION_FILES_PREFIX)
        path = Path(self._clipboard_dir.name) / f"{kind}-{hashlib.sha1(png).hexdigest()[:10]}.png"
        if not path.exists():
            path.write_bytes(png)
        return path

    def drawing_file(self, strokes: Sequence[Stroke]) -> Path:
        """A drawing of the draw pad as a PNG file, rendered like an Omniglot drawing at the model's image size
        or more (engine.data.strokes); added like a dropped file, it is decoded as the checkpoint decodes."""
        return self.clipboard_file(strokes_png(strokes, drawing_size(self.prep.image_size)), kind="drawn")

    # ================================================================================ adaptation
    def can_classify(self) -> bool:
        """A model and at least two classes with images."""
        return self.algorithm is not None and len(usable_classes(self.support)) >= 2

    def reusable_predictor(self) -> Predictor | None:
        """The current predictor when the support set is unchanged (only test images or names changed)."""
        return self.output.predictor if self.output and self.output.key == support_key(self.support) else None

    def adapts_in_gui_thread(self, predictor: Predictor | None = None) -> bool:
        """Whether the update may run at once in the caller's thread: the algorithm declares
        ``one_pass_adaptation`` (or ``predictor`` is reused), there are at most MAX_SYNC_IMAGES images, and
        embedding those without cached features takes at most GUI_THREAD_EMBEDDING_S (estimated)."""
        images = self._images()
        fast = bool(self.algorithm is not None and self.algorithm.one_pass_adaptation) or predictor is not None
        return fast and len(images) <= MAX_SYNC_IMAGES and self.embedding_estimate(images) <= GUI_THREAD_EMBEDDING_S

    def embedding_estimate(self, images: Sequence[Example] | None = None) -> float:
        """Seconds to embed the images (default: all support and test images) whose features are not
        cached, at the speed measured when the model was loaded (0 when unmeasured)."""
        images = self._images() if images is None else images
        cache = self.feature_cache
        if cache is None or not cache.n_cached:
            missing = len(images)
        else:
            missing = sum(1 for e in images if not self._was_embedded(e.pixels))
        return missing * (self.seconds_per_image or 0.0)

    def _was_embedded(self, pixels: Tensor) -> bool:
        held = self._embedded.get(id(pixels))
        return held is not None and held() is pixels

    def _images(self) -> list[Example]:
        return [e for c in usable_classes(self.support) for e in c.examples] + self.queries

    def adapt_now(self, predictor: Predictor | None = None) -> AdaptOutput:
        """Adapt (unless ``predictor`` is given) and predict in this thread, without the map; the
        output becomes current. Raises EngineError, RuntimeError or ValueError when adaptation fails."""
        output = adapt_and_predict(self._algorithm(), self.prep, self.support, self.queries, predictor=predictor,
                                   with_map=False, feature_cache=self.feature_cache)
        self.accept(self.revision, output)
        return output

    def adaptation_job(self, predictor: Predictor | None = None) -> AdaptJob:
        """A job for a worker thread that adapts the state as it is now (map included), tagged with the
        current revision; it returns None for the output when ``should_stop()`` cancelled the inner loop."""
        revision, algorithm, prep, cache = self.revision, self._algorithm(), self.prep, self.feature_cache
        support, queries = self.support, self.queries

        def job(progress: ProgressFn, should_stop: StopFn) -> tuple[int, AdaptOutput | None]:
            try:
                return revision, adapt_and_predict(algorithm, prep, support, queries, predictor=predictor,
                                                   progress=progress, should_stop=should_stop, feature_cache=cache)
            except AdaptationCancelled:
                return revision, None

        return job

    def accept(self, revision: int, output: AdaptOutput) -> bool:
        """Make ``output`` current if it was computed for ``revision`` and nothing changed since."""
        if revision != self.revision:
            return False
        self.output, self.output_revision = output, revision
        if self.feature_cache is not None:
            self._embedded = {id(e.pixels): weakref.ref(e.pixels) for e in self._images()}
        return True

    def compute_map(self, revision: int) -> bool:
        """Add the 2-D map to the output of ``revision``; False when that output is no longer current."""
        if revision != self.revision or self.output is None or self.output_revision != revision:
            return False
        self.output.map = map_data(self.output.predictor, self.prep, self.support, self.queries,
                                   self.output.query_probs)
        return True

    def clear_output(self) -> None:
        self.output = None

    def is_current(self) -> bool:
        """True when the predictions belong to the classes and test images as they are now."""
        return self.output is not None and self.output_revision == self.revision

    def _algorithm(self) -> Algorithm:
        if self.algorithm is None:
            raise EngineError("no model is loaded")
        return self.algorithm

    # ================================================================================ results
    def class_names(self) -> list[str]:
        """Names of the classes of the current classifier, in label order."""
        if self.output is None:
            return []
        return [self.class_state(uid).name for uid in self.output.class_uids]

    def predictions(self) -> dict[str, list[float]]:
        """Current probabilities per test image, keyed by file path (tiles and folder rows)."""
        if self.output is None:
            return {}
        return {str(e.source or e.key): row for e, row in zip(self.queries, self.output.query_probs.tolist())}

    def classifier_ready(self) -> bool:
        """A current classifier of at least two classes (what save and export need)."""
        return self.algorithm is not None and self.is_current() and len(usable_classes(self.support)) >= 2

    def save_classifier(self, path: Path | str) -> Path:
        """Save the classes, their images and the fitted classifier (engine.adapted format); needs
        :meth:`classifier_ready`. Raises EngineError, OSError or NotImplementedError."""
        classes = usable_classes(self.support)
        images, labels = support_pixels(classes)
        names = [e.name for c in classes for e in c.examples]
        return save_adapted(path, self.checkpoint, [c.name for c in classes], images, labels,
                            self.output.predictor.state(), algorithm=self.algorithm, support_names=names)

    def export_torchscript(self, path: Path | str) -> Path:
        """Export the current classifier as TorchScript (normalised images -> probabilities); needs
        :meth:`classifier_ready`. Raises EngineError or OSError."""
        classes = usable_classes(self.support)
        images, labels = support_pixels(classes)
        adapted = AdaptedClassifier(path=None, algorithm=self.algorithm, checkpoint=self.checkpoint,
                                    class_names=[c.name for c in classes], support_images=images,
                                    support_labels=labels, predictor=self.output.predictor)
        return export_torchscript(adapted, path)

    def export_snapshot(self) -> ExportSource:
        """A CPU copy of the current classifier for :func:`engine.export.export_source` (ONNX, pt2 or
        TorchScript with the parity check; safe in a worker thread); needs :meth:`classifier_ready`."""
        classes = usable_classes(self.support)
        images, labels = support_pixels(classes)
        return classifier_source(AdaptedClassifier(
            path=None, algorithm=self.algorithm, checkpoint=self.checkpoint, class_names=[c.name for c in classes],
            support_images=images, support_labels=labels, predictor=self.output.predictor))

    # ================================================================================ demo
    def demo_job(self) -> Callable[[ProgressFn, StopFn], DemoSelection]:
        """``job(progress, should_stop)`` choosing the demo's files: the drawings shipped with the demo model
        (its ``extra["demo"]["samples"]``, a folder beside it), else glyphs of its test split (generated on
        first use)."""
        split = self.checkpoint.split if self.checkpoint is not None else None
        samples = demo_samples_folder(self.checkpoint, self.model_path)
        if samples is not None:
            return lambda progress, should_stop: sample_selection(samples)
        return lambda progress, should_stop: demo_selection(split)

    def fill_demo(self, selection: DemoSelection, demo_model: Path) -> DemoSummary | None:
        """Replace classes, test images and history by the demo's (None when ``demo_model`` is no longer
        the loaded model). The test images know their class (``truth``)."""
        if self.model_path != demo_model:
            return None
        self.history.clear()
        classes, tests = [], []
        for name, support_paths, query_paths in selection:
            classes.append(ClassState(new_uid(), name, tuple(decode_files(support_paths, self.prep).examples)))
            tests += [replace(e, truth=name, name=f"{name} \u00b7 {e.name}")
                      for e in decode_files(query_paths, self.prep).examples]
        self.support = tuple(classes)
        self.tile_examples, self.folder_examples, self.folder_name = tests, [], None
        self._changed()
        alphabet = alphabet_label(selection[0][1][0].parent.parent.name) if selection else ""
        return DemoSummary(len(classes), len(tests), alphabet)


# ======================================================================================= module helpers
def support_pixels(classes: Sequence[ClassState]) -> tuple[Tensor, Tensor]:
    """-> (uint8 images [S, C, H, W], int64 labels [S] in card order)."""
    images = torch.stack([e.pixels for c in classes for e in c.examples])
    labels = torch.tensor([i for i, c in enumerate(classes) for _ in c.examples], dtype=torch.int64)
    return images, labels


def support_from_adapted(adapted: AdaptedClassifier) -> SupportSet:
    """The class cards of a saved adapted classifier (float support images are turned back into pixels)."""
    prep = adapted.preprocessing
    images = adapted.support_images
    if images.dtype != torch.uint8:  # float support saved by another tool: back to pixels for display
        images = (images * prep.std + prep.mean).mul(255).round().clamp(0, 255).to(torch.uint8)
    names = adapted.support_names or [f"image {i + 1}" for i in range(len(images))]
    stem = adapted.path.name if adapted.path is not None else "classifier"
    classes = []
    for label, class_name in enumerate(adapted.class_names):
        examples = tuple(Example(f"saved:{stem}:{i}", names[i], images[i].clone())
                         for i in range(len(images)) if int(adapted.support_labels[i]) == label)
        classes.append(ClassState(new_uid(), class_name, examples))
    return tuple(classes)


def alphabet_label(folder_name: str) -> str:
    """An alphabet folder's name for people: "Alphabet_03_Veluvyot" -> "Veluvyot" (the glyphs' numbered
    names), "Japanese_(katakana)" -> "Japanese (katakana)"."""
    return re.sub(r"^Alphabet_\d+_", "", folder_name).replace("_", " ")


def demo_samples_folder(checkpoint: Checkpoint | None, model_path: Path | None) -> Path | None:
    """The folder of sample drawings a demo model names (``extra["demo"]["samples"]``, relative to the
    model file), or None for a model without one."""
    demo = checkpoint.extra.get("demo") if checkpoint is not None else None
    name = demo.get("samples") if isinstance(demo, dict) else None
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", "..") or model_path is None:
        return None  # only a folder right beside the model file, whatever a checkpoint says
    return Path(model_path).parent / name


def sample_selection(folder: Path, n_classes: int = DEMO_CLASSES, n_shots: int = DEMO_SHOTS,
                     n_queries: int = DEMO_QUERIES) -> DemoSelection:
    """(display name, support files, test files) for the first ``n_classes`` characters of the nested folder
    ``folder/<alphabet>/<character>/*.png``: the first ``n_shots`` drawings of each as support, the next
    ``n_queries`` as test images. EngineError naming the folder when it holds too few."""
    characters = sorted(p for alphabet in sorted(folder.glob("*")) if alphabet.is_dir()
                        for p in sorted(alphabet.iterdir()) if p.is_dir())
    if len(characters) < n_classes:
        raise EngineError(f"{folder}: the demo needs {n_classes} character folders (<alphabet>/<character>/), "
                          f"found {len(characters)}")
    selection = []
    for character in characters[:n_classes]:
        files = sorted(character.glob("*.png"))
        if len(files) < n_shots + n_queries:
            raise EngineError(f"{character}: too few images for the demo ({len(files)}, needs {n_shots + n_queries})")
        short = alphabet_label(character.parent.name).split(" ")[0]
        selection.append((f"{short} {character.name.removeprefix('character')}", files[:n_shots],
                          files[n_shots:n_shots + n_queries]))
    return selection


def demo_selection(split: ClassSplit | None, n_classes: int = DEMO_CLASSES, n_shots: int = DEMO_SHOTS,
                   n_queries: int = DEMO_QUERIES) -> DemoSelection:
    """(display name, support files, test files) for characters of one alphabet of the model's test split."""
    root = ensure_glyph_dataset()
    by_alphabet: dict[str, list[str]] = {}
    for name in (split.test if split is not None else []):
        if "/" in name:
            alphabet, character = name.split("/", 1)
            by_alphabet.setdefault(alphabet, []).append(character)
    if not by_alphabet:
        raise EngineError("the demo model's test split names no glyph characters")
    alphabet = max(sorted(by_alphabet), key=lambda a: len(by_alphabet[a]))
    short = alphabet_label(alphabet)
    selection = []
    for character in sorted(by_alphabet[alphabet])[:n_classes]:
        files = sorted((root / alphabet / character).glob("*.png"))
        if len(files) < n_shots + n_queries:
            raise EngineError(f"{root / alphabet / character}: too few images for the demo")
        step = max(1, (len(files) - n_shots) // n_queries)
        queries = [files[n_shots + step * i] for i in range(n_queries)]
        selection.append((f"{short} {character.removeprefix('character')}", files[:n_shots], queries))
    return selection
