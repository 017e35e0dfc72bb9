"""Make ``assets/demo_model.pt``: the small model behind the Adapt panel's "Demo" button.

Two sources, one recipe shape (a Conv-4 x 64 network on 28 px greyscale, a Prototypical Network by default):

* ``--source omniglot`` (the shipped model): meta-trained on real handwriting, Omniglot's
  ``images_background_small1`` (Lake et al. 2015, MIT licence; read from
  ``../shared/datasets/omniglot``), with rotations as new classes and small affine jitter. It also
  copies the Demo button's sample drawings, the first five characters of a small2 alphabet the model
  never saw (Japanese katakana), into ``assets/demo_samples/`` with Omniglot's licence. Measured on
  the characters of small2's alphabets that small1 lacks: 5-way 1/5-shot accuracy and Lake et al.'s
  20-way within-alphabet one-shot error rate.
* ``--source glyphs``: the same on the built-in glyphs; measured on
  Omniglot the same way when ``../shared`` is there. Writes ``/tmp/glyph_demo_model.pt`` unless
  ``--out`` says otherwise: the shipped model is the Omniglot one.
* ``--algorithm simpleshot`` (the default for glyphs): SimpleShot instead of ProtoNet (a classifier over
  all training classes, 220 images a step like the episodes, then nearest centroid on centred,
  L2-normalised features), with the affine jitter on. Better for the glyph-only model, whose test
  characters come from another domain (real handwriting); worse on Omniglot itself (bench/README.md,
  session 15). For the glyphs, the features are normalised without centring (L2N: session 16).
* ``--elastic`` (the default for glyphs): smooth random warps of every training image
  (``data.augment_elastic``), another hand's version of each glyph; no gain on Omniglot itself, measured on
  a dev set (bench/README.md, session 16).
* ``--test-views`` (default 16 for Omniglot, 1 for glyphs): ``model.test_views``, each image embedded as the mean
  feature of itself and 15 fixed small affine copies (engine/models/view_averaging.py); training is unchanged.
  On the Omniglot dev alphabet (Korean, a model trained without it): 13.07% within-alphabet error with 1 view,
  11.40% with 8, 10.84% with 16, 10.82% with 32; no gain for the glyph recipe (bench/README.md, session 17).

Deterministic (fixed seeds; ``--seed`` picks another training seed, for the spread between runs), in fp32 on
any CPU (``train.precision`` pinned: the figures are fp32 runs', and auto picks bf16 on some CPUs). The
optimiser state is dropped from the written file (it only matters to resume training), which keeps a
ProtoNet model under 0.5 MB (SimpleShot keeps its pre-training head: 1.5 MB for the glyphs).

    python assets/make_demo_model.py                     # assets/demo_model.pt + assets/demo_samples/
    python assets/make_demo_model.py --source glyphs     # the glyph-only model (SimpleShot, elastic warps)
    python assets/make_demo_model.py --source glyphs --algorithm protonet --no-elastic   # session 13's recipe
    python assets/make_demo_model.py --steps 50 --out /tmp/quick.pt --no-samples
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from engine.config import BUILTIN_GLYPHS, ProtoNetConfig, RunConfig, SimpleShotConfig  # noqa: E402
from engine.data.glyphs import ensure_glyph_dataset  # noqa: E402
from engine.inference import evaluate_checkpoint  # noqa: E402
from engine.io import atomic_torch_save  # noqa: E402
from engine.training.checkpoint import read_payload  # noqa: E402
from engine.training.trainer import Trainer  # noqa: E402

ASSETS = REPO / "assets"
DEFAULT_OUT = {"omniglot": ASSETS / "demo_model.pt", "glyphs": Path(tempfile.gettempdir()) / "glyph_demo_model.pt"}
OMNIGLOT = REPO.parent / "shared" / "datasets" / "omniglot"
SMALL1, SMALL2 = "images_background_small1", "images_background_small2"
SMALL1_ALPHABETS = ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
"""Left out of every figure: a model trained on small1 has seen them (Greek and Latin are in small2 too)."""
SAMPLES_DIR = "demo_samples"
SAMPLE_ALPHABET, SAMPLE_CHARACTERS, SAMPLE_DRAWINGS = "Japanese_(katakana)", 5, 7


def base_config(root: str, steps: int, threads: int, name: str, algorithm: str = "protonet") -> RunConfig:
    """ProtoNet, Conv-4 x 64, 20-way 1-shot training episodes, cosine rate from 2e-3, 5-way validation; all
    of ``root`` but a few validation and test characters (a seeded ratio split), rotations as new classes.
    ``algorithm`` "simpleshot": SimpleShot on batches of 220 images (an episode's count), affine jitter on."""
    simpleshot = algorithm == "simpleshot"
    config = RunConfig(algorithm=SimpleShotConfig(lr=2e-3, batch_size=220) if simpleshot else ProtoNetConfig(lr=2e-3),
                       name=name)
    config.data.root = root
    config.data.augment_rotations = True
    config.data.augment_affine = simpleshot
    config.data.train_ratio, config.data.val_ratio = 0.95, 0.04
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 20, 1, 10, 1
    config.task.val_n_way = 5
    config.model.backbone, config.model.hidden_channels = "conv4", 64
    config.train.steps, config.train.lr_schedule = steps, "cosine"
    config.train.val_every = max(1, steps // 8)
    config.train.val_episodes = 100
    config.train.checkpoint_every = steps
    config.train.seed = 0
    config.train.num_threads = threads
    config.train.precision = "fp32"  # as the shipped models were made: auto would pick bf16 on some CPUs
    return config


def omniglot_config(small1: Path, steps: int, threads: int, algorithm: str) -> RunConfig:
    """Omniglot small1, with small affine jitter (real drawings vary little; the glyphs are jittered at birth)."""
    config = base_config(str(small1), steps, threads, "Omniglot demo model", algorithm)
    config.data.augment_affine = True
    return config


def glyph_config(steps: int, threads: int, algorithm: str) -> RunConfig:
    """The built-in glyphs (made by :func:`main` before training). SimpleShot normalises features without
    centring them on the mean glyph feature (L2N): the test drawings are real handwriting, whose features
    centre elsewhere (better on the dev set for each of three glyph models, bench/README.md, session 16)."""
    config = base_config(BUILTIN_GLYPHS, steps, threads, "glyph demo model", algorithm)
    if isinstance(config.algorithm, SimpleShotConfig):
        config.algorithm.centering = False
    return config


def unzip_omniglot(scratch: Path) -> tuple[Path, Path] | None:
    """(small1, small2) unzipped from ../shared into ``scratch``; None when the zips are absent."""
    if not all((OMNIGLOT / f"{name}.zip").is_file() for name in (SMALL1, SMALL2)):
        return None
    for name in (SMALL1, SMALL2):
        with zipfile.ZipFile(OMNIGLOT / f"{name}.zip") as archive:
            archive.extractall(scratch)
    return scratch / SMALL1, scratch / SMALL2


def measure(checkpoint: Path, small2: Path | None) -> dict[str, float]:
    """Figures on the 106 characters of small2's alphabets that small1 lacks (for either source): 5-way
    1/5-shot accuracy (600 episodes) and the 20-way within-alphabet one-shot error rate (1000 episodes),
    each with its 95% CI."""
    if small2 is None:
        return {}
    figures = {}
    for shots in (1, 5):
        result, scope = evaluate_checkpoint(checkpoint, dataset=str(small2), episodes=600, n_way=5, n_shot=shots,
                                            n_query=15, seed=0, exclude_groups=SMALL1_ALPHABETS)
        figures[f"omniglot_novel_5way_{shots}shot"], figures[f"omniglot_novel_5way_{shots}shot_ci95"] = \
            result.accuracy, result.ci95
        print(f"5-way {shots}-shot accuracy on {scope}: {100 * result.accuracy:.2f}% +- {100 * result.ci95:.2f}%")
    result, scope = evaluate_checkpoint(checkpoint, dataset=str(small2), episodes=1000, n_way=20, n_shot=1, n_query=1,
                                        seed=0, protocol="within-alphabet", exclude_groups=SMALL1_ALPHABETS)
    figures["within_alphabet_error"], figures["within_alphabet_error_ci95"] = 1 - result.accuracy, result.ci95
    print(f"20-way within-alphabet one-shot error on {scope}: {100 * (1 - result.accuracy):.2f}% "
          f"+- {100 * result.ci95:.2f}%")
    return figures


def copy_samples(small2: Path, target: Path) -> None:
    """The Demo button's drawings: the first characters of an alphabet small1 lacks, with Omniglot's licence."""
    if target.exists():
        shutil.rmtree(target)
    for character in sorted((small2 / SAMPLE_ALPHABET).iterdir())[:SAMPLE_CHARACTERS]:
        folder = target / SAMPLE_ALPHABET / character.name
        folder.mkdir(parents=True)
        for drawing in sorted(character.glob("*.png"))[:SAMPLE_DRAWINGS]:
            shutil.copy(drawing, folder / drawing.name)
    shutil.copy(OMNIGLOT / "LICENSE", target / "LICENSE")
    (target / "README.md").write_text(
        f"# Sample drawings of the Demo button\n\nThe first {SAMPLE_CHARACTERS} characters of "
        f"{SAMPLE_ALPHABET.replace('_', ' ')}, {SAMPLE_DRAWINGS} drawings each (105x105 px), from the Omniglot data "
        f"set's `{SMALL2}` (an alphabet the shipped demo model never saw in training).\n\n"
        "Omniglot: Brenden M. Lake, Ruslan Salakhutdinov and Joshua B. Tenenbaum, *Human-level concept learning "
        "through probabilistic program induction*, Science 350 (2015); <https://github.com/brendenlake/omniglot>. "
        "MIT licence, copied in `LICENSE`. Copied by `assets/make_demo_model.py`.\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``algorithm``, ``elastic`` and ``test_views`` resolved from ``source`` where not
    given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("omniglot", "glyphs"), default="omniglot",
                        help="train on Omniglot small1 (the shipped model) or the built-in glyphs")
    parser.add_argument("--algorithm", choices=("protonet", "simpleshot"),
                        help="ProtoNet episodes or SimpleShot's classifier pre-training (default: protonet for "
                             "omniglot, simpleshot for glyphs)")
    parser.add_argument("--elastic", action=argparse.BooleanOptionalAction,
                        help="elastic warps of the training images (default: on for glyphs, off for omniglot)")
    parser.add_argument("--steps", type=int, default=4000, help="meta-training steps (default 4000)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--out", type=Path, help="output file (default: assets/demo_model.pt for omniglot, "
                                                 "a temporary file for glyphs)")
    parser.add_argument("--no-samples", action="store_true", help="do not (re)write assets/demo_samples/")
    parser.add_argument("--test-views", type=int, help="model.test_views: test-time views per image (default: "
                                                         "16 for omniglot, 1 for glyphs)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0; the figures' episodes "
                                                            "and the class split stay the same)")
    args = parser.parse_args(argv)
    glyphs = args.source == "glyphs"
    args.algorithm = args.algorithm or ("simpleshot" if glyphs else "protonet")
    args.elastic = glyphs if args.elastic is None else args.elastic
    args.test_views = args.test_views or (1 if glyphs else 16)
    return args


def recipe(args: argparse.Namespace, small1: Path | None) -> RunConfig:
    """The run configuration for ``args`` (``small1``: the unzipped folder, for ``--source omniglot``)."""
    config = omniglot_config(small1, args.steps, args.threads, args.algorithm) if args.source == "omniglot" \
        else glyph_config(args.steps, args.threads, args.algorithm)
    config.data.augment_elastic = args.elastic
    config.model.test_views = args.test_views
    config.train.seed = args.seed
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or DEFAULT_OUT[args.source]
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="meta-studio-demo-") as tmp:
        folders = unzip_omniglot(Path(tmp))
        if args.source == "omniglot" and folders is None:
            print(f"{OMNIGLOT}: the Omniglot zips ({SMALL1}.zip, {SMALL2}.zip) are not there", file=sys.stderr)
            return 2
        small2 = folders[1] if folders else None
        if args.source == "glyphs":
            ensure_glyph_dataset(seed=0)
        config = recipe(args, folders[0] if folders else None)
        run_dir = Path(tmp) / "run"
        summary = Trainer(config, run_dir=run_dir).run()
        if summary.status != "finished":
            print(f"training {summary.status}: {summary.message}", file=sys.stderr)
            return 1
        last = run_dir / "checkpoints" / "last.pt"
        figures = measure(last, small2)
        payload = read_payload(last)
        payload["algorithm"]["optimizers"] = {}  # only needed to resume training
        demo = {**figures, "made_by": "assets/make_demo_model.py", "source": args.source, "algorithm": args.algorithm,
                "elastic": args.elastic, "test_views": args.test_views, "seed": args.seed}
        if args.source == "omniglot":
            payload["config"]["data"]["root"] = SMALL1  # the unzipped copy is gone; the name says what it was
            demo["trained_on"] = f"Omniglot {SMALL1} (Lake et al. 2015, MIT licence: {SAMPLES_DIR}/LICENSE)"
            if not args.no_samples:
                copy_samples(small2, out.parent / SAMPLES_DIR)
                demo["samples"] = SAMPLES_DIR
        payload["extra"] = {**payload.get("extra", {}), "demo": demo}
        atomic_torch_save(out, payload)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
