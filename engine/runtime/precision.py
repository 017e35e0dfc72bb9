"""Which arithmetic a run uses: ``train.precision`` "auto" resolved for a device and an algorithm.

"auto" means bf16 autocast where the hardware makes bf16 faster, fp32 everywhere else. On CUDA: where
``torch.cuda.is_bf16_supported()`` (Ampere and later). On the CPU it is measured, not assumed, because CPUs
with the same instructions differ: with AMX-BF16, bf16 (the issue's probe of a Conv-4 step: 1.74x fp32); with
AVX512-BF16 alone, bf16 only when a probe training step (two convolution blocks, channels-last, fwd + bwd, in
the calling thread count) runs at least ``BF16_MIN_SPEEDUP`` times faster in bf16 than in fp32. That is what
``bench/bench_precision.py`` found on two such CPUs: an Intel Xeon without AMX trained at 0.85-0.90x in bf16
(oneDNN converts around every convolution), an AMD EPYC at 1.31-1.59x for every algorithm. Without native bf16
instructions: fp32. Weights, optimiser state and BatchNorm statistics stay float32 in every precision:
autocast casts only the inputs of matrix products and convolutions.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
from torch import nn

PRECISION_SETTINGS = ("auto", "fp32", "bf16", "fp16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""The /proc/cpuinfo flags of the CPU instructions that compute bf16 natively."""
BF16_MIN_SPEEDUP = 1.15
"""On a CPU with AVX512-BF16 but no AMX, "auto" picks bf16 when the probe step is at least this much faster in it
(a margin: measured ratios are 0.85-0.90x or 1.3-1.6x, and a loaded machine adds noise to the probe)."""


def cpu_bf16_instructions(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The native bf16 instruction sets of this CPU ("amx_bf16", "avx512_bf16"), from PyTorch's own
    probes where it has them, else from ``cpuinfo``; empty when there are none (or nothing can tell)."""
    found = []
    probes = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    for flag, probe in probes.items():
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                found.append(flag)
        except RuntimeError:
            pass
    if found or not cpuinfo.is_file():
        return tuple(found)
    try:
        flags = set(cpuinfo.read_text(errors="replace").split())
    except OSError:
        return ()
    return tuple(flag for flag in CPU_BF16_FLAGS if flag in flags)


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(whether bf16 is faster than fp32 on ``device``, the reason in words for the run log)."""
    if device.type == "cpu":
        found = cpu_bf16_instructions()
        if "amx_bf16" in found:
            return True, "the CPU has AMX-BF16"
        if found:
            speedup = cpu_bf16_speedup(torch.get_num_threads())
            faster = speedup >= BF16_MIN_SPEEDUP
            return faster, (f"the CPU has AVX512-BF16 but no AMX-BF16, and a probe training step ran {speedup:.2f}x "
                            f"as fast in bf16 as in fp32 ({'at least' if faster else 'under'} {BF16_MIN_SPEEDUP:g}x)")
        return False, "the CPU has no native bf16 instructions (AMX-BF16 or AVX512-BF16)"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return False, f"{torch.cuda.get_device_name(device)} has no native bf16"
    return False, f"auto uses bf16 only on CPUs and CUDA GPUs (device {device.type})"


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup(threads: int, repeats: int = 5) -> float:
    """fp32 time / bf16-autocast time of a probe training step on this CPU with ``threads`` PyTorch threads (the
    caller's count; measured once per process and count, about half a second): two 3x3 convolution blocks
    (conv, BatchNorm, ReLU, max-pool between) on [32, 16, 28, 28] channels-last, forward and backward; the best
    of ``repeats`` interleaved runs of each, after two warm-up runs."""
    best = {False: float("inf"), True: float("inf")}
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:  # on the CPU, with gradients, also where the caller builds on "meta" or infers
        with torch.inference_mode(False), torch.enable_grad(), torch.device("cpu"):
            net = nn.Sequential(nn.Conv2d(16, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
            x = torch.randn(32, 16, 28, 28, generator=torch.Generator().manual_seed(0))
            _probe_runs(net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last),
                        repeats, best)
    finally:
        torch.set_num_threads(previous)
    return best[False] / best[True]


def _probe_runs(net: nn.Module, x: torch.Tensor, repeats: int, best: dict[bool, float]) -> None:
    """Two warm-up runs, then ``repeats`` timed runs of each precision in turn; ``best`` keeps the fastest."""
    for run in range(repeats + 2):
        for bf16 in (False, True):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = net(x)
            y.float().square().mean().backward()
            if run >= 2:
                best[bf16] = min(best[bf16], time.perf_counter() - started)


def resolve_precision(setting: str, device: torch.device) -> tuple[str, str]:
    """(precision, why) for ``train.precision`` = ``setting`` on ``device``; an explicit fp32 / bf16 / fp16
    is kept ("set in the config")."""
    if setting != "auto":
        return setting, "set in the config"
    faster, reason = native_bf16(device)
    return ("bf16" if faster else "fp32"), f"auto: {reason}"
