"""bf16 against fp32 for every registered algorithm: the measurements behind ``train.precision = auto``.

For each algorithm, two copies with the same weights train on the same glyph batches (episodes or class
batches, as the trainer's sampling rule gives them), one in fp32 and one under bf16 autocast,
interleaved round by round; then both adapt to the same test episodes and predict their queries.
The table gives training steps/s, adaptation episodes/s and the ratios (bf16 / fp32; above 1 = bf16
faster), and the largest difference between the two copies' query probabilities after adaptation (same
weights), which says how much bf16 moves a prediction. Reporting only: exit code 0 always.

    python bench/bench_precision.py                     # every algorithm, Conv-4, 28 px, 1 thread
    python bench/bench_precision.py --only protonet,maml --image-size 84 --channels 3
"""

from __future__ import annotations

import copy
from typing import Any

import torch

import common
from engine.algorithms.registry import ALGORITHM_CONFIGS, ALGORITHMS, build_algorithm
from engine.config import DataConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig, resolve_channels_last
from engine.runtime.precision import native_bf16
from engine.training.sampling import build_training_sampler


def build_pair(name: str, args: Any, device: torch.device, n_train: int) -> tuple[Any, Any, RunConfig]:
    """(fp32 copy, bf16 copy with the same weights, their config)."""
    config = RunConfig(data=DataConfig(image_size=args.image_size, channels=args.channels),
                       task=TaskConfig(n_way=5, n_shot=1, n_query=15, meta_batch_size=args.meta_batch),
                       model=ModelConfig(backbone=args.backbone), algorithm=ALGORITHM_CONFIGS[name](),
                       train=TrainConfig(seed=args.seed, device=str(device)))
    torch.manual_seed(args.seed)
    fp32 = build_algorithm(config, n_train_classes=n_train).to(device)
    bf16 = copy.deepcopy(fp32)
    channels_last = resolve_channels_last(config.train.channels_last, device, args.image_size)
    fp32.configure_runtime("fp32", channels_last)
    bf16.configure_runtime("bf16", channels_last)
    return fp32, bf16, config


def adaptation_rates(pair: dict[str, Any], tasks: list, args: Any, device: torch.device) -> tuple[dict, float]:
    """(precision -> adapted episodes/s, largest |p_bf16 - p_fp32| over the queries)."""
    probabilities: dict[str, list] = {name: [] for name in pair}

    def adapt_step(name: str):
        def step(i: int) -> None:
            task = tasks[i % len(tasks)]
            probs = pair[name].adapt(task.support_x, task.support_y).predict(task.query_x)
            if i < len(tasks) and len(probabilities[name]) <= i:
                probabilities[name].append(probs.float())
        return step

    for algorithm in pair.values():
        algorithm.train(False)
    timings = common.time_interleaved({name: adapt_step(name) for name in pair}, steps=args.adapt_steps,
                                      warmup=len(tasks), rounds=args.rounds, items_per_step=1, device=device)
    drift = max(common.max_abs_diff(a, b) for a, b in zip(probabilities["fp32"], probabilities["bf16"]))
    return {name: timing.rate for name, timing in timings.items()}, drift


def measure(name: str, data: Any, args: Any, device: torch.device) -> list[Any]:
    fp32, bf16, config = build_pair(name, args, device, len(data.class_ids("train")))
    sampler = build_training_sampler(config, data)
    batches = [sampler.sample_batch(config.task.meta_batch_size) if hasattr(sampler, "sample_batch")
               else sampler.sample() for _ in range(args.warmup + args.steps)]
    pair = {"fp32": fp32, "bf16": bf16}
    train = common.time_interleaved({precision: (lambda i, a=algorithm: a.meta_train_step(batches[i % len(batches)]))
                                     for precision, algorithm in pair.items()},
                                    steps=args.steps, warmup=args.warmup, rounds=args.rounds, items_per_step=1,
                                    device=device)
    tasks = common.glyph_tasks(data, "test", 4, n_way=5, n_shot=1, n_query=15, seed=args.seed, device=device)
    adapt, drift = adaptation_rates(pair, tasks, args, device)
    return [name, train["fp32"].rate, train["bf16"].rate, train["bf16"].rate / train["fp32"].rate,
            adapt["fp32"], adapt["bf16"], adapt["bf16"] / adapt["fp32"], drift]


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=12, warmup=3, rounds=3)
    parser.add_argument("--only", default="", help="comma list of algorithm names (default: all registered)")
    parser.add_argument("--backbone", default="conv4")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--meta-batch", type=int, default=1)
    parser.add_argument("--adapt-steps", type=int, default=8, help="timed adaptations per precision")
    args = parser.parse_args()
    device = common.setup(args)
    native, reason = native_bf16(device)
    print(f"native bf16: {native} ({reason})")
    data = common.glyph_data(args.seed) if args.image_size == 28 and args.channels == 1 else None
    if data is None:
        from engine.data.dataset import load_data
        data = load_data(DataConfig(image_size=args.image_size, channels=args.channels, split_seed=args.seed))
    names = [n for n in args.only.split(",") if n] or list(ALGORITHMS)
    rows = []
    for name in names:
        try:
            rows.append(measure(name, data, args, device))
        except Exception as error:  # noqa: BLE001 - a report: one algorithm's failure must not hide the rest
            rows.append([name, "error", str(error)[:60], "", "", "", "", ""])
        print(f"  measured {name}", flush=True)
    common.print_table(rows, ["algorithm", "train fp32/s", "train bf16/s", "train x", "adapt fp32/s",
                              "adapt bf16/s", "adapt x", "max |dp|"])


if __name__ == "__main__":
    main()
