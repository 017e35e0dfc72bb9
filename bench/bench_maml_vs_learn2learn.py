"""MAML (second- and first-order) 5-way 1-shot 15-query, meta-batch 16, one inner step:
tasks/s and peak memory of Meta Studio against learn2learn 0.2.0.

learn2learn: ``MAML(model, lr=inner_lr, first_order=...)``; per task ``clone()``,
``adapt(support loss)``, query loss ``/ meta_batch`` ``.backward()``, reading the loss and
accuracy as its maml_omniglot example does; one outer Adam step per meta-batch.
Ours: ``build_algorithm`` for maml / fomaml and ``meta_train_step(tasks)``.

Same model: learn2learn wraps the textbook Conv-4 of ``common.textbook_conv4`` (BatchNorm
with batch statistics, as ours) + a Linear head, with our initial weights copied in. Same tasks: seeded
random 28x28 episodes (``--data glyphs`` for glyph episodes), shared by both.

Maths checks (strict float32, no TF32): on one meta-batch from the same weights, the
meta-loss and every meta-gradient agree (loss within 1e-4, gradients to 1e-4 relative),
with ours on the path its ``meta_train_step`` takes (task loop, or vmap on a GPU); copies of
both trained 3 meta-steps on the same tasks agree on the meta-loss of fresh tasks.

Peak memory: each (library, variant) runs in a fresh interpreter (both import torch and
learn2learn, so they start alike) for warm-up + 2 steps; CPU: peak RSS from
``resource.getrusage``; CUDA: ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

import common
from engine.config import FOMAMLConfig, MAMLConfig

N_WAY, N_SHOT, N_QUERY = 5, 1, 15
INNER_LR, OUTER_LR = 0.4, 1e-3
SPEED_TARGET = {("cpu", "so"): 2.5}
"""Ours (its default precision) against learn2learn at meta-batch 16: issue 18's 2.5x for second order on the CPU
(1.3x before it), OTHER_SPEED_TARGET for the rest."""
OTHER_SPEED_TARGET = 1.3
GPU_MB32_TARGET = 3.0
FP32_PATH = "forced to fp32"


def main() -> None:
    parser = common.make_parser(__doc__.splitlines()[0], steps=4, warmup=1, rounds=2)
    parser.add_argument("--meta-batch", type=int, default=16)
    parser.add_argument("--data", choices=("random", "glyphs"), default="random")
    parser.add_argument("--variants", default="so,fo", help="comma list of so (second order), fo (first order)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--paths", default="auto",
                        help="comma list of our task paths to time and measure: auto (train.task_batching "
                             "auto, what a run does), loop, vmap (the whole meta-batch per vmap call), vmapN "
                             "(N tasks per vmap call, train.vmap_chunk)")
    parser.add_argument("--path", default="auto", help=argparse_hidden())
    parser.add_argument("--memory-probe", choices=("ours", "learn2learn"), help=argparse_hidden())
    parser.add_argument("--variant", default="so", help=argparse_hidden())
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args)
        return
    device = common.setup(args)
    l2l = common.peer_or_exit("learn2learn")
    variants = [(v, args.meta_batch) for v in args.variants.split(",") if v]
    if device.type == "cuda":
        variants.append(("so", 32))
    results = []
    for variant, meta_batch in variants:
        results.append(run_variant(args, device, l2l, variant, meta_batch))
    print("\n== summary ==")
    for line in results:
        print(line)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def variant_name(variant: str, meta_batch: int) -> str:
    return f"{'second' if variant == 'so' else 'first'}-order MAML, meta-batch {meta_batch}"


def path_settings(path: str) -> tuple[str, int]:
    """(train.task_batching, train.vmap_chunk) of a --paths entry."""
    if path in ("auto", "loop", "vmap"):
        return path, 0
    if path.startswith("vmap") and path[4:].isdigit():
        return "vmap", int(path[4:])
    raise SystemExit(f"--paths: unknown path {path!r} (auto, loop, vmap or vmapN)")


def build_ours_path(variant: str, meta_batch: int, device: torch.device, seed: int, path: str,
                    precision: str | None = None) -> Any:
    algorithm = (MAMLConfig if variant == "so" else FOMAMLConfig)(lr=OUTER_LR, inner_lr=INNER_LR, inner_steps=1)
    config = common.run_config(algorithm, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, meta_batch=meta_batch,
                               device=device, seed=seed)
    config.train.task_batching, config.train.vmap_chunk = path_settings(path)
    return common.build_ours(config, device, seed, precision=precision)


def build_pair(variant: str, meta_batch: int, device: torch.device, seed: int, l2l: Any,
               path: str = "auto") -> tuple[Any, Any, Any]:
    """(ours, learn2learn MAML wrapper, its Adam) starting from identical weights."""
    ours = build_ours_path(variant, meta_batch, device, seed, path)
    peer_model = torch.nn.Sequential(common.textbook_conv4(batch_statistics=True),
                                     torch.nn.Linear(ours.head.in_features, N_WAY))
    common.copy_in_order(ours.model, peer_model)
    peer = l2l.algorithms.MAML(peer_model.to(device), lr=INNER_LR, first_order=(variant == "fo"))
    peer_optimizer = torch.optim.Adam(peer.parameters(), lr=OUTER_LR)
    return ours, peer, peer_optimizer


def peer_meta_step(peer: Any, optimizer: torch.optim.Optimizer, tasks: list) -> float:
    """learn2learn's documented MAML step; returns the mean query loss."""
    optimizer.zero_grad(set_to_none=True)
    total_loss, total_accuracy = 0.0, 0.0
    for task in tasks:
        learner = peer.clone()
        learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
        logits = learner(task.query_x)
        loss = F.cross_entropy(logits, task.query_y)
        (loss / len(tasks)).backward()
        total_loss += loss.item()
        total_accuracy += (logits.argmax(1) == task.query_y).float().mean().item()
    optimizer.step()
    return total_loss / len(tasks)


def make_tasks(args: Any, n: int, seed: int, device: torch.device) -> list:
    if args.data == "glyphs":
        data = common.glyph_data(args.seed)
        return common.glyph_tasks(data, "train", n, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, seed=seed,
                                  device=device)
    return common.random_tasks(n, n_way=N_WAY, n_shot=N_SHOT, n_query=N_QUERY, seed=seed, device=device)


def run_variant(args: Any, device: torch.device, l2l: Any, variant: str, meta_batch: int) -> str:
    name = variant_name(variant, meta_batch)
    print(f"\n=== {name} ===")
    paths = [p for p in args.paths.split(",") if p]
    ours, peer, peer_optimizer = build_pair(variant, meta_batch, device, args.seed, l2l, paths[0])
    others = {path: build_ours_path(variant, meta_batch, device, args.seed, path) for path in paths[1:]}
    if common.ours_precision(device) != "fp32":  # ours in another precision by default: also forced to fp32
        others[FP32_PATH] = build_ours_path(variant, meta_batch, device, args.seed, paths[0], precision="fp32")
    n_steps = args.warmup + args.steps
    pool = make_tasks(args, n_steps * meta_batch, args.seed, device)
    batches = [pool[i * meta_batch:(i + 1) * meta_batch] for i in range(n_steps)]

    with common.strict_fp32():
        strict = common.nchw_copy(ours)
        check_meta_gradient(strict, peer, batches[0])
        check_training(strict, peer, peer_optimizer, batches[:3], make_tasks(args, 8, args.seed + 99, device))

    contenders = {"learn2learn": lambda i: peer_meta_step(peer, peer_optimizer, batches[i % n_steps]),
                  contender_name(paths[0]): lambda i: ours.meta_train_step(batches[i % n_steps])}
    for path, other in others.items():
        contenders[contender_name(path)] = lambda i, other=other: other.meta_train_step(batches[i % n_steps])
    timings = common.time_interleaved(contenders, steps=args.steps, warmup=args.warmup, rounds=args.rounds,
                                      items_per_step=meta_batch, device=device)
    common.print_table([(t.name, t.rate, 1000.0 / t.rate, t.spread) for t in timings.values()],
                       ("contender", "tasks/s", "ms/task", "round spread"))
    print(f"ours ({paths[0]}) ran {describe_path(ours, batches[0])}")

    target = GPU_MB32_TARGET if meta_batch == 32 else SPEED_TARGET.get((device.type, variant), OTHER_SPEED_TARGET)
    lines = []
    for path in paths + ([FP32_PATH] if FP32_PATH in others else []):
        label = "" if path == "auto" else f" [{path}]"
        lines.append(common.ratio_line(f"maml {variant} mb{meta_batch} tasks/s{label}", "learn2learn",
                                       timings["learn2learn"].rate, timings[contender_name(path)].rate,
                                       None if path == FP32_PATH else target))
    if FP32_PATH not in others:
        lines.append("(ours runs in fp32 here, so the ratio with ours forced to fp32 is the line above)")
    if not args.no_memory:
        lines.extend(memory_lines(args, device, variant, meta_batch, paths))
    for line in lines:
        print(line)
    return "\n".join(lines)


def contender_name(path: str) -> str:
    return "ours" if path == "auto" else f"ours {path}"


def describe_path(ours: Any, tasks: list) -> str:
    chunk = ours.task_chunk(tasks)
    return "task by task (loop)" if chunk == 0 else f"vmap, {chunk} tasks per call"


def ours_meta_gradient(ours: Any, tasks: list) -> tuple[float, list[torch.Tensor]]:
    """Our meta-loss and meta-gradients on the path ``meta_train_step`` would take (loop or vmap)."""
    chunk = ours.task_chunk(tasks)
    result = ours.meta_gradient(tasks, batched=chunk > 0, chunk_size=chunk)
    return result.loss, [result.grads[n] for n, _ in ours.model.named_parameters()]


def peer_meta_gradient(peer: Any, tasks: list) -> tuple[float, list[torch.Tensor]]:
    twin = copy.deepcopy(peer)
    for parameter in twin.parameters():
        parameter.grad = None
    loss = peer_meta_step(twin, torch.optim.SGD(twin.parameters(), lr=0.0), tasks)
    return loss, [p.grad for p in twin.module.parameters()]


def check_meta_gradient(ours: Any, peer: Any, tasks: list) -> None:
    """Meta-loss and meta-gradients of both libraries on one meta-batch, same weights (no step taken)."""
    ours_loss, ours_grads = ours_meta_gradient(ours, tasks)
    peer_loss, peer_grads = peer_meta_gradient(peer, tasks)
    path = "vmap" if ours.uses_batched_tasks(tasks) else "loop"
    print(common.check_line(f"meta-loss, |ours ({path}) - learn2learn|", abs(ours_loss - peer_loss), 1e-4))
    print(common.check_line("meta-gradients, ||ours - l2l|| / ||l2l||", common.max_rel_diff(ours_grads, peer_grads),
                            1e-4))


def check_training(ours: Any, peer: Any, peer_optimizer: Any, batches: list, fresh: list) -> None:
    """Copies of both, trained the same meta-steps on the same tasks, agree on fresh tasks' meta-loss."""
    ours, peer = copy.deepcopy(ours), copy.deepcopy(peer)
    optimizer = torch.optim.Adam(peer.parameters(), lr=OUTER_LR)
    for tasks in batches:
        ours.meta_train_step(tasks)
        peer_meta_step(peer, optimizer, tasks)
    ours_loss, peer_loss = ours_meta_gradient(ours, fresh)[0], peer_meta_gradient(peer, fresh)[0]
    gap = abs(ours_loss - peer_loss) / max(abs(peer_loss), 1e-12)
    print(f"after {len(batches)} meta-steps each: meta-loss on fresh tasks  learn2learn {peer_loss:.6f}  "
          f"ours {ours_loss:.6f}")
    print(common.check_line("relative gap", gap, 1e-4))


# -- peak memory -----------------------------------------------------------------------------------
def memory_lines(args: Any, device: torch.device, variant: str, meta_batch: int, paths: list[str]) -> list[str]:
    script = Path(__file__).resolve()
    peaks = {}
    for who, path in [("learn2learn", "auto")] + [("ours", path) for path in paths]:
        probe = ["--memory-probe", who, "--variant", variant, "--meta-batch", str(meta_batch),
                 "--device", str(device), "--threads", str(args.threads), "--seed", str(args.seed),
                 "--data", args.data, "--warmup", str(args.warmup), "--path", path,
                 "--channels-last", args.channels_last]
        peaks[who if who == "learn2learn" else path] = common.measure_in_subprocess(script, probe)
    key = "cuda_peak_mb" if device.type == "cuda" else "max_rss_mb"
    peer_mb = peaks["learn2learn"][key]
    lines = []
    for path in paths:
        ours_mb = peaks[path][key]
        extra = ""
        if device.type == "cpu":
            extra = (f"  [above pre-training RSS: learn2learn {peaks['learn2learn']['above_start_mb']:.0f}, "
                     f"ours {peaks[path]['above_start_mb']:.0f} MiB]")
        verdict = "PASS" if ours_mb <= peer_mb * 1.02 else "FAIL"
        label = "" if path == "auto" else f" [{path}]"
        lines.append(f"maml {variant} mb{meta_batch} peak memory MiB ({key}){label}  learn2learn {peer_mb:.0f}  "
                     f"ours {ours_mb:.0f}  ratio {ours_mb / peer_mb:.2f}x (target <= 1x, 2% slack) {verdict}{extra}")
    return lines


def memory_probe(args: Any) -> None:
    """Child process: one library, one variant, warm-up + 2 steps; prints a MEMORY line."""
    torch.set_num_threads(max(1, args.threads))
    device = common.resolve_device(args.device)
    l2l = common.quiet_import("learn2learn")  # imported by both children, so both start alike
    common.use_channels_last(args.channels_last)
    ours, peer, peer_optimizer = build_pair(args.variant, args.meta_batch, device, args.seed, l2l, args.path)
    tasks = make_tasks(args, args.meta_batch, args.seed, device)
    step: Callable[[], Any]
    if args.memory_probe == "ours":
        del peer, peer_optimizer
        step = lambda: ours.meta_train_step(tasks)  # noqa: E731
    else:
        del ours
        step = lambda: peer_meta_step(peer, peer_optimizer, tasks)  # noqa: E731
    start_rss = common.current_rss_mb()
    with common.cuda_peak(device) as cuda:
        for _ in range(max(1, args.warmup) + 2):
            step()
    out = {"max_rss_mb": common.max_rss_mb(), "above_start_mb": common.max_rss_mb() - start_rss}
    if cuda:
        out["cuda_peak_mb"] = cuda["peak_mb"]
    common.emit_memory(**out)


if __name__ == "__main__":
    main()
    sys.exit(0)
