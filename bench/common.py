"""Shared helpers of the speed benchmarks: arguments, machine header, fair timing, ratio lines.

Timing is *interleaved*: after the warm-up, each contender runs a block of steps in
turn, round after round, and its rate is the median over rounds of (steps / seconds).
A load spike on a shared machine then hits both contenders instead of one, and the
median drops the rounds it spoiled. CUDA work is synchronised at the end of a block.

These scripts report; they never gate: every script exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/x.py` from the repo root
    sys.path.insert(0, str(REPO_ROOT))

from engine.config import (  # noqa: E402
    AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig, resolve_channels_last,
)
from engine.data.types import Task  # noqa: E402
from engine.runtime.precision import resolve_precision  # noqa: E402
from engine.training.host_memory import keep_freed_host_memory  # noqa: E402


# -- arguments and setup -------------------------------------------------------------------
def make_parser(description: str, *, steps: int, warmup: int, rounds: int = 5) -> argparse.ArgumentParser:
    """The flags every benchmark shares: --device, --threads, --steps, --warmup, --rounds, --seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda falls back to cpu when absent)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--steps", type=int, default=steps, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed warm-up steps per contender")
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved timing rounds (median taken)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                        help="auto: this process's CPU time on --device cpu (robust when other programs share "
                             "the cores), wall-clock time on cuda")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                        help="our train.channels_last (as the trainer resolves it; default auto, the engine's "
                             "default); the peers keep PyTorch's default layout")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="our train.precision (default auto, the engine's default: bf16 where the device "
                             "computes it natively and faster, else fp32); the peers stay in their default fp32. "
                             "Where it is not fp32, the peer benchmarks also time ours forced to fp32")
    parser.add_argument("--cuda-graphs", choices=("on", "off"), default="on",
                        help="our train.cuda_graphs on CUDA (default on, the engine's default): ProtoNet replays "
                             "its forward and backward as CUDA graphs; the peers run eagerly, as their users do")
    return parser


def setup(args: argparse.Namespace) -> torch.device:
    """Apply threads and seed, resolve the device, print the machine header; returns the device."""
    torch.set_num_threads(max(1, int(args.threads)))
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    args.device = str(device)
    use_cpu_clock(args.clock == "cpu" or (args.clock == "auto" and device.type == "cpu"))
    use_channels_last(getattr(args, "channels_last", "auto"))
    use_precision(getattr(args, "precision", "auto"))
    use_cuda_graphs(getattr(args, "cuda_graphs", "on") == "on")
    # as the trainer does; it is process-wide, so the peers in this process get it too
    tuned = "freed host memory kept (glibc)" if keep_freed_host_memory() else "malloc untouched"
    print(machine_header(device) + f"; {tuned}; ours: train.channels_last {_channels_last} "
          f"(= {'on' if resolve_channels_last(_channels_last, device, 28) else 'off'} at 28 px), train.precision "
          f"{_precision} (= {ours_precision(device)}: {resolve_precision(_precision, device)[1]})"
          + (f", train.cuda_graphs {'on' if _cuda_graphs else 'off'}" if device.type == "cuda" else ""))
    return device


_channels_last = "auto"
_precision = "auto"
_cuda_graphs = True


def use_channels_last(setting: str) -> None:
    """The train.channels_last that :func:`run_config` gives our algorithms (auto | on | off)."""
    global _channels_last
    _channels_last = setting


def use_precision(setting: str) -> None:
    """The train.precision that :func:`run_config` gives our algorithms (auto | fp32 | bf16)."""
    global _precision
    _precision = setting


def ours_precision(device: torch.device) -> str:
    """The precision our algorithms run in on ``device`` ("fp32" or "bf16"), ``train.precision`` resolved as the
    trainer resolves it."""
    return resolve_precision(_precision, device)[0]


def use_cuda_graphs(on: bool) -> None:
    """The train.cuda_graphs that :func:`run_config` gives our algorithms (it acts on CUDA only)."""
    global _cuda_graphs
    _cuda_graphs = on


_clock: Callable[[], float] = time.perf_counter
_clock_name = "wall-clock"


def use_cpu_clock(enabled: bool) -> None:
    """Time with this process's CPU time (all its threads) instead of the wall clock.

    On a CPU shared with other programs, wall-clock rates swing with their load; the
    process's own CPU time does not. With --threads N > 1 it sums the N threads' time, so
    rates then mean work, not latency (use --clock wall to see latency).
    """
    global _clock, _clock_name
    _clock, _clock_name = (time.process_time, "process CPU time") if enabled else (time.perf_counter, "wall-clock")


def clock() -> float:
    return _clock()


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        print(f"note: --device {name} asked for but torch.cuda.is_available() is False; using cpu")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_header(device: torch.device) -> str:
    lines = [f"machine: {os.cpu_count()} cpus, {cpu_model()}; python {platform.python_version()}; "
             f"torch {torch.__version__}; threads {torch.get_num_threads()}; device {device}; "
             f"timed with {_clock_name}"]
    if device.type == "cuda":
        lines.append(f"gpu: {torch.cuda.get_device_name(device)}")
    return "\n".join(lines)


def quiet_import(name: str) -> Any:
    """Import a peer library with its deprecation chatter (gym's notice, warnings) silenced."""
    import importlib

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def peer_or_exit(name: str) -> Any:
    """Import a peer; when it is missing, say how to install it and exit 0 (benchmarks never gate)."""
    try:
        return quiet_import(name)
    except ImportError as error:
        print(f"SKIP: peer library {name!r} is not installed ({error}); run bench/install_peers.sh")
        sys.exit(0)


# -- timing -------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Rates of one contender: items (episodes, tasks) per second, one per round."""

    name: str
    rates: list[float]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> float:
        """(max - min) / median of the round rates: how noisy the machine was."""
        return (max(self.rates) - min(self.rates)) / self.rate if self.rate else float("nan")


def time_interleaved(contenders: dict[str, Callable[[int], None]], *, steps: int, warmup: int,
                     rounds: int, items_per_step: float | dict[str, float],
                     device: torch.device) -> dict[str, Timing]:
    """Run ``warmup`` untimed steps of each contender, then ``rounds`` interleaved timed blocks.

    contenders: name -> ``step(i)`` running optimisation step ``i`` (the index selects the batch).
    items_per_step: episodes/tasks/images per step, one number or one per contender.
    Returns name -> Timing with per-round items/s.
    """
    items = items_per_step if isinstance(items_per_step, dict) else {n: items_per_step for n in contenders}
    for step in contenders.values():
        for i in range(warmup):
            step(i)
        synchronize(device)
    per_round = max(1, steps // max(1, rounds))
    timings = {name: Timing(name, []) for name in contenders}
    index = warmup
    for _ in range(max(1, rounds)):
        for name, step in contenders.items():
            synchronize(device)
            start = clock()
            for i in range(index, index + per_round):
                step(i)
            synchronize(device)
            timings[name].rates.append(per_round * items[name] / (clock() - start))
        index += per_round
    return timings


def ratio_line(label: str, peer_name: str, peer_rate: float, ours_rate: float, target: float | None) -> str:
    """``label  peer 1.0  ours 1.3  ratio 1.30x (target >= 1.2x) PASS``; ratio = ours / peer speed."""
    ratio = ours_rate / peer_rate if peer_rate else float("nan")
    verdict = ""
    if target is not None:
        verdict = f" (target >= {target:g}x) {'PASS' if ratio >= target else 'FAIL'}"
    return f"{label}  {peer_name} {rate_text(peer_rate)}  ours {rate_text(ours_rate)}  ratio {ratio:.2f}x{verdict}"


def rate_text(rate: float) -> str:
    """One decimal from 100 up, else three significant digits (0.567, 3.25, 45.6)."""
    return f"{rate:.1f}" if rate >= 100 else f"{rate:.3g}"


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 and value else f"{value:.2f}"
    return str(value)


# -- building our algorithms and tasks ----------------------------------------------------------
def run_config(algorithm: AlgorithmConfig, *, n_way: int, n_shot: int, n_query: int, meta_batch: int,
               device: torch.device, seed: int) -> RunConfig:
    return RunConfig(data=DataConfig(), task=TaskConfig(n_way=n_way, n_shot=n_shot, n_query=n_query,
                                                        meta_batch_size=meta_batch),
                     model=ModelConfig(backbone="conv4"), algorithm=algorithm,
                     train=TrainConfig(seed=seed, device=str(device), channels_last=_channels_last,
                                       precision=_precision, cuda_graphs=_cuda_graphs))


def build_ours(config: RunConfig, device: torch.device, seed: int, n_train_classes: int = 64,
               precision: str | None = None) -> Any:
    """Our algorithm through the public builder, seeded, moved to ``device``, with the runtime settings
    (precision, channels-last, task batching) applied as the trainer applies them; ``precision`` instead of the
    config's ``train.precision`` when given (ours forced to fp32 beside the default)."""
    from engine.algorithms.registry import build_algorithm

    torch.manual_seed(seed)
    algorithm = build_algorithm(config, n_train_classes=n_train_classes).to(device)
    train = config.train
    precision = resolve_precision(precision or train.precision, device)[0]  # "auto" as the trainer resolves it
    algorithm.configure_runtime(precision, resolve_channels_last(train.channels_last, device, config.data.image_size),
                                train.task_batching, train.vmap_chunk, train.cuda_graphs)
    return algorithm


def random_tasks(n: int, *, n_way: int, n_shot: int, n_query: int, seed: int, device: torch.device,
                 image_size: int = 28, channels: int = 1) -> list[Task]:
    """``n`` seeded random episodes (normal images, class-major labels), already on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    support_y = torch.arange(n_way).repeat_interleave(n_shot)
    query_y = torch.arange(n_way).repeat_interleave(n_query)
    tasks = []
    for _ in range(n):
        support_x = torch.randn(n_way * n_shot, channels, image_size, image_size, generator=generator)
        query_x = torch.randn(n_way * n_query, channels, image_size, image_size, generator=generator)
        tasks.append(Task(support_x, support_y.clone(), query_x, query_y.clone()).to(device))
    return tasks


def glyph_data(seed: int = 0) -> Any:
    """The built-in glyph data set through engine.data (generated once, then cached on disk)."""
    from engine.data.dataset import load_data

    return load_data(DataConfig(split_seed=seed))


def glyph_tasks(data: Any, part: str, n: int, *, n_way: int, n_shot: int, n_query: int, seed: int,
                device: torch.device) -> list[Task]:
    """``n`` seeded glyph episodes of ``part`` ("train" | "val" | "test") on ``device``."""
    sampler = data.episodes(part, n_way, n_shot, n_query, seed=seed)
    return [task.to(device) for task in sampler.sample_batch(n)]


# -- comparing maths -------------------------------------------------------------------------
def max_abs_diff(a: Tensor, b: Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max().item())


def max_rel_diff(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    """||a - b|| / ||b|| over all tensors concatenated (a gradient that is ~0 by construction,
    like a conv bias before BatchNorm, would make a per-tensor ratio meaningless)."""
    x = torch.cat([t.detach().double().reshape(-1) for t in a])
    y = torch.cat([t.detach().double().reshape(-1) for t in b])
    return float((x - y).norm() / y.norm().clamp_min(1e-30))


def check_line(label: str, value: float, tolerance: float) -> str:
    return f"check {label}: {value:.3g} (tolerance {tolerance:g}) {'OK' if value <= tolerance else 'MISMATCH'}"


@contextlib.contextmanager
def strict_fp32(deterministic: bool = False) -> Iterator[None]:
    """Full float32 maths inside the block: no TF32 in cuDNN convolutions or CUDA matmuls.

    PyTorch lets cuDNN use TF32 for float32 convolutions by default on Ampere and later
    GPUs (about 1e-3 relative error, different for different conv algorithms), so the
    equality checks run in strict float32; the timed runs keep PyTorch's defaults.
    ``deterministic``: also pin cuDNN to deterministic algorithms, so both sides' convolutions
    round alike. Reptile needs it: its inner Adam with beta1 = 0 turns rounding noise in
    near-zero gradients into full-size steps (on an H100, outputs 0.02-0.2 apart without it,
    identical with it). MAML does not: there it measured closer without (meta-gradients 2.8e-5
    against 1.3e-4 relative), the deterministic algorithms being less accurate.
    Likewise our algorithms built inside the block (and copies made with :func:`nchw_copy`)
    run in NCHW: PyTorch's channels-last BatchNorm on the CPU sums in float32 (outputs
    ~1e-4 and gradients ~1e-2 relative off a float64 reference on a glyph episode, against
    5e-7 and 3e-5 in NCHW), which would hide a real difference in the maths. The timed runs
    use our default layout; the held-out accuracy checks judge what that layout trains.
    """
    cudnn = torch.backends.cudnn
    saved = (cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark,
             _channels_last)
    cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    if deterministic:
        cudnn.deterministic, cudnn.benchmark = True, False
    use_channels_last("off")
    try:
        yield
    finally:
        cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark = saved[:4]
        use_channels_last(saved[4])


def nchw_copy(algorithm: Any) -> Any:
    """A deep copy of one of our algorithms with its weights back in NCHW and its forward passes in float32 (see
    :func:`strict_fp32`): the maths checks stay fp32 where ours trains in bf16 (a speed mode)."""
    twin = copy.deepcopy(algorithm)
    for module in twin.modules().values():
        module.to(memory_format=torch.contiguous_format)
    twin.channels_last = False
    twin.precision = "fp32"
    return twin


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Same weights (and buffers) in two modules of identical architecture."""
    target.load_state_dict(source.state_dict())


def textbook_conv4(in_channels: int = 1, hidden_channels: int = 64, *, batch_statistics: bool = False) -> nn.Module:
    """The peer's Conv-4, written as the papers describe it: four [3x3 conv (padding 1), BatchNorm,
    ReLU, 2x2 max-pool] blocks, then flatten: [B, C, 28, 28] -> [B, 64].

    It is deliberately NOT our engine.models.Conv4 class, so that any faster-but-equivalent
    implementation inside ours counts for ours only; the maths checks prove equivalence.
    batch_statistics: BatchNorm without running averages (as our MAML/Reptile use it).
    """
    layers: list[nn.Module] = []
    for block in range(4):
        layers += [nn.Conv2d(in_channels if block == 0 else hidden_channels, hidden_channels, 3, padding=1),
                   nn.BatchNorm2d(hidden_channels, track_running_stats=not batch_statistics),
                   nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten())


def copy_in_order(source: nn.Module, target: nn.Module) -> nn.Module:
    """Copy parameters, then buffers, position by position (names may differ, shapes may not).

    The target keeps its own memory layout (a plain contiguous module stays contiguous).
    Returns ``target``.
    """
    for kind in ("parameters", "buffers"):
        src, dst = list(getattr(source, kind)()), list(getattr(target, kind)())
        if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst)):
            raise ValueError(f"{kind} of {type(source).__name__} and {type(target).__name__} do not line up")
        with torch.no_grad():
            for a, b in zip(src, dst):
                b.copy_(a)
    return target


# -- peak memory in a fresh process ----------------------------------------------------------------
def current_rss_mb() -> float:
    """Resident set size now (Linux /proc), MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def max_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_subprocess(script: Path, extra_args: Sequence[str]) -> dict[str, Any]:
    """Run ``script`` with ``extra_args`` in a fresh interpreter and parse its last ``MEMORY {...}`` line."""
    cmd = [sys.executable, str(script), *extra_args]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO_ROOT))
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("MEMORY "):
            return json.loads(line[len("MEMORY "):])
    raise RuntimeError(f"memory probe failed: {' '.join(cmd)}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def emit_memory(**values: Any) -> None:
    print("MEMORY " + json.dumps(values), flush=True)


@contextlib.contextmanager
def cuda_peak(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak CUDA memory allocated inside the block, MiB (empty dict on CPU)."""
    out: dict[str, float] = {}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    yield out
    if device.type == "cuda":
        synchronize(device)
        out["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["above_start_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
