"""How close a ProtoNet step is to the floor set by its backbone, and what episode sampling costs.

1. A ProtoNet 5-way 5-shot 15-query step (``meta_train_step``, meta-batch 1) against a
   plain supervised training step of the same backbone on the same 100 images: our
   Conv4 + a Linear head, cross-entropy, backward, Adam step. Target: ProtoNet costs at
   most 1.15x the plain step. (Also printed: against forward + backward alone, no Adam.)
2. Sampling and collating one episode from the in-memory glyph cache
   (``EpisodeSampler.sample``: pick classes and images, one gather, normalise) against
   the ProtoNet step. Target: under 5% of a step. On CUDA the copy of the episode to the
   device is timed too.
3. What the trainer's loop actually pays per step on its critical path to get the next
   batch: the main thread's time in ``Trainer`` getting the batch (waiting for the one the
   prefetch thread drew, or drawing it inline) plus ``prepare_batch`` (the copy to the
   device), ``Trainer.batch_seconds``, over a short ProtoNet run on the same episodes, with
   prefetching as the trainer uses it on this device (on for CUDA/MPS, off on the CPU); the
   other setting is shown too. Same target: under 5% of a ProtoNet step. These are
   wall-clock times measured inside the trainer.
"""

from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F
from torch import nn

import common
from engine.algorithms.base import to_channels_last
from engine.config import DataConfig, ProtoNetConfig
from engine.models.conv4 import Conv4
from engine.training.prefetch import prefetch_default
from engine.training.trainer import Trainer

N_WAY, N_SHOT, N_QUERY = 5, 5, 15
STEP_TARGET = 1.15
SAMPLING_TARGET = 0.05


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=60, warmup=5, rounds=5)
    parser.add_argument("--samples", type=int, default=500, help="timed EpisodeSampler.sample calls")
    args = parser.parse_args()
    device = common.setup(args)
    data = common.glyph_data(args.seed)
    n_pool = args.warmup + args.steps
    tasks = common.glyph_tasks(data, "train", n_pool, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY,
                               seed=args.seed, device=device)
    batches = [(torch.cat([t.support_x, t.query_x]), torch.cat([t.support_y, t.query_y])) for t in tasks]

    config = common.run_config(ProtoNetConfig(lr=1e-3), n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY,
                               meta_batch=1, device=device, seed=args.seed)
    ours = common.build_ours(config, device, args.seed)
    torch.manual_seed(args.seed)
    plain = nn.Sequential(Conv4(1, 28, 64), nn.Linear(64, N_WAY)).to(device)
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3)
    bare = nn.Sequential(Conv4(1, 28, 64), nn.Linear(64, N_WAY)).to(device)
    if ours.channels_last:  # the plain steps run in the same memory format as ours
        plain.to(memory_format=torch.channels_last)
        bare.to(memory_format=torch.channels_last)
        batches = [(to_channels_last(x), y) for x, y in batches]

    def plain_step(i: int) -> None:
        x, y = batches[i % n_pool]
        loss = F.cross_entropy(plain(x), y)
        plain_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        plain_optimizer.step()

    def bare_step(i: int) -> None:
        x, y = batches[i % n_pool]
        bare.zero_grad(set_to_none=True)
        F.cross_entropy(bare(x), y).backward()

    def ours_step(i: int) -> None:
        ours.meta_train_step([tasks[i % n_pool]])

    contenders = {"plain supervised step (fwd+bwd+Adam)": plain_step, "plain forward+backward": bare_step,
                  "protonet meta_train_step": ours_step}
    if device.type == "cuda":  # the same launch-saving technique on the plain side, for an honest floor
        contenders["plain supervised step, CUDA-graphed fwd+bwd"] = graphed_plain_step(batches, ours.channels_last)

    print(f"\n== steps on {N_WAY * (N_SHOT + N_QUERY)} images: {args.warmup} warm-up + {args.steps} timed, "
          f"{args.rounds} interleaved rounds ==")
    timings = common.time_interleaved(
        contenders, steps=args.steps, warmup=args.warmup, rounds=args.rounds, items_per_step=1, device=device)
    common.print_table([(t.name, 1000.0 / t.rate, t.rate, t.spread) for t in timings.values()],
                       ("step", "ms/step", "steps/s", "round spread"))
    step_ms = 1000.0 / timings["protonet meta_train_step"].rate

    print(f"\n== sampling: {args.samples} EpisodeSampler.sample calls (train part of the glyph cache) ==")
    sampler = data.episodes("train", N_WAY, N_SHOT, N_QUERY, seed=args.seed + 7)
    sample_ms = median_ms(sampler.sample, args.samples)
    rows = [("EpisodeSampler.sample", sample_ms, 100.0 * sample_ms / step_ms)]
    transfer_ms = 0.0
    if device.type == "cuda":
        def sample_to_device() -> None:
            sampler.sample().to(device, non_blocking=False)
            common.synchronize(device)
        transfer_ms = median_ms(sample_to_device, args.samples) - sample_ms
        rows.append(("  + copy to device", transfer_ms, 100.0 * transfer_ms / step_ms))
    common.print_table(rows, ("what", "ms/episode", "% of a protonet step"))

    print()
    plain_ms = 1000.0 / timings["plain supervised step (fwd+bwd+Adam)"].rate
    bare_ms = 1000.0 / timings["plain forward+backward"].rate
    print(cost_line("protonet step cost / plain supervised step", step_ms, plain_ms))
    print(cost_line("protonet step cost / plain forward+backward", step_ms, bare_ms))
    graphed = timings.get("plain supervised step, CUDA-graphed fwd+bwd")
    if graphed is not None:
        print(cost_line("protonet step cost / plain step with CUDA-graphed fwd+bwd (info)", step_ms,
                        1000.0 / graphed.rate))
    print(f"note: ours ran {ours.graphs_note or 'eagerly'}")
    share = (sample_ms + transfer_ms) / step_ms
    print(f"episode sampling+collating  {sample_ms + transfer_ms:.3f} ms  step {step_ms:.2f} ms  "
          f"share {100 * share:.2f}% (target < {100 * SAMPLING_TARGET:g}%) "
          f"{'PASS' if share < SAMPLING_TARGET else 'FAIL'}")

    default = prefetch_default(device, DataConfig())  # the glyph data the bench trains on
    print(f"\n== the trainer's critical path to its next batch: {args.warmup} warm-up + {args.steps} timed steps "
          f"of Trainer (ProtoNet {N_WAY}-way {N_SHOT}-shot {N_QUERY}-query, meta-batch 1), wall-clock medians ==")
    costs = {ahead: trainer_batch_cost(data, device, args, ahead) for ahead in (default, not default)}
    rows = []
    for ahead, (wait_ms, trainer_step_ms) in costs.items():
        label = f"prefetch {'on' if ahead else 'off'}" + (" (the trainer's choice here)" if ahead == default else "")
        rows.append((label, wait_ms, 100.0 * wait_ms / step_ms, trainer_step_ms))
    common.print_table(rows, ("trainer", "ms/step to get+prepare the batch", "% of a protonet step",
                              "trainer ms/step"))
    wait_ms, trainer_step_ms = costs[default]
    share = wait_ms / step_ms
    print(f"trainer next-batch wait+prepare_batch  {wait_ms:.3f} ms  step {step_ms:.2f} ms  "
          f"share {100 * share:.2f}% (target < {100 * SAMPLING_TARGET:g}%) "
          f"{'PASS' if share < SAMPLING_TARGET else 'FAIL'} "
          f"(prefetch {'on' if default else 'off'}, as the trainer runs on {device.type}; "
          f"trainer step {trainer_step_ms:.2f} ms, {costs[not default][1]:.2f} ms with prefetch "
          f"{'off' if default else 'on'})")


def graphed_plain_step(batches: list, channels_last: bool):
    """The plain supervised step with its forward+backward recorded once as CUDA graphs (Adam eager),
    as ``train.cuda_graphs`` does for ours."""
    torch.manual_seed(0)
    model = nn.Sequential(Conv4(1, 28, 64), nn.Linear(64, N_WAY)).to(batches[0][0].device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    class Loss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x, y):
            return F.cross_entropy(self.model(x), y)

    graphed = torch.cuda.make_graphed_callables(Loss(), batches[0], num_warmup_iters=2)

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        graphed(x, y).backward()
        optimizer.step()
    return step


def trainer_batch_cost(data, device: torch.device, args, prefetch: bool) -> tuple[float, float]:
    """Medians over ``args.steps`` steps (after ``args.warmup``) of a short Trainer run: (ms the main
    thread spends getting and preparing each step's batch, ``Trainer.batch_seconds``; the trainer's
    ms/step, ``StepOutcome.train_seconds``, which includes it and any slowdown of the step itself)."""
    config = common.run_config(ProtoNetConfig(lr=1e-3), n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY,
                               meta_batch=1, device=device, seed=args.seed)
    config.train.steps = args.warmup + max(1, args.steps)
    config.train.val_every, config.train.val_episodes, config.train.checkpoint_every = 0, 1, 10**9
    trainer = Trainer(config, data=data, prefetch=prefetch)
    waits, steps, before = [], [], 0.0
    for outcome in trainer.steps():
        if outcome.metrics.step > args.warmup:
            waits.append(trainer.batch_seconds - before)
            steps.append(outcome.train_seconds)
        before = trainer.batch_seconds
    summary = trainer.summary
    if summary is None or summary.status != "finished" or not steps:
        print(f"note: the trainer run ended {summary.status if summary else 'early'}: "
              f"{summary.message if summary else ''}")
        return float("nan"), float("nan")
    return 1000.0 * statistics.median(waits), 1000.0 * statistics.median(steps)


def cost_line(label: str, ours_ms: float, floor_ms: float) -> str:
    ratio = ours_ms / floor_ms
    return (f"{label}  plain {floor_ms:.2f} ms  ours {ours_ms:.2f} ms  ratio {ratio:.3f}x "
            f"(target <= {STEP_TARGET:g}x) {'PASS' if ratio <= STEP_TARGET else 'FAIL'}")


def median_ms(fn, n: int) -> float:
    for _ in range(min(20, n)):
        fn()
    times = []
    for _ in range(n):
        start = common.clock()
        fn()
        times.append(common.clock() - start)
    return 1000.0 * statistics.median(times)


if __name__ == "__main__":
    main()
    sys.exit(0)
