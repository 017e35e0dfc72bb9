"""``train.precision = auto``: bf16 only where the CPU (AMX-BF16) or GPU makes it faster, recorded per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.config import TrainConfig
from engine.runtime import precision as precision_module
from engine.runtime.precision import cpu_bf16_instructions, resolve_precision
from engine.training.callbacks import Callback
from engine.training.trainer import Trainer

from .helpers import tiny_config

CPU = torch.device("cpu")


def _cpu_with(monkeypatch: pytest.MonkeyPatch, *flags: str, probe_speedup: float = 0.87) -> None:
    """A CPU with these bf16 flags, whose probe step runs ``probe_speedup`` times as fast in bf16 (default: the
    Intel Xeon without AMX of bench/README.md)."""
    monkeypatch.setattr(precision_module, "cpu_bf16_instructions", lambda *args: tuple(flags))
    monkeypatch.setattr(precision_module, "cpu_bf16_speedup", lambda *args: probe_speedup)


def test_auto_is_the_default_and_explicit_settings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrainConfig().precision == "auto"
    _cpu_with(monkeypatch, "amx_bf16", "avx512_bf16")
    for setting in ("fp32", "bf16"):
        assert resolve_precision(setting, CPU) == (setting, "set in the config")


@pytest.mark.parametrize(("flags", "speedup", "expected"), [
    (("amx_bf16", "avx512_bf16"), 0.5, "bf16"),   # AMX: bf16 is faster (the probe: 1.74x), no probe run
    (("avx512_bf16",), 0.87, "fp32"),             # AVX512-BF16 alone, measured slower (an Intel Xeon): fp32
    (("avx512_bf16",), 1.6, "bf16"),              # AVX512-BF16 alone, measured faster (an AMD EPYC): bf16
    (("avx512_bf16",), 1.1, "fp32"),              # within the margin: fp32
    ((), 3.0, "fp32"),                            # no native bf16: fp32 whatever a probe would say
])
def test_auto_picks_bf16_only_on_cpus_with_bf16_that_measure_it_faster(monkeypatch: pytest.MonkeyPatch, flags: tuple,
                                                                       speedup: float, expected: str) -> None:
    _cpu_with(monkeypatch, *flags, probe_speedup=speedup)
    chosen, reason = resolve_precision("auto", CPU)
    assert chosen == expected
    assert reason.startswith("auto: ") and ("AMX-BF16" in reason)
    if flags == ("avx512_bf16",):
        assert f"{speedup:.2f}x as fast in bf16" in reason  # the log says what was measured


def test_the_probe_measures_a_training_step_in_both_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: calls.append(kwargs["enabled"]) or
                        real_autocast(*args, **kwargs))
    precision_module.cpu_bf16_speedup.cache_clear()
    with torch.device("meta"), torch.inference_mode():  # the caller's contexts do not leak into the probe
        speedup = precision_module.cpu_bf16_speedup(1, repeats=1)
    assert 0.05 < speedup < 20 and calls.count(True) == calls.count(False) == 3
    assert torch.get_num_threads() >= 1
    precision_module.cpu_bf16_speedup.cache_clear()


def test_cpu_flags_are_read_from_cpuinfo_when_torch_cannot_tell(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx512f amx_bf16 amx_tile avx512_bf16\n")
    assert cpu_bf16_instructions(cpuinfo) == ("amx_bf16", "avx512_bf16")
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx2\n")
    assert cpu_bf16_instructions(cpuinfo) == ()


class _Log(Callback):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def on_log(self, message: str, level: str = "info") -> None:
        self.lines.append(message)


@pytest.mark.parametrize(("flags", "expected"), [(("amx_bf16",), "bf16"), ((), "fp32")])
def test_a_run_records_and_logs_its_precision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_flat: Path,
                                              flags: tuple, expected: str) -> None:
    _cpu_with(monkeypatch, *flags)
    config = tiny_config(tiny_flat, steps=2)
    log = _Log()
    trainer = Trainer(config, run_dir=tmp_path / "run", callbacks=[log])
    summary = trainer.run()
    assert summary.status == "finished", summary.message
    assert trainer.algorithm.precision == expected
    assert json.loads((tmp_path / "run" / "run.json").read_text())["precision"] == expected
    assert any(f"{expected}: auto: " in line for line in log.lines), log.lines


def test_the_processes_of_a_distributed_run_agree_on_bf16(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           tiny_flat: Path) -> None:
    from engine.algorithms.registry import build_algorithm
    from engine.runtime import collective

    config = tiny_config(tiny_flat, steps=2)
    trainer = Trainer(config, run_dir=tmp_path / "run")
    trainer.algorithm = build_algorithm(config, n_train_classes=8)
    trainer._device, trainer._world = CPU, object()  # a rank of a distributed run ...
    trainer._precision, trainer._precision_reason = "fp32", "auto: measured 1.10x here"
    monkeypatch.setattr(collective, "any_rank", lambda flag, device: True)  # ... where another rank measured bf16
    trainer._agree_on_precision(config)
    assert trainer._precision == trainer.algorithm.precision == "bf16"
    assert "another process of this distributed run picked it" in trainer._precision_reason
    config.train.precision = "fp32"  # an explicit setting is never overruled
    trainer._precision = trainer.algorithm.precision = "fp32"
    trainer._agree_on_precision(config)
    assert trainer._precision == "fp32"


def test_a_resumed_auto_run_keeps_the_precision_it_chose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         tiny_flat: Path) -> None:
    _cpu_with(monkeypatch, "avx512_bf16", probe_speedup=1.6)       # the first process measured bf16 faster
    config = tiny_config(tiny_flat, steps=4)
    config.train.checkpoint_every = 2
    first = Trainer(config, run_dir=tmp_path / "run")
    assert first.run().status == "finished" and first.algorithm.precision == "bf16"
    _cpu_with(monkeypatch, "avx512_bf16", probe_speedup=0.9)       # a later process would measure otherwise
    log = _Log()
    resumed = Trainer.resume(tmp_path / "run", extra_steps=2, callbacks=[log])
    assert resumed.run().status == "finished"
    assert resumed.algorithm.precision == "bf16"
    assert any("bf16: auto: as the run chose before it was resumed" in line for line in log.lines), log.lines
