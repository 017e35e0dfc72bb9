"""Channels-last against NCHW for our training steps: the measurements behind ``train.channels_last = auto``.

For each setting (algorithm, backbone, image size, precision) two copies of the same algorithm
train on the same pre-sampled episodes, one with ``train.channels_last`` on and one off,
interleaved round by round; the table gives steps/s of each and the ratio (on / off, above
1 = channels-last faster). Reporting only: exit code 0 always.

    python bench/bench_layouts.py --device cpu --threads 1
    python bench/bench_layouts.py --device cuda --steps 60 --warmup 10
"""

from __future__ import annotations

import sys
from typing import Any

import torch

import common
from engine.config import MAMLConfig, ModelConfig, ProtoNetConfig

# (label, algorithm config, backbone, image size, channels, n_way, n_shot, n_query, meta-batch)
SETTINGS = [
    ("protonet conv4 28px 5w5s15q", ProtoNetConfig(lr=1e-3), "conv4", 28, 1, 5, 5, 15, 1),
    ("maml-2nd conv4 28px 5w1s15q mb4", MAMLConfig(lr=1e-3, inner_lr=0.4, inner_steps=1), "conv4", 28, 1, 5, 1, 15, 4),
    ("fomaml conv4 28px 5w1s15q mb4", MAMLConfig(lr=1e-3, inner_lr=0.4, inner_steps=1, first_order=True), "conv4", 28,
     1, 5, 1, 15, 4),
    ("protonet resnet12 84px 5w1s3q", ProtoNetConfig(lr=1e-3), "resnet12", 84, 3, 5, 1, 3, 1),
]


def build(setting: tuple, layout: str, precision: str, device: torch.device, seed: int) -> Any:
    _, algorithm, backbone, size, channels, n_way, n_shot, n_query, meta_batch = setting
    common.use_channels_last(layout)
    config = common.run_config(algorithm, n_way=n_way, n_shot=n_shot, n_query=n_query, meta_batch=meta_batch,
                               device=device, seed=seed)
    config.model = ModelConfig(backbone=backbone)
    config.data.image_size, config.data.channels = size, channels
    config.train.precision = precision
    return common.build_ours(config, device, seed)


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=6, warmup=2, rounds=3)
    parser.add_argument("--precisions", default="", help="comma list (default: fp32 on the CPU, fp32,bf16 on CUDA)")
    parser.add_argument("--only", default="", help="run the settings whose label contains this text")
    args = parser.parse_args()
    device = common.setup(args)
    precisions = [p for p in (args.precisions or ("fp32,bf16" if device.type == "cuda" else "fp32")).split(",") if p]
    rows = []
    for setting in SETTINGS:
        label, *_, size, channels, n_way, n_shot, n_query, meta_batch = setting
        if args.only not in label:
            continue
        n_batches = args.warmup + args.steps
        pool = common.random_tasks(n_batches * meta_batch, n_way=n_way, n_shot=n_shot, n_query=n_query,
                                   seed=args.seed, device=device, image_size=size, channels=channels)
        batches = [pool[i * meta_batch:(i + 1) * meta_batch] for i in range(n_batches)]
        for precision in precisions:
            on, off = (build(setting, layout, precision, device, args.seed) for layout in ("on", "off"))
            timings = common.time_interleaved(
                {"on": lambda i: on.meta_train_step(batches[i % n_batches]),
                 "off": lambda i: off.meta_train_step(batches[i % n_batches])},
                steps=args.steps, warmup=args.warmup, rounds=args.rounds, items_per_step=1, device=device)
            ratio = timings["on"].rate / timings["off"].rate
            rows.append((label, precision, timings["off"].rate, timings["on"].rate, ratio,
                         max(timings["on"].spread, timings["off"].spread)))
            print(f"layout {label} {precision}: NCHW {timings['off'].rate:.3g} steps/s, channels-last "
                  f"{timings['on'].rate:.3g} steps/s, ratio {ratio:.2f}x", flush=True)
    print()
    common.print_table(rows, ("setting", "precision", "NCHW steps/s", "channels-last steps/s", "on/off",
                              "round spread"))


if __name__ == "__main__":
    main()
    sys.exit(0)
