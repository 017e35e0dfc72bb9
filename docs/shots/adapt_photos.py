"""Screenshot of the Adapt tab classifying colour photos with a torchvision backbone, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/adapt_photos.py [--out docs/screens/adapt_photos.png]

Makes four classes of 224 px colour pictures (sunsets, seascapes, forests, berries: seeded drawings with
noise, 5 per class as support and 2 each to test), a ProtoNet checkpoint on torchvision's ResNet-18 with
its weights' preprocessing (shorter side to 256 px, the centre 224 px, colour; ImageNet weights from the PyTorch hub cache when present there, else random weights:
nothing is downloaded), opens it in the Adapt tab of the real main window, drops the pictures on the
cards and the test zone, and prints the predictions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402

SIZE, SUPPORT, TEST = 224, 5, 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    return shot_parser(__doc__, out="docs/screens/adapt_photos.png", timeout=600.0).parse_args(argv)


def gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    t = np.linspace(0, 1, SIZE)[:, None, None]
    rows = (1 - t) * np.array(top) + t * np.array(bottom)
    return Image.fromarray(np.repeat(rows, SIZE, axis=1).astype(np.uint8))


def sunset(rng: np.random.Generator) -> Image.Image:
    image = gradient((int(rng.integers(230, 256)), int(rng.integers(110, 160)), 40), (90, 30, int(rng.integers(90, 140))))
    draw = ImageDraw.Draw(image)
    x, y, r = rng.integers(50, 174), rng.integers(90, 150), rng.integers(18, 34)
    draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 225, 90))
    draw.rectangle((0, int(rng.integers(160, 190)), SIZE, SIZE), fill=(40, 20, 30))
    return image


def seascape(rng: np.random.Generator) -> Image.Image:
    image = gradient((150, 200, 245), (10, 60, int(rng.integers(120, 170))))
    draw = ImageDraw.Draw(image)
    horizon = int(rng.integers(70, 110))
    for row in range(horizon, SIZE, int(rng.integers(9, 15))):
        phase, amplitude = rng.uniform(0, 6.3), rng.uniform(2, 5)
        points = [(x, row + amplitude * np.sin(x / 14 + phase)) for x in range(0, SIZE + 8, 8)]
        draw.line(points, fill=(225, 240, 255), width=2)
    return image


def forest(rng: np.random.Generator) -> Image.Image:
    image = gradient((170, 210, 170), (40, 80, 30))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(10, 16))):
        x, height = rng.integers(0, SIZE), rng.integers(70, 150)
        base = int(rng.integers(170, 215))
        draw.rectangle((x - 4, base, x + 4, base + 20), fill=(90, 55, 25))
        green = (int(rng.integers(10, 50)), int(rng.integers(90, 150)), int(rng.integers(20, 60)))
        draw.polygon([(x, base - height), (x - height // 3, base), (x + height // 3, base)], fill=green)
    return image


def berries(rng: np.random.Generator) -> Image.Image:
    image = gradient((60, 140, 50), (30, 90, 30))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 11))):
        x, y, r = rng.integers(20, 204), rng.integers(20, 204), rng.integers(14, 26)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(int(rng.integers(190, 240)), 20, 35))
        for _ in range(5):
            dx, dy = rng.integers(-r // 2, r // 2 + 1, 2)
            draw.point((x + dx, y + dy), fill=(250, 230, 120))
    return image


CLASSES = {"sunset": sunset, "sea": seascape, "forest": forest, "berries": berries}


def write_pictures(folder: Path) -> dict[str, list[Path]]:
    """Per class, SUPPORT + TEST seeded pictures with a little blur and noise (PNG files)."""
    files: dict[str, list[Path]] = {}
    for index, (name, paint) in enumerate(CLASSES.items()):
        rng = np.random.default_rng(index)
        files[name] = []
        for i in range(SUPPORT + TEST):
            image = paint(rng).filter(ImageFilter.GaussianBlur(1.2))
            pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 8, (SIZE, SIZE, 3))
            path = folder / name / f"{name}-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            files[name].append(path)
    return files


def make_checkpoint(folder: Path) -> tuple[Path, str]:
    """A ProtoNet checkpoint on ResNet-18 at 224 px colour; (path, which weights it holds)."""
    import torch

    from engine.algorithms.registry import build_algorithm
    from engine.config import ProtoNetConfig, RunConfig
    from engine.data.preprocess import Preprocessing
    from engine.data.splits import ClassSplit
    from engine.errors import CheckpointError
    from engine.models.torchvision_backbones import hub_weights_path, weights_input
    from engine.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = RunConfig(algorithm=ProtoNetConfig())
    config.model.backbone = "resnet18"
    for dotted, value in weights_input("resnet18").items():  # the weights' preprocessing: 224 px of 256, colour
        setattr(config.data, dotted.split(".")[1], value)
    try:
        weights = str(hub_weights_path("resnet18"))
        config.model.weights_path = "torchvision"
    except CheckpointError:
        weights = "random weights (no ImageNet file in the hub cache)"
    algorithm = build_algorithm(config, n_train_classes=4)
    split = ClassSplit(train=list(CLASSES), val=["val"], test=["test"])
    path = save_checkpoint(folder / "resnet18-photos.pt", algorithm, config, split,
                           Preprocessing.from_config(config.data), step=0, n_train_classes=4)
    return path, weights


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_home()
    folder = Path(tempfile.mkdtemp(prefix="adapt-photos-"))
    files = write_pictures(folder / "pictures")
    checkpoint, weights = make_checkpoint(folder)
    print(f"ResNet-18 with {weights}")
    _, window = start_window(args)
    panel = window.adapt_panel
    for dock in (window.setup_dock, window.runs_dock, window.log_dock):
        dock.close()
    tabs = window.center_tabs
    tabs.setCurrentIndex(next(i for i in range(tabs.count()) if tabs.tabText(i) == "Adapt"))
    if not panel.load_checkpoint(checkpoint):
        raise SystemExit(f"could not open {checkpoint}: {panel.banner_text()}")
    for name, paths in files.items():
        card = panel.add_class(name)
        card.name_edit.deselect()
        panel.add_files(card, paths[:SUPPORT])
    panel.add_test_files([path for paths in files.values() for path in paths[SUPPORT:]])
    zone = panel.test_zone
    wait_until(lambda: not panel.is_busy() and panel.is_current() and len(zone.tiles) == TEST * len(CLASSES),
               args.timeout, "the predictions")
    truths = [name for name in CLASSES for _ in range(TEST)]
    for truth, tile in zip(truths, zone.tiles):
        print(f"{truth} picture: predicted {tile.predicted} ({max(tile.probabilities):.0%})")
    out = save_grab(window, args.out, settle_ms=1500)
    print(f"wrote {out}")
    window.close()
    return 0


if __name__ == "__main__":
    exit_with(main)
