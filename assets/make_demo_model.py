"""Make ``assets/demo_model.pt``: the small model behind the Adapt panel's "Demo" button.

A Conv-4 (64 filters) Prototypical Network meta-trained on the built-in glyph
data set with whole alphabets held out (group split): the last four alphabets
are the test classes, so the demo's new classes come from alphabets the model
never saw. Deterministic (fixed seeds); a few minutes on two CPU cores. The
optimiser state is dropped from the shipped file (it only matters to resume
training), which keeps it under 0.5 MB.

    python assets/make_demo_model.py            # writes assets/demo_model.pt, prints test accuracy
    python assets/make_demo_model.py --steps 50 --out /tmp/quick.pt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from engine.config import BUILTIN_GLYPHS, ProtoNetConfig, RunConfig  # noqa: E402
from engine.data.glyphs import ensure_glyph_dataset  # noqa: E402
from engine.inference import evaluate_checkpoint  # noqa: E402
from engine.io import atomic_torch_save  # noqa: E402
from engine.training.checkpoint import read_payload  # noqa: E402
from engine.training.trainer import Trainer  # noqa: E402

DEFAULT_OUT = REPO / "assets" / "demo_model.pt"
N_VAL_ALPHABETS, N_TEST_ALPHABETS = 3, 4


def demo_config(alphabets: list[str], steps: int, threads: int) -> RunConfig:
    """ProtoNet, Conv-4 x 64, 10-way 5-shot training episodes, alphabets held out for val and test."""
    config = RunConfig(algorithm=ProtoNetConfig(lr=1e-3), name="glyph demo model")
    config.data.root = BUILTIN_GLYPHS
    config.data.split_mode = "group"
    config.data.val_groups = alphabets[-(N_VAL_ALPHABETS + N_TEST_ALPHABETS):-N_TEST_ALPHABETS]
    config.data.test_groups = alphabets[-N_TEST_ALPHABETS:]
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 10, 5, 5, 1
    config.model.backbone, config.model.hidden_channels = "conv4", 64
    config.train.steps = steps
    config.train.val_every = max(1, steps // 4)
    config.train.val_episodes = 20
    config.train.checkpoint_every = steps
    config.train.seed = 0
    config.train.num_threads = threads
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="meta-training steps (default 400)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    root = ensure_glyph_dataset(seed=0)
    alphabets = sorted(p.name for p in root.iterdir() if p.is_dir())
    config = demo_config(alphabets, args.steps, args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="meta-studio-demo-") as tmp:
        run_dir = Path(tmp) / "run"
        summary = Trainer(config, run_dir=run_dir).run()
        if summary.status != "finished":
            print(f"training {summary.status}: {summary.message}", file=sys.stderr)
            return 1
        best = run_dir / "checkpoints" / "best.pt"
        results = {}
        for shots in (1, 5):
            result, scope = evaluate_checkpoint(best, episodes=200, n_way=5, n_shot=shots, n_query=15, seed=0)
            results[shots] = (result.accuracy, result.ci95)
            print(f"5-way {shots}-shot accuracy on {scope} ({', '.join(config.data.test_groups)}): "
                  f"{100 * result.accuracy:.2f}% +- {100 * result.ci95:.2f}%")
        payload = read_payload(best)
        payload["algorithm"]["optimizers"] = {}  # only needed to resume training
        payload["extra"] = {**payload.get("extra", {}), "demo": {
            "test_accuracy_5way_1shot": results[1][0], "test_accuracy_5way_5shot": results[5][0],
            "made_by": "assets/make_demo_model.py"}}
        atomic_torch_save(args.out, payload)
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kb:.0f} KB, best validation accuracy {100 * summary.best_val_accuracy:.1f}% "
          f"at step {summary.best_step}) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
