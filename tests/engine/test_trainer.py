import os
import threading

import pytest
import torch

from engine.errors import CheckpointError
from engine.training import run_store as rs
from engine.training.callbacks import Callback
from engine.training.checkpoint import load_algorithm, load_checkpoint
from engine.training.control import RunControl
from engine.training.trainer import Trainer

from .helpers import tiny_config


class Recorder(Callback):
    def __init__(self, stop_at=None, control=None):
        self.steps, self.validations, self.checkpoints, self.finished, self.failed = [], [], [], [], []
        self.stop_at, self.control = stop_at, control

    def on_step(self, m):
        self.steps.append(m)
        if self.stop_at == m.step:
            self.control.stop()

    def on_validation(self, r):
        self.validations.append(r)

    def on_checkpoint(self, info):
        self.checkpoints.append(info)

    def on_finished(self, s):
        self.finished.append(s)

    def on_failed(self, message, s):
        self.failed.append(message)


def test_run_reports_every_step_validates_and_writes_its_folder(tiny_flat, tmp_path):
    rec = Recorder()
    summary = Trainer(tiny_config(tiny_flat), run_dir=tmp_path / "run", callbacks=[rec]).run()
    assert summary.status == "finished", rec.failed
    assert [m.step for m in rec.steps] == list(range(1, 13))
    assert [v.step for v in rec.validations] == [4, 8, 12]
    assert all(0.0 <= v.accuracy <= 1.0 and v.ci95 >= 0 for v in rec.validations)
    record = rs.RunStore(tmp_path).record(tmp_path / "run")
    assert record.status == "finished" and record.steps_done == 12
    assert record.best_val_accuracy == max(v.accuracy for v in rec.validations)
    rows = rs.read_metrics(tmp_path / "run" / rs.METRICS_FILE)
    assert len([r for r in rows if r["kind"] == "step"]) == 12
    assert len([r for r in rows if r["kind"] == "validation"]) == 3
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt.step == 12 and ckpt.split.test and not set(ckpt.split.test) & set(ckpt.split.train)


@pytest.mark.parametrize("algorithm, options", [("protonet", {}), ("feat", {"dropout": 0.5})])
def test_stopped_run_resumes_to_the_same_curve_as_an_uninterrupted_run(tiny_flat, tmp_path, algorithm, options):
    """FEAT's dropout draws from PyTorch's global generator: the checkpoint carries its state."""
    full = Recorder()
    Trainer(tiny_config(tiny_flat, algorithm, **options), run_dir=tmp_path / "full", callbacks=[full]).run()
    control = RunControl()
    first = Recorder(stop_at=6, control=control)
    summary = Trainer(tiny_config(tiny_flat, algorithm, **options), run_dir=tmp_path / "cut", callbacks=[first],
                      control=control).run()
    assert summary.status == "stopped" and summary.steps_done == 6
    assert rs.RunStore(tmp_path).record(tmp_path / "cut").status == "stopped"
    second = Recorder()
    assert Trainer.resume(tmp_path / "cut", callbacks=[second]).run().status == "finished"
    assert [m.step for m in second.steps] == list(range(7, 13))
    resumed_losses = [m.loss for m in first.steps] + [m.loss for m in second.steps]
    assert resumed_losses == pytest.approx([m.loss for m in full.steps], rel=1e-5, abs=1e-6)
    rows = rs.read_metrics(tmp_path / "cut" / rs.METRICS_FILE)
    assert [r["step"] for r in rows if r["kind"] == "step"] == list(range(1, 13))


class WatchedControl(RunControl):
    """A RunControl that tells when the trainer waits at the pause point (``held``)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = threading.Event()

    def wait_while_paused(self, poll_s: float = 0.1) -> None:
        if self.paused:
            self.held.set()
        super().wait_while_paused(poll_s)


def test_pause_holds_the_run_until_resume(tiny_flat, tmp_path):
    control = WatchedControl()
    rec = Recorder()
    control.pause()
    thread = threading.Thread(target=lambda: Trainer(tiny_config(tiny_flat), run_dir=tmp_path / "r",
                                                     callbacks=[rec], control=control).run())
    thread.start()
    assert control.held.wait(timeout=120), "the trainer never reached the pause point"
    assert rec.steps == [] and thread.is_alive()  # held before its first step
    control.resume()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the run did not finish within 120 s of resume"
    assert [m.step for m in rec.steps][-1] == 12 and rec.finished


def test_non_finite_loss_stops_at_that_step_and_keeps_the_last_good_checkpoint(tiny_flat, tmp_path, monkeypatch):
    import engine.training.trainer as trainer_module

    real_build = trainer_module.build_algorithm

    def build_with_nan(config, n_train_classes):
        algorithm = real_build(config, n_train_classes)
        real_step = algorithm.meta_train_step
        calls = {"n": 0}

        def step(batch):
            calls["n"] += 1
            metrics = real_step(batch)
            return {**metrics, "loss": float("nan")} if calls["n"] == 6 else metrics

        algorithm.meta_train_step = step
        return algorithm

    monkeypatch.setattr(trainer_module, "build_algorithm", build_with_nan)
    rec = Recorder()
    summary = Trainer(tiny_config(tiny_flat), run_dir=tmp_path / "r", callbacks=[rec]).run()
    assert summary.status == "failed"
    assert "step 6" in rec.failed[0] and "learning rate" in rec.failed[0]
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt").step == 4
    assert rs.RunStore(tmp_path).record(tmp_path / "r").status == "failed"


def test_checkpoint_alone_reproduces_the_predictions(tiny_flat, tmp_path):
    trainer = Trainer(tiny_config(tiny_flat), run_dir=tmp_path / "r")
    trainer.run()
    task = trainer.data.episodes("test", 3, 2, 3, seed=5).sample()
    trainer.algorithm.train(False)
    expected = trainer.algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)
    loaded, ckpt = load_algorithm(tmp_path / "r" / "checkpoints" / "last.pt")
    got = loaded.adapt(task.support_x, task.support_y).predict(task.query_x)
    assert torch.equal(got, expected)
    assert ckpt.preprocessing == trainer.data.preprocessing


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"format": "meta-studio-checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused_with_its_name(tiny_flat, tmp_path):
    Trainer(tiny_config(tiny_flat, steps=4), run_dir=tmp_path / "r").run()
    data = (tmp_path / "r" / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")


@pytest.mark.parametrize("mutate,needle", [
    (lambda c, p: setattr(c.data, "root", str(p / "missing")), "missing"),
    (lambda c, p: setattr(c.task, "n_way", 9), "task.n_way"),
    (lambda c, p: setattr(c.train, "device", "cuda:7"), "train.device"),
])
def test_bad_input_fails_the_run_with_a_message_naming_it(tiny_flat, tmp_path, mutate, needle):
    config = tiny_config(tiny_flat)
    mutate(config, tmp_path)
    rec = Recorder()
    summary = Trainer(config, run_dir=tmp_path / "r", callbacks=[rec]).run()
    assert summary.status == "failed" and needle in rec.failed[0]
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()


def test_empty_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    rec = Recorder()
    Trainer(tiny_config(tmp_path / "empty"), callbacks=[rec]).run()
    assert str(tmp_path / "empty") in rec.failed[0]
