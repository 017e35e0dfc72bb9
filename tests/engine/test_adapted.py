"""Adapted classifiers: save/load round trip, safe loading, shape checks, TorchScript export, CLI predict."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from engine.adapted import (FORMAT, export_torchscript, is_adapted_file, load_adapted, save_adapted)
from engine.algorithms.registry import build_algorithm
from engine.cli import main
from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.data.preprocess import Preprocessing
from engine.data.splits import ClassSplit
from engine.errors import CheckpointError
from engine.inference import predict_folders
from engine.training.checkpoint import load_algorithm, save_checkpoint

torch.set_num_threads(1)

FAST_SETTINGS = {"baseline": {"finetune_steps": 5}, "baseline++": {"finetune_steps": 5},
                 "maml": {"test_inner_steps": 2}, "fomaml": {"test_inner_steps": 2},
                 "reptile": {"test_inner_steps": 2}}


def make_checkpoint(path: Path, algorithm: str = "protonet", image_size: int = 28, channels: int = 1) -> Path:
    """An untrained but complete checkpoint (tiny Conv-4): adaptation needs weights, not good ones."""
    torch.manual_seed(0)
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[algorithm](**FAST_SETTINGS.get(algorithm, {})))
    config.data.image_size, config.data.channels = image_size, channels
    config.task.n_way = 3
    config.model.hidden_channels = 8
    model = build_algorithm(config, n_train_classes=4)
    prep = Preprocessing(image_size=image_size, channels=channels)
    split = ClassSplit(train=["a", "b", "c", "d"], val=["e"], test=["f"])
    return save_checkpoint(path, model, config, split, prep, step=3, n_train_classes=4)


def support_set(n_classes: int = 3, shots: int = 2, size: int = 28, channels: int = 1) -> tuple:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n_classes * shots, channels, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n_classes).repeat_interleave(shots)
    return images, labels


def adapted_file(tmp_path: Path, algorithm: str = "protonet") -> tuple[Path, Path]:
    checkpoint = make_checkpoint(tmp_path / f"{algorithm}.pt", algorithm)
    model, ckpt = load_algorithm(checkpoint)
    images, labels = support_set()
    predictor = model.adapt(ckpt.preprocessing.normalize(images), labels)
    path = save_adapted(tmp_path / f"{algorithm}-adapted.pt", ckpt, ["cat", "dog", "owl"], images, labels,
                        predictor.state(), support_names=[f"{i}.png" for i in range(len(labels))])
    return checkpoint, path


@pytest.mark.parametrize("algorithm", sorted(ALGORITHM_CONFIGS))
def test_round_trip_gives_identical_predictions(tmp_path: Path, algorithm: str) -> None:
    checkpoint = make_checkpoint(tmp_path / "model.pt", algorithm)
    model, ckpt = load_algorithm(checkpoint)
    images, labels = support_set()
    predictor = model.adapt(ckpt.preprocessing.normalize(images), labels)
    queries = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    expected = predictor.predict(ckpt.preprocessing.normalize(queries))

    path = save_adapted(tmp_path / "adapted.pt", checkpoint, ["cat", "dog", "owl"], images, labels,
                        predictor.state(), algorithm=model)
    checkpoint.unlink()  # the adapted file stands alone
    loaded = load_adapted(path)

    assert loaded.class_names == ["cat", "dog", "owl"]
    assert loaded.preprocessing == ckpt.preprocessing
    assert torch.equal(loaded.support_images, images) and torch.equal(loaded.support_labels, labels)
    assert loaded.config.algorithm.name == algorithm
    assert torch.allclose(loaded.predict(queries), expected, atol=1e-6)
    assert is_adapted_file(path) and not is_adapted_file(tmp_path / "missing.pt")


def test_a_training_checkpoint_is_not_an_adapted_classifier(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    assert not is_adapted_file(checkpoint)
    with pytest.raises(CheckpointError, match="model.pt"):
        load_adapted(checkpoint)


class _RunsCode:
    """Unpickling this object would create the marker file (what a malicious file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_file_whose_unpickling_runs_code_is_refused_and_the_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    _, good = adapted_file(tmp_path)
    payload = torch.load(good, weights_only=True)
    payload["support_names"] = _RunsCode(marker)
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil)
    assert not marker.exists()

    with pytest.raises(CheckpointError, match="evil.pt") as error:
        load_adapted(evil)
    assert "refused" in str(error.value)
    assert main(["predict", "--checkpoint", str(evil), "--query", str(tmp_path)]) == 2
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the sanity check: the file really is a weaponised pickle
        torch.load(evil, weights_only=True)


@pytest.mark.parametrize("field,value,message", [
    ("support_images", torch.zeros(6, 3, 28, 28, dtype=torch.uint8), "support_images"),
    ("support_labels", torch.tensor([0, 0, 1, 1, 1, 1]), "every class present"),
    ("class_names", ["cat", "cat", "owl"], "unique"),
    ("predictor", {"prototypes": torch.zeros(3, 5)}, "does not fit"),
    ("predictor", {}, "does not fit"),
])
def test_malformed_files_are_refused_naming_the_file(tmp_path: Path, field: str, value: object, message: str) -> None:
    _, good = adapted_file(tmp_path)
    payload = torch.load(good, weights_only=True)
    payload[field] = value
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match=message) as error:
        load_adapted(bad)
    assert str(bad) in str(error.value)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    _, good = adapted_file(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_adapted(truncated)


@pytest.mark.parametrize("algorithm", ["protonet", "maml", "matching", "simpleshot", "baseline++"])
def test_torchscript_export_equals_predict(tmp_path: Path, algorithm: str) -> None:
    _, path = adapted_file(tmp_path, algorithm)
    adapted = load_adapted(path)
    script_path = export_torchscript(adapted, tmp_path / "model.ts")
    module = _jit_load(script_path)
    queries = torch.randint(0, 256, (9, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    x = adapted.preprocessing.normalize(queries)
    assert torch.allclose(module(x), adapted.predict(x), atol=1e-5)
    extra = {"classes.txt": "", "preprocessing.json": ""}
    _jit_load(script_path, _extra_files=extra)
    assert extra["classes.txt"].decode().split() == ["cat", "dog", "owl"]
    assert json.loads(extra["preprocessing.json"])["image_size"] == 28


def _jit_load(path: Path, **kwargs: object) -> torch.jit.ScriptModule:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; the export still targets it
        return torch.jit.load(str(path), **kwargs)


def write_images(folder: Path, images: torch.Tensor) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:02d}.png"
        Image.fromarray(image[0].numpy(), mode="L").save(path)
        paths.append(path)
    return paths


def test_predict_with_an_adapted_classifier_needs_no_support(tmp_path: Path, capsys) -> None:
    checkpoint, path = adapted_file(tmp_path)
    queries = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    files = write_images(tmp_path / "query" / "dog", queries)
    (tmp_path / "query" / "dog" / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(path), "--query", str(tmp_path / "query"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["cat", "dog", "owl"]
    expected = load_adapted(path).predict(queries)
    assert [row["file"] for row in report["predictions"]] == [str(f) for f in files]
    assert torch.allclose(torch.tensor([row["probabilities"] for row in report["predictions"]]), expected, atol=1e-5)
    assert [row["true"] for row in report["predictions"]] == ["dog"] * 4  # the sub-folder "dog" names a class
    assert report["accuracy"] == pytest.approx((expected.argmax(dim=1) == 1).float().mean().item())
    assert predict_folders(path, None, files)["classes"] == ["cat", "dog", "owl"]


def test_training_checkpoint_without_support_is_a_clear_error(tmp_path: Path, capsys) -> None:
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(checkpoint), "--query", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--support is required" in err and "model.pt" in err


def test_saved_file_has_the_documented_layout(tmp_path: Path) -> None:
    _, path = adapted_file(tmp_path)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT
    for key in ("config", "preprocessing", "split", "algorithm", "class_names", "support_images", "support_labels",
                "predictor"):
        assert key in payload
    assert payload["support_images"].dtype == torch.uint8
    assert payload["algorithm"]["optimizers"] == {}
