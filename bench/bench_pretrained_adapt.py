"""Adapt panel latency with a torchvision backbone on photos, and where the cold time goes.

Not a test. The real panel (offscreen Qt, CPU), a ProtoNet checkpoint, 5-way 5-shot support and 10 test
colour images; per setting it prints

* cold: drop -> predictions with an empty feature cache (every support and test image embedded, the
  situation after opening a model on a filled support set); the panel sends such an update to its worker
  thread (every core) when its estimate (images to embed x seconds per image measured at load) is long,
  and the time runs until the worker's predictions are shown;
* new image: drop -> predictions for an image not seen before (its features computed: one forward);
* warm: drop -> predictions for an image whose features are cached (dropped again after an undo);
* the cold time taken apart: decoding the 36 files, one batched forward of the 36 images (fp32, and
  channels-last), the same images one forward each (6 timed, scaled to 36), and the network's cost in GFLOPs with the rate
  this CPU reached (the bound on any cold figure: the 36 forwards are the work).

Random weights (latency does not depend on them). Torch runs as in the studio: one thread in the GUI
thread (``studio.jobs.policy.keep_gui_thread_single_threaded``, which MainWindow calls at start-up;
the Adapt view's one-pass adaptation runs there); ``--threads N`` sets N threads instead (what a panel
made outside the window got, e.g. in bench_adapt_latency.py before it applied the policy).

    python bench/bench_pretrained_adapt.py [--trials 5] [--threads N] [--only resnet18]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

from bench_adapt_latency import (N_SHOT, N_TEST, N_WAY, guard_none_refcount, open_panel, until_current,  # noqa: E402
                                 write_images)

SETTINGS = [  # (label, backbone, image size, cold target s, warm target s)
    ("ResNet-18 (torchvision), 224x224 colour", "resnet18", 224, 1.0, 0.150),
    ("ResNet-12 (width 64), 84x84 colour", "resnet12", 84, 1.0, 0.150),
]


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def panel_latencies(backbone: str, size: int, trials: int, tmp: Path) -> dict[str, float]:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    panel, cards, files = open_panel(tmp, backbone, size, 3, 1, N_SHOT + 2 + 2 * trials)
    cold, new, warm = [], [], []
    for trial in range(trials):
        card, class_files = cards[trial % N_WAY], files[trial % N_WAY]
        first, second = class_files[N_SHOT + 2 + 2 * trial], class_files[N_SHOT + 3 + 2 * trial]
        panel.feature_cache.clear()  # cold: a new image and an empty cache, so all 36 images are embedded
        cold.append(until_current(panel, lambda: panel.add_files(card, [first])))  # in the worker (every core)
        panel.undo()
        new.append(until_current(panel, lambda: panel.add_files(card, [second])))  # only this image is embedded
        assert len(panel.test_zone.tiles) == N_TEST, panel.banner_text()
        panel.undo()
        warm.append(until_current(panel, lambda: panel.add_files(card, [second])))  # its features are cached
        panel.undo()
        app.processEvents()
    panel.close()
    panel.deleteLater()
    app.processEvents()
    return {"cold": statistics.median(cold), "new": statistics.median(new), "warm": statistics.median(warm)}


def cold_parts(backbone: str, size: int, tmp: Path) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    from engine.config import ModelConfig
    from engine.data.preprocess import Preprocessing
    from engine.models.registry import build_backbone

    paths = [p for class_files in write_images(tmp / f"{backbone}-parts", N_WAY, 7, size, 3) for p in class_files]
    prep = Preprocessing(size, 3)
    decode = timed(lambda: prep.load_many(paths[:N_WAY * N_SHOT + N_TEST]))
    network = build_backbone(ModelConfig(backbone, 64), 3, size).eval()
    images = torch.randn(N_WAY * N_SHOT + N_TEST, 3, size, size)
    with torch.no_grad():
        network(images[:2])  # first-call set-up, measured apart
        first = timed(lambda: network(images[:1]))
        batched = min(timed(lambda: network(images)) for _ in range(2))
        one_by_one = timed(lambda: [network(image[None]) for image in images[:6]]) * len(images) / 6
        with FlopCounterMode(display=False) as counter:
            network(images[:1])
        network = network.to(memory_format=torch.channels_last)
        last = images.contiguous(memory_format=torch.channels_last)
        channels_last = min(timed(lambda: network(last)) for _ in range(2))
    gflops = counter.get_total_flops() / 1e9
    return {"decode": decode, "first": first, "batched": batched, "one_by_one": one_by_one,
            "channels_last": channels_last, "gflops": gflops,
            "rate": gflops * len(images) / batched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the studio's GUI-thread policy)")
    parser.add_argument("--only", default="", help="only the settings whose backbone is this")
    args = parser.parse_args(argv)
    guard_none_refcount()
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        from studio.jobs.policy import keep_gui_thread_single_threaded
        keep_gui_thread_single_threaded()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU ({os.cpu_count()} cores, load average {load:.1f}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {N_WAY}-way {N_SHOT}-shot support, {N_TEST} test images")
    with tempfile.TemporaryDirectory(prefix="bench-pretrained-") as tmp:
        for label, backbone, size, cold_target, warm_target in SETTINGS:
            if args.only and backbone != args.only:
                continue
            times = panel_latencies(backbone, size, args.trials, Path(tmp))
            parts = cold_parts(backbone, size, Path(tmp))
            print(f"{label}: cold {1000 * times['cold']:.0f} ms (target {1000 * cold_target:.0f}), new image "
                  f"{1000 * times['new']:.0f} ms, warm {1000 * times['warm']:.0f} ms (target {1000 * warm_target:.0f})")
            print(f"  cold apart: decode 36 files {1000 * parts['decode']:.0f} ms; one forward of 36 "
                  f"{1000 * parts['batched']:.0f} ms (channels-last {1000 * parts['channels_last']:.0f} ms), 36 "
                  f"forwards of 1 {1000 * parts['one_by_one']:.0f} ms; first call of 1 {1000 * parts['first']:.0f} ms; "
                  f"{parts['gflops']:.2f} GFLOPs an image, {parts['rate']:.0f} GFLOP/s reached")
    return 0


if __name__ == "__main__":
    sys.exit(main())
