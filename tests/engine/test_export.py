"""Export to ONNX / pt2 / TorchScript with the parity check (engine.export, ``meta-engine export``)."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from engine.adapted import load_adapted
from engine.algorithms.registry import ALGORITHMS
from engine.cli import main
from engine.data.glyphs import generate_glyph_images
from engine.export import (EXPORT_FORMATS, ExportError, ParityError, backbone_source, classifier_source, export_source,
                           format_from_suffix)
from engine.inference import predict_folders
from engine.training.checkpoint import load_algorithm
from tests.engine.test_adapted import adapted_file

torch.set_num_threads(1)
DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo_model.pt"


def glyph_folder(root: Path, n_classes: int = 3, n_images: int = 4, seed: int = 7) -> Path:
    """A support folder of built-in glyphs: one sub-folder of PNGs per character."""
    from PIL import Image

    glyphs = generate_glyph_images(seed=seed, n_alphabets=1, chars_per_alphabet=n_classes, n_variants=n_images)
    for c, name in enumerate(glyphs.character_names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for v in range(n_images):
            Image.fromarray(glyphs.images[c, v]).save(root / name / f"{v}.png")
    return root


def run_exported(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """The exported file run by its own runtime, independently of engine.export."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    if fmt == "pt2":
        return torch.export.load(str(path)).module()(x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path))(x)


def stored_class_names(path: Path, fmt: str) -> list[str]:
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(props["preprocessing.json"])["image_size"] == 28
        return props["classes.txt"].split()
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("classes.txt"))
        return archive.read(name).decode().split()


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
def test_demo_model_with_a_glyph_support_folder_exports_with_its_parity_figure(tmp_path: Path, fmt: str,
                                                                               capsys) -> None:
    support = glyph_folder(tmp_path / "support")
    queries = glyph_folder(tmp_path / "queries", seed=8)
    out = tmp_path / f"demo{EXPORT_FORMATS[fmt][1]}"
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(DEMO_MODEL), "--support", str(support), "--format", fmt,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    figure = float(printed.split("parity: max abs difference of probabilities ")[1].split()[0])
    assert 0 <= figure <= 1e-4 and "on 18 images" in printed, printed
    assert stored_class_names(out, fmt) == ["character01", "character02", "character03"]
    # independently: the file run by its runtime on other images (another batch size) equals meta-engine predict
    report = predict_folders(DEMO_MODEL, support, [queries])
    algorithm, checkpoint = load_algorithm(DEMO_MODEL)
    images, _, _ = checkpoint.preprocessing.load_many([Path(row["file"]) for row in report["predictions"]])
    exported = run_exported(out, fmt, images)  # load_many normalises
    expected = torch.tensor([row["probabilities"] for row in report["predictions"]])
    assert exported.shape == (12, 3)
    assert torch.allclose(exported, expected, atol=1e-4)


def test_a_training_checkpoint_without_support_exports_its_backbone(tmp_path: Path, capsys) -> None:
    out = tmp_path / "backbone.onnx"
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(DEMO_MODEL), "--format", "onnx", "--out", str(out)]) == 0
    assert "exported the backbone" in capsys.readouterr().out
    algorithm, checkpoint = load_algorithm(DEMO_MODEL)
    x = checkpoint.preprocessing.normalize(torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8))
    with torch.no_grad():
        expected = algorithm.backbone.eval()(x)
    assert torch.allclose(run_exported(out, "onnx", x), expected, atol=1e-4)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_every_algorithm_s_adapted_classifier_exports_with_parity(tmp_path: Path, algorithm: str, fmt: str) -> None:
    _, path = adapted_file(tmp_path, algorithm)
    adapted = load_adapted(path)
    if ALGORITHMS[algorithm].transductive:  # an inference over the whole query batch: refused, naming why
        with pytest.raises(ExportError, match=f"{algorithm} is transductive: .* export the trained backbone"):
            classifier_source(adapted)
        return
    report = export_source(classifier_source(adapted), tmp_path / f"model{EXPORT_FORMATS[fmt][1]}", fmt)
    assert report.parity <= 1e-4 and report.n_images == 6 + 6
    queries = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    x = adapted.preprocessing.normalize(queries)
    assert torch.allclose(run_exported(report.path, fmt, x), adapted.predict(x), atol=1e-4)
    assert stored_class_names(report.path, fmt) == ["cat", "dog", "owl"]


def test_an_export_that_differs_from_pytorch_fails_and_leaves_no_file(tmp_path: Path) -> None:
    algorithm, checkpoint = load_algorithm(DEMO_MODEL)
    source = backbone_source(algorithm, checkpoint.preprocessing)
    source.reference[1] = source.reference[1] + 1e-3 * source.reference[1].abs().max()  # what PyTorch "computed"
    out = tmp_path / "backbone.pt2"
    with pytest.raises(ParityError, match=r"backbone.pt2: .* differs from PyTorch by \d\.\d\de-0[34] .*removed"):
        export_source(source, out, "pt2")
    assert not out.exists()


def test_onnx_export_without_onnxscript_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript raises ImportError
    algorithm, checkpoint = load_algorithm(DEMO_MODEL)
    with pytest.raises(ExportError, match=r"ONNX export needs onnxscript: pip install 'meta-studio\[export\]'"):
        export_source(backbone_source(algorithm, checkpoint.preprocessing), tmp_path / "b.onnx", "onnx")


def test_format_from_suffix() -> None:
    assert [format_from_suffix(n) for n in ("a.onnx", "a.PT2", "a.ts.pt", "a.pt")] == ["onnx", "pt2", "torchscript",
                                                                                      None]
