"""Faults during training: SIGKILL at random moments, a loss that really diverges, running out of memory.

After any of them the run folder holds a loadable last checkpoint and the metrics up to it,
the run resumes, and (on CPU) the resumed curve is the curve of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from engine.config import RunConfig
from engine.training import run_store as rs
from engine.training.callbacks import Callback
from engine.training.checkpoint import load_algorithm, load_checkpoint
from engine.training.trainer import Trainer

from .helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]
KILL_STEPS = 48
N_KILLS = 3


class Recorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.failed: list[str] = []
        self.logs: list[tuple[str, str]] = []

    def on_step(self, m: Any) -> None:
        self.losses.append(m.loss)

    def on_failed(self, message: str, summary: Any) -> None:
        self.failed.append(message)

    def on_log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))


def _small(root: Path, **changes: Any) -> RunConfig:
    """tiny_config on one thread (the test machines have 2 busy cores)."""
    config = tiny_config(root, **changes)
    config.train.num_threads = 1
    return config


def _kill_config(root: Path) -> RunConfig:
    config = tiny_config(root, steps=KILL_STEPS)
    config.model.hidden_channels = 8
    config.train.checkpoint_every, config.train.val_every, config.train.val_episodes = 2, 10, 3
    config.train.num_threads = 1
    config.train.precision = "fp32"  # the reference and the killed run are separate runs: one precision for both
    return config                    # (auto measures bf16 per process on some CPUs; a loaded CI machine may differ)


def _step_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in rs.read_metrics(run_dir / rs.METRICS_FILE) if r.get("kind") == "step"]


def _validation_rows(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["accuracy"]) for r in rs.read_metrics(run_dir / rs.METRICS_FILE)
            if r.get("kind") == "validation"]


def _checkpoint_signature(run_dir: Path) -> tuple[int, int] | None:
    try:
        info = (run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT).stat()
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns


def _wait_for_new_checkpoint(process: subprocess.Popen, run_dir: Path, before: tuple[int, int] | None) -> bool:
    """Poll until last.pt is replaced (True) or the process ends first (False)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _checkpoint_signature(run_dir) not in (None, before):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared within 120 s")


def _last_step(run_dir: Path) -> int:
    """The step of last.pt, read while the run goes on (replaced atomically: always whole)."""
    return load_checkpoint(run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT).step


def _wait_for_step(process: subprocess.Popen, run_dir: Path, target: int) -> None:
    """Poll metrics.jsonl until step ``target`` is logged (or the process ends)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        rows = _step_rows(run_dir)
        if rows and rows[-1]["step"] >= target:
            return
        time.sleep(0.005)


def _assert_consistent_after_kill(run_dir: Path) -> int:
    """The invariants of a killed run folder; returns the step of its last checkpoint."""
    checkpoint = load_checkpoint(run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT)
    steps = [r["step"] for r in _step_rows(run_dir) if r["step"] <= checkpoint.step]
    assert steps == list(range(1, checkpoint.step + 1)), "metrics up to the checkpoint are missing or repeated"
    record = rs.RunStore(run_dir.parent).record(run_dir)
    assert record.status == "interrupted" and record.steps_done <= checkpoint.step
    assert [r.run_dir for r in rs.RunStore(run_dir.parent).list_runs()] == [run_dir]
    return checkpoint.step


def test_sigkill_at_random_moments_loses_nothing_and_resumes_to_the_uninterrupted_curve(
        tiny_flat: Path, tmp_path: Path) -> None:
    config = _kill_config(tiny_flat)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config.to_dict()))
    reference = tmp_path / "reference"
    assert Trainer(RunConfig.from_dict(config.to_dict()), run_dir=reference).run().status == "finished"

    run_dir = tmp_path / "runs" / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = [sys.executable, "-m", "engine", "train", "--quiet"]
    rng = random.Random(20260101)
    kill_steps = []
    for attempt in range(N_KILLS):
        command = start + (["--config", str(config_path), "--run-dir", str(run_dir)] if attempt == 0
                           else ["--resume", str(run_dir)])
        before = _checkpoint_signature(run_dir)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if _wait_for_new_checkpoint(process, run_dir, before):
                # then a seeded random moment: a few steps on, and part of a step (a write, a validation...)
                _wait_for_step(process, run_dir, _last_step(run_dir) + rng.randint(1, 8))
                time.sleep(rng.uniform(0.0, 0.08))
        finally:
            process.send_signal(signal.SIGKILL)
            _, stderr = process.communicate()
        assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {stderr[-2000:]}"
        kill_steps.append(_assert_consistent_after_kill(run_dir))

    # the CLI resumed the run twice above; the last stretch runs in this process (one interpreter start less)
    assert Trainer.resume(run_dir).run().status == "finished"
    assert kill_steps == sorted(kill_steps) and kill_steps[0] >= 2  # each kill came after some progress
    record = rs.RunStore(run_dir.parent).record(run_dir)
    assert (record.status, record.steps_done) == ("finished", KILL_STEPS)
    rows = _step_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, KILL_STEPS + 1))  # every step once, none lost or repeated
    expected = _step_rows(reference)
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in expected], rel=1e-5, abs=1e-6)
    validations, expected_validations = _validation_rows(run_dir), _validation_rows(reference)
    assert [step for step, _ in validations] == [step for step, _ in expected_validations] == [10, 20, 30, 40, 48]
    assert [a for _, a in validations] == pytest.approx([a for _, a in expected_validations], rel=1e-5, abs=1e-6)


# -- a loss that really diverges ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diverged(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recorder, Any]:
    """Second-order MAML with absurd step sizes (inner_lr and lr at their maximum bounds) on real data."""
    config = tiny_config(tiny_flat, "maml", steps=20, inner_lr=100.0, inner_steps=5, lr=10.0)
    config.model.hidden_channels = 8
    config.train.checkpoint_every, config.train.val_every, config.train.val_episodes = 2, 10, 3
    config.train.num_threads = 1
    config.train.precision = "fp32"  # in bf16 (auto on some CPUs) it diverges before the first checkpoint
    run_dir = tmp_path_factory.mktemp("diverged") / "run"
    recorder = Recorder()
    summary = Trainer(config, run_dir=run_dir, callbacks=[recorder]).run()
    return run_dir, recorder, summary


def test_a_real_divergence_stops_at_its_step_and_keeps_the_last_good_checkpoint(
        diverged: tuple[Path, Recorder, Any]) -> None:
    run_dir, recorder, summary = diverged
    assert summary.status == "failed" and len(recorder.failed) == 1
    message = recorder.failed[0]
    found = re.search(r"at step (\d+)", message)
    assert found and "learning rate" in message, message
    bad_step = int(found.group(1))
    assert bad_step == len(recorder.losses) + 1  # every reported step before it had a finite loss
    assert all(loss == loss and abs(loss) != float("inf") for loss in recorder.losses)
    algorithm, checkpoint = load_algorithm(run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT)  # refuses NaN weights
    assert checkpoint.step == (bad_step - 1) // 2 * 2 and checkpoint.step < bad_step
    assert [r["step"] for r in _step_rows(run_dir)] == list(range(1, bad_step))
    record = rs.RunStore(run_dir.parent).record(run_dir)
    assert record.status == "failed" and record.message == message and record.steps_done == checkpoint.step


def test_a_real_divergence_message_names_the_inner_learning_rate_too(diverged: tuple[Path, Recorder, Any]) -> None:
    _, recorder, _ = diverged
    assert "algorithm.inner_lr" in recorder.failed[0]


# -- out of memory ----------------------------------------------------------------------------------------------
def _fail_step_with(monkeypatch: pytest.MonkeyPatch, error: BaseException, at_call: int = 6) -> None:
    import engine.training.trainer as trainer_module

    real_build = trainer_module.build_algorithm

    def build(config: RunConfig, n_train_classes: int) -> Any:
        algorithm = real_build(config, n_train_classes)
        real_step = algorithm.meta_train_step
        calls = {"n": 0}

        def step(batch: Any) -> dict[str, float]:
            calls["n"] += 1
            if calls["n"] == at_call:
                raise error
            return real_step(batch)

        algorithm.meta_train_step = step
        return algorithm

    monkeypatch.setattr(trainer_module, "build_algorithm", build)


OOM_CASES = {
    "gpu": (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            ["task.meta_batch_size", "data.image_size"]),
    "host MemoryError": (MemoryError(), ["task.meta_batch_size", "data.image_size", "data.cache_budget_mb"]),
}


@pytest.mark.parametrize("error,fields", OOM_CASES.values(), ids=OOM_CASES.keys())
def test_out_of_memory_ends_the_run_failed_with_what_to_change_and_an_intact_checkpoint(
        tiny_flat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException,
        fields: list[str]) -> None:
    _fail_step_with(monkeypatch, error)
    recorder = Recorder()
    summary = Trainer(_small(tiny_flat), run_dir=tmp_path / "r", callbacks=[recorder]).run()
    assert summary.status == "failed"
    assert all(field in recorder.failed[0] for field in fields), recorder.failed[0]
    assert "memory" in recorder.failed[0]
    assert load_checkpoint(tmp_path / "r" / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT).step == 4
    record = rs.RunStore(tmp_path).record(tmp_path / "r")
    assert record.status == "failed" and record.message == recorder.failed[0]
    monkeypatch.undo()
    assert Trainer.resume(tmp_path / "r").run().status == "finished"  # and it can go on with the same settings


def test_cpu_allocator_failure_is_reported_as_out_of_memory(tiny_flat: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_step_with(monkeypatch, RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                                              "can't allocate memory: you tried to allocate 1125899906842624 bytes."))
    recorder = Recorder()
    summary = Trainer(_small(tiny_flat), run_dir=tmp_path / "r", callbacks=[recorder]).run()
    assert summary.status == "failed"
    assert "internal error" not in recorder.failed[0]
    assert "task.meta_batch_size" in recorder.failed[0] and "data.image_size" in recorder.failed[0]


# -- a kill between the two checkpoint files of a validation step -------------------------------------------------
class _Killed(BaseException):
    """Stands for SIGKILL inside the process (not an Exception: the trainer must not handle it)."""


def test_a_kill_between_the_best_and_the_last_checkpoint_keeps_them_consistent(
        tiny_flat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.training.trainer as trainer_module

    real_save = trainer_module.save_checkpoint
    validations = {"n": 0}

    def improving_evaluate(*args: Any, **kwargs: Any) -> SimpleNamespace:
        validations["n"] += 1  # every validation is a new best, so each writes both files
        return SimpleNamespace(accuracy=0.1 * validations["n"], ci95=0.0, n_episodes=1)

    def save(path: Path, *args: Any, **kwargs: Any) -> Path:
        written = real_save(path, *args, **kwargs)
        if args[4] == 8:  # step 8: the first of its two files is written, then the process dies
            raise _Killed
        return written

    monkeypatch.setattr(trainer_module, "evaluate", improving_evaluate)
    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    config = _small(tiny_flat)  # validation at 4, 8, 12: each new best writes both files
    run_dir = tmp_path / "r"
    with pytest.raises(_Killed):
        Trainer(config, run_dir=run_dir).run()
    last = load_checkpoint(run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT)
    best = load_checkpoint(run_dir / rs.CHECKPOINT_DIR / rs.BEST_CHECKPOINT)
    recorded_best_step = last.extra["best"][1]
    assert best.step >= recorded_best_step, "last.pt names a best model that best.pt does not hold"


# -- two processes training the same run --------------------------------------------------------------------------
def test_a_run_cannot_be_trained_twice_at_once(tiny_flat: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    assert Trainer(_small(tiny_flat, steps=4), run_dir=run_dir).run().status == "finished"
    before = (run_dir / rs.RUN_FILE).read_bytes()
    with rs.RunLock(run_dir):  # another studio window (or the CLI) is training this run
        recorder = Recorder()
        summary = Trainer.resume(run_dir, extra_steps=4, callbacks=[recorder]).run()
    assert summary.status == "failed" and "already being trained" in recorder.failed[0]
    assert (run_dir / rs.RUN_FILE).read_bytes() == before  # the other process's record is untouched


# -- weights that became non-finite exactly at a checkpoint step ---------------------------------------------------
def test_weights_that_became_non_finite_at_a_checkpoint_step_are_never_saved(
        tiny_flat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.training.trainer as trainer_module

    real_build = trainer_module.build_algorithm

    def build(config: RunConfig, n_train_classes: int) -> Any:
        algorithm = real_build(config, n_train_classes)
        real_step = algorithm.meta_train_step
        calls = {"n": 0}

        def step(batch: Any) -> dict[str, float]:
            calls["n"] += 1
            metrics = real_step(batch)  # the loss of this step was finite...
            if calls["n"] == 8:  # ...but its update overflowed the weights
                with torch.no_grad():
                    next(algorithm.modules()["backbone"].parameters()).fill_(float("inf"))
            return metrics

        algorithm.meta_train_step = step
        return algorithm

    monkeypatch.setattr(trainer_module, "build_algorithm", build)
    recorder = Recorder()
    summary = Trainer(_small(tiny_flat), run_dir=tmp_path / "r", callbacks=[recorder]).run()
    assert summary.status == "failed" and "step 8" in recorder.failed[0]
    _, checkpoint = load_algorithm(tmp_path / "r" / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT)
    assert checkpoint.step == 4
