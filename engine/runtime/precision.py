"""Which arithmetic a run uses: ``train.precision`` "auto" resolved for a device and an algorithm.

"auto" means bf16 autocast where the hardware makes bf16 faster, fp32 everywhere else: on the CPU
when it has AMX-BF16 (the issue's probe of a Conv-4 step: 1.74x fp32), on CUDA where
``torch.cuda.is_bf16_supported()`` (Ampere and later). A CPU with AVX512-BF16 but no AMX stays fp32:
``bench/bench_precision.py`` measured bf16 training steps at 0.85-0.90x fp32 there (Conv-4, 28 px, 1
thread; ProtoNet, MAML, Baseline), since oneDNN converts to and from bf16 around every convolution. Weights, optimiser state and BatchNorm statistics stay float32 in every precision:
autocast casts only the inputs of matrix products and convolutions.
"""

from __future__ import annotations

from pathlib import Path

import torch

PRECISION_SETTINGS = ("auto", "fp32", "bf16", "fp16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""The /proc/cpuinfo flags of the CPU instructions that compute bf16 natively."""


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
            return False, "the CPU has AVX512-BF16 but no AMX-BF16 (bf16 measured slower than fp32 there)"
        return False, "the CPU has no native bf16 instructions (AMX-BF16 or AVX512-BF16)"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return False, f"{torch.cuda.get_device_name(device)} has no native bf16"
    return False, f"auto uses bf16 only on CPUs and CUDA GPUs (device {device.type})"


def resolve_precision(setting: str, device: torch.device) -> tuple[str, str]:
    """(precision, why) for ``train.precision`` = ``setting`` on ``device``; an explicit fp32 / bf16 / fp16
    is kept ("set in the config")."""
    if setting != "auto":
        return setting, "set in the config"
    faster, reason = native_bf16(device)
    return ("bf16" if faster else "fp32"), f"auto: {reason}"
