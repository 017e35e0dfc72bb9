"""The adapt session without Qt: classes and images, undo/redo, predictions equal to a direct
``algorithm.adapt().predict()``, the capability decision (GUI thread or worker), the feature cache,
bad files named in one message, save/load of the adapted classifier, the demo set-up, the run's checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.sessions import adapt as adapt_module
from engine.sessions import AdaptSession, DropListing, list_dropped, support_key, usable_classes
from engine.training.checkpoint import load_algorithm
from engine.training.run_store import checkpoint_file
from tests.engine.test_adapted import make_checkpoint

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["class000", "class004", "class009"]


# -- helpers ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapt-session")
    return {name: make_checkpoint(folder / f"{name}.pt", name) for name in ("protonet", "maml")}


def images_of(root: Path, name: str, start: int, stop: int) -> list[Path]:
    return sorted((root / name).glob("*.png"))[start:stop]


def session_for(checkpoint: Path) -> AdaptSession:
    session = AdaptSession()
    session.load_model(checkpoint)
    return session


def add_images(session: AdaptSession, uid: int, paths: list[Path]):
    listing = list_dropped(paths)
    return session.add_support_images(uid, listing, session.decode(listing))


def add_tests(session: AdaptSession, paths: list[Path]):
    listing = list_dropped(paths)
    return session.add_test_images(listing, paths, session.decode(listing))


def make_classes(session: AdaptSession, root: Path, shots: int = 3, names: list[str] = CLASSES) -> list[int]:
    uids = []
    for name in names:
        uid = session.add_class(name).uid
        add_images(session, uid, images_of(root, name, 0, shots))
        uids.append(uid)
    return uids


def snapshot(session: AdaptSession) -> list[tuple]:
    """Everything a support set holds, by value: ids, names, image keys and pixels."""
    return [(c.uid, c.name, [(e.key, e.pixels.clone()) for e in c.examples]) for c in session.support]


def assert_same(state: list[tuple], expected: list[tuple]) -> None:
    assert [(uid, name, [k for k, _ in ex]) for uid, name, ex in state] == \
        [(uid, name, [k for k, _ in ex]) for uid, name, ex in expected]
    for (_, _, ex), (_, _, expected_ex) in zip(state, expected):
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(ex, expected_ex))


def direct_probabilities(checkpoint: Path, session: AdaptSession) -> torch.Tensor:
    """A freshly loaded algorithm adapted to the session's support tensors, predicting its test images."""
    algorithm, loaded = load_algorithm(checkpoint)
    prep = loaded.preprocessing
    classes = usable_classes(session.support)
    support_x = prep.normalize(torch.stack([e.pixels for c in classes for e in c.examples]))
    support_y = torch.tensor([label for label, c in enumerate(classes) for _ in c.examples])
    query_x = prep.normalize(torch.stack([e.pixels for e in session.queries]))
    with torch.no_grad():
        with torch.enable_grad():
            predictor = algorithm.adapt(support_x, support_y)
        return predictor.predict(query_x)


# -- no Qt -----------------------------------------------------------------------------------------------------
def test_the_session_imports_no_qt():
    code = ("import sys, engine.sessions, engine.sessions.adapt; "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'studio')]; "
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for path in (ROOT / "engine").rglob("*.py"):
        assert "PySide6" not in path.read_text(encoding="utf-8"), path


# -- classes and images ----------------------------------------------------------------------------------------
def test_adding_and_removing_classes_and_images(checkpoints, tiny_flat):
    session = session_for(checkpoints["protonet"])
    first = session.add_class("cats")
    assert session.add_class("CATS").name == "Class 1"  # a used name becomes Class N
    outcome = add_images(session, first.uid, images_of(tiny_flat, CLASSES[0], 0, 3))
    assert outcome.added == 3 and len(session.class_state(first.uid).examples) == 3
    assert all(tuple(e.pixels.shape) == (1, 28, 28) and e.pixels.dtype == torch.uint8
               for e in session.class_state(first.uid).examples)

    again = add_images(session, first.uid, images_of(tiny_flat, CLASSES[0], 2, 4))
    assert again.added == 1 and [name for name, _ in again.duplicates] == ["02.png"]
    second = session.support[1].uid
    elsewhere = add_images(session, second, images_of(tiny_flat, CLASSES[0], 0, 1))
    assert elsewhere.added == 0 and elsewhere.elsewhere == [("00.png", "cats")]
    assert "Already in another class: 00.png (cats)" in elsewhere.message("this class")[0]

    keys = [e.key for e in session.class_state(first.uid).examples[:2]]
    assert session.remove_examples(first.uid, keys) == 2
    assert [e.name for e in session.class_state(first.uid).examples] == ["02.png", "03.png"]
    assert session.remove_examples(first.uid, ["no such key"]) == 0
    session.remove_class(second)
    assert [c.name for c in session.support] == ["cats"]

    add_tests(session, images_of(tiny_flat, CLASSES[1], 5, 7))
    duplicate = add_tests(session, images_of(tiny_flat, CLASSES[1], 5, 6))
    assert duplicate.added == 0 and duplicate.duplicates == [("05.png", "the test zone")]
    session.remove_test_image(session.tile_examples[0].key)
    assert [e.name for e in session.tile_examples] == ["06.png"]
    session.clear_tests()
    assert session.queries == []


def test_undo_and_redo_restore_each_state_exactly(checkpoints, tiny_flat):
    session = session_for(checkpoints["protonet"])
    uid = session.add_class("a").uid
    changes = [lambda: add_images(session, uid, images_of(tiny_flat, CLASSES[0], 0, 3)),
               lambda: session.rename_class(uid, "renamed"),
               lambda: session.remove_examples(uid, [session.support[0].examples[1].key]),
               lambda: session.add_class("b"),
               lambda: add_images(session, session.support[1].uid, images_of(tiny_flat, CLASSES[1], 0, 2)),
               lambda: session.remove_class(uid)]
    states = [snapshot(session)]
    for change in changes:
        change()
        states.append(snapshot(session))
    descriptions = ["add 3 image(s) to a", "rename a to renamed", "remove 1 image(s) from renamed", "add class b",
                    "add 2 image(s) to b", "remove class renamed"]

    for expected, description in zip(reversed(states[:-1]), reversed(descriptions)):
        assert session.undo() == description
        assert_same(snapshot(session), expected)
    assert session.undo() == "add class a" and session.support == ()
    assert session.undo() is None and len(session.history) == 0

    assert session.redo() == "add class a"
    for expected, description in zip(states[1:], descriptions):
        assert session.redo() == description
        assert_same(snapshot(session), expected)
    assert session.redo() is None

    session.undo()
    session.add_class("c")  # a new change after an undo forgets what could be redone
    assert session.redo() is None and session.history.last_description == "add class c"


def test_every_change_makes_the_predictions_stale(checkpoints, tiny_flat):
    session = session_for(checkpoints["protonet"])
    make_classes(session, tiny_flat, names=CLASSES[:2])
    add_tests(session, images_of(tiny_flat, CLASSES[0], 6, 7))
    session.adapt_now()
    assert session.is_current()
    revision = session.revision
    session.rename_class(session.support[0].uid, "other name")
    assert not session.is_current() and session.revision > revision
    assert not session.accept(revision, session.output)  # a result of the older revision is refused
    assert session.reusable_predictor() is session.output.predictor  # names do not change adaptation


# -- predictions -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["protonet", "maml"])
def test_predictions_equal_a_direct_adapt_and_predict(checkpoints, tiny_flat, algorithm):
    session = session_for(checkpoints[algorithm])
    make_classes(session, tiny_flat, shots=2)
    queries = [p for name in CLASSES for p in images_of(tiny_flat, name, 6, 8)]
    add_tests(session, queries)
    if session.adapts_in_gui_thread():
        output = session.adapt_now()
    else:
        revision, output = session.adaptation_job()(lambda done, total: None, lambda: False)
        assert session.accept(revision, output)
    expected = direct_probabilities(checkpoints[algorithm], session)
    assert output.query_probs.shape == (len(queries), 3)
    assert torch.allclose(output.query_probs, expected, atol=1e-6)
    shown = session.predictions()
    assert torch.allclose(torch.tensor([shown[str(p)] for p in queries]), expected, atol=1e-6)
    assert session.class_names() == CLASSES


# -- capabilities ----------------------------------------------------------------------------------------------
def test_one_pass_algorithms_adapt_in_the_gui_thread_and_maml_does_not(checkpoints, tiny_flat, monkeypatch):
    protonet, maml = session_for(checkpoints["protonet"]), session_for(checkpoints["maml"])
    for session in (protonet, maml):
        make_classes(session, tiny_flat, shots=2, names=CLASSES[:2])
    assert protonet.adapts_in_gui_thread() and not maml.adapts_in_gui_thread()

    revision, output = maml.adaptation_job()(lambda done, total: None, lambda: False)
    assert maml.accept(revision, output) and output.map is not None
    assert maml.adapts_in_gui_thread(maml.reusable_predictor())  # only the test images changed: no inner loop

    monkeypatch.setattr(type(protonet.algorithm), "one_pass_adaptation", False)  # the decision asks the class
    assert not protonet.adapts_in_gui_thread()
    monkeypatch.setattr(type(maml.algorithm), "one_pass_adaptation", True)
    assert maml.adapts_in_gui_thread()
    monkeypatch.setattr(adapt_module, "MAX_SYNC_IMAGES", 3)  # too many images for the GUI thread
    assert not maml.adapts_in_gui_thread()


def test_a_cold_start_of_a_slow_model_goes_to_the_worker_and_a_drop_after_it_does_not(checkpoints, tiny_flat):
    """Embedding every image of a slow backbone would hold the GUI thread (one PyTorch thread) for seconds:
    the estimate (images without cached features x the speed measured at load) sends it to the worker."""
    session = session_for(checkpoints["protonet"])
    assert session.seconds_per_image is not None and 0 < session.seconds_per_image < 1  # measured at load
    make_classes(session, tiny_flat, shots=3)
    add_tests(session, [p for name in CLASSES for p in images_of(tiny_flat, name, 6, 8)])
    n_images = 3 * 3 + 6
    session.seconds_per_image = 0.1  # as if each image took 100 ms: 1.5 s for all of them
    assert session.embedding_estimate() == pytest.approx(n_images * 0.1)
    assert not session.adapts_in_gui_thread()
    revision, output = session.adaptation_job()(lambda done, total: None, lambda: False)
    assert session.accept(revision, output)
    assert session.embedding_estimate() == 0 and session.adapts_in_gui_thread()  # all features cached
    add_images(session, session.support[0].uid, images_of(tiny_flat, CLASSES[0], 9, 10))
    assert session.embedding_estimate() == pytest.approx(0.1)  # only the new image
    assert session.adapts_in_gui_thread()
    session.feature_cache.clear()  # e.g. another model was used meanwhile: all of them again
    assert session.embedding_estimate() == pytest.approx((n_images + 1) * 0.1)


def test_an_inner_loop_stops_when_asked(checkpoints, tiny_flat):
    session = session_for(checkpoints["maml"])
    make_classes(session, tiny_flat, shots=2, names=CLASSES[:2])
    calls = []
    revision, output = session.adaptation_job()(lambda done, total: calls.append(done), lambda: True)
    assert output is None and revision == session.revision and calls == []


def test_the_feature_cache_embeds_each_image_once_for_cacheable_algorithms(checkpoints, tiny_flat):
    session = session_for(checkpoints["protonet"])
    assert session.algorithm.cacheable_features and session.feature_cache is not None
    embedded = []
    session.feature_cache.embedder.register_forward_hook(lambda module, args, out: embedded.append(args[0].shape[0]))
    uids = make_classes(session, tiny_flat, shots=3, names=CLASSES[:2])
    add_tests(session, images_of(tiny_flat, CLASSES[0], 6, 8))
    first = session.adapt_now()
    assert sum(embedded) == 6 + 2
    add_images(session, uids[1], images_of(tiny_flat, CLASSES[1], 3, 4))
    embedded.clear()
    cached = session.adapt_now()
    assert sum(embedded) == 1  # only the new image went through the backbone
    assert session.feature_cache.hits >= 8

    session.feature_cache.clear()
    embedded.clear()
    fresh = session.adapt_now()
    assert sum(embedded) == 7 + 2 and torch.allclose(cached.query_probs, fresh.query_probs, atol=1e-6)
    assert not torch.allclose(first.query_probs, cached.query_probs)

    maml = session_for(checkpoints["maml"])
    assert not maml.algorithm.cacheable_features and maml.feature_cache is None


# -- files -----------------------------------------------------------------------------------------------------
def test_bad_files_get_one_clear_message_naming_the_file(checkpoints, tiny_flat, tmp_path):
    session = session_for(checkpoints["protonet"])
    uid = session.add_class("a").uid
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(images_of(tiny_flat, CLASSES[0], 5, 6)[0].read_bytes()[:60])

    for bad in (notes, truncated, tmp_path / "missing.png"):
        text, level = add_images(session, uid, [bad]).message("this class")
        assert level == "error" and text.count(bad.name) == 1 and text.startswith("Skipped 1 file (")
    assert session.support[0].examples == () and len(session.history) == 1  # only the class was added

    text, level = add_images(session, uid, [notes, truncated, *images_of(tiny_flat, CLASSES[0], 0, 1)]) \
        .message("this class")
    assert level == "warning" and "Added 1 image." in text and "Skipped 2 files" in text
    assert "notes.txt: " in text and "truncated.png: " in text

    with pytest.raises(Exception, match="garbage.pt"):
        garbage = tmp_path / "garbage.pt"
        garbage.write_bytes(b"not a checkpoint")
        session.load_model(garbage)
    assert session.model_path == checkpoints["protonet"]  # a bad model file changes nothing


def test_images_follow_a_model_with_another_size(checkpoints, tiny_flat, tmp_path):
    session = session_for(checkpoints["protonet"])
    make_classes(session, tiny_flat, shots=2, names=CLASSES[:2])
    add_tests(session, images_of(tiny_flat, CLASSES[0], 6, 7))
    key = support_key(session.support)
    session.load_model(make_checkpoint(tmp_path / "colour.pt", image_size=32, channels=3))
    assert support_key(session.support) == key
    assert all(tuple(e.pixels.shape) == (3, 32, 32) for c in session.support for e in c.examples)
    assert tuple(session.queries[0].pixels.shape) == (3, 32, 32)
    assert session.adapt_now().query_probs.shape == (1, 2)


# -- models, save and demo -------------------------------------------------------------------------------------
def test_a_saved_classifier_reloads_with_its_classes_and_predictions(checkpoints, tiny_flat, tmp_path):
    session = session_for(checkpoints["protonet"])
    make_classes(session, tiny_flat)
    queries = images_of(tiny_flat, CLASSES[1], 6, 9)
    add_tests(session, queries)
    assert not session.classifier_ready()
    session.adapt_now()
    assert session.classifier_ready()
    saved = session.save_classifier(tmp_path / "mine.pt")

    other = AdaptSession()
    other.load_model(saved)
    assert other.opened_adapted and [c.name for c in other.support] == CLASSES
    assert [len(c.examples) for c in other.support] == [3, 3, 3]
    add_tests(other, queries)
    other.adapt_now()
    for path in queries:
        assert other.predictions()[str(path)] == pytest.approx(session.predictions()[str(path)], abs=1e-6)
    assert other.undo() == "open saved classifier" and other.support == ()
    assert session.export_torchscript(tmp_path / "mine.ts").is_file()


def test_a_run_uses_its_best_checkpoint_else_its_last(checkpoints, tmp_path):
    run = tmp_path / "run"
    assert AdaptSession.run_checkpoint(run) is None
    last = checkpoint_file(run, "last")
    last.parent.mkdir(parents=True)
    last.write_bytes(checkpoints["protonet"].read_bytes())
    assert AdaptSession.run_checkpoint(run) == last
    best = checkpoint_file(run, "best")
    best.write_bytes(last.read_bytes())
    record = type("Record", (), {"run_dir": run})()
    assert AdaptSession.run_checkpoint(record) == best
    source = (ROOT / "studio" / "panels" / "adapt_panel.py").read_text(encoding="utf-8")
    assert "best.pt" not in source and "last.pt" not in source


def test_the_demo_replaces_classes_tests_and_history(checkpoints, tiny_flat):
    session = session_for(checkpoints["protonet"])
    session.add_class("old")
    selection = [(name, images_of(tiny_flat, name, 0, 3), images_of(tiny_flat, name, 5, 7)) for name in CLASSES]
    assert session.fill_demo(selection, Path("elsewhere.pt")) is None  # another model was opened meanwhile
    summary = session.fill_demo(selection, checkpoints["protonet"])
    assert (summary.n_classes, summary.n_tests) == (3, 6)
    assert [c.name for c in session.support] == CLASSES and len(session.history) == 0
    assert [e.truth for e in session.tile_examples] == [n for n in CLASSES for _ in range(2)]
    assert session.adapts_in_gui_thread() and session.adapt_now().query_probs.shape == (6, 3)


def test_no_view_keeps_lists_of_algorithm_names():
    for folder in ("studio", "engine"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert "FAST_ALGORITHMS" not in text and "CACHEABLE_ALGORITHMS" not in text, path


def test_an_empty_drop_lists_nothing(tmp_path):
    assert list_dropped([tmp_path]) == DropListing(from_folder=True)


# -- demo ------------------------------------------------------------------------------------------------------
def test_a_demo_model_with_sample_drawings_demos_them(checkpoints, tiny_flat, tmp_path):
    """A model naming a samples folder (extra.demo.samples, beside the file) gets its first five characters
    as the demo, 5 drawings as support and 2 to classify; a model without one gets glyphs of its test split."""
    import shutil

    from engine.io import atomic_torch_save
    from engine.training.checkpoint import read_payload

    payload = read_payload(checkpoints["protonet"])
    payload["extra"] = {**payload.get("extra", {}), "demo": {"samples": "samples"}}
    model = tmp_path / "demo.pt"
    atomic_torch_save(model, payload)
    samples = tmp_path / "samples" / "Japanese_(katakana)"
    names = sorted(p.name for p in tiny_flat.iterdir() if p.is_dir())
    for k, name in enumerate(names[:6], start=1):
        shutil.copytree(tiny_flat / name, samples / f"character{k:02d}")
    session = session_for(model)
    selection = session.demo_job()(lambda done, total: None, lambda: False)
    assert [label for label, _, _ in selection] == [f"Japanese {k:02d}" for k in range(1, 6)]
    for label, support, tests in selection:
        files = sorted(support[0].parent.glob("*.png"))
        assert support == files[:5] and tests == files[5:7]
    summary = session.fill_demo(selection, model)
    assert summary is not None and (summary.n_classes, summary.n_tests) == (5, 10)
    assert summary.alphabet == "Japanese (katakana)"
    assert [len(c.examples) for c in session.support] == [5] * 5

    shutil.rmtree(samples.parent)
    samples.mkdir(parents=True)
    with pytest.raises(adapt_module.EngineError, match="5 character folders"):
        session.demo_job()(lambda done, total: None, lambda: False)
    assert adapt_module.demo_samples_folder(session_for(checkpoints["protonet"]).checkpoint, model) is None
    for name in ("../elsewhere", "/etc", ".."):  # a checkpoint cannot point the demo out of its own folder
        session.checkpoint.extra["demo"]["samples"] = name
        assert adapt_module.demo_samples_folder(session.checkpoint, model) is None


def test_a_glyph_model_without_samples_demos_glyphs_of_its_test_alphabets():
    from engine.data.glyphs import ensure_glyph_dataset
    from engine.data.splits import ClassSplit

    root = ensure_glyph_dataset()
    alphabet = sorted(p.name for p in root.iterdir() if p.is_dir())[-1]
    test = [f"{alphabet}/character{k:02d}" for k in range(1, 8)]
    selection = adapt_module.demo_selection(ClassSplit(train=[], val=[], test=test))
    assert [label for label, _, _ in selection] == [f"{adapt_module.alphabet_label(alphabet)} {k:02d}"
                                                   for k in range(1, 6)]
    assert all(f.parent.parent == root / alphabet for _, support, tests in selection for f in support + tests)
    assert all(len(support) == 5 and len(tests) == 2 for _, support, tests in selection)
