import pytest

from engine.config import RunConfig, TrainConfig
from engine.errors import ConfigError
from engine.training.callbacks import Callback
from engine.training.control import RunControl
from engine.training.schedule import lr_factor
from engine.training.trainer import Trainer

from .helpers import tiny_config


class Rates(Callback):
    def __init__(self, stop_at=None, control=None):
        self.lr, self.loss, self.stop_at, self.control = [], [], stop_at, control

    def on_step(self, m):
        self.lr.append(m.lr)
        self.loss.append(m.loss)
        if self.stop_at == m.step:
            self.control.stop()


def test_step_schedule_halves_every_n_steps_and_cosine_ends_near_zero():
    step = TrainConfig(steps=10, lr_schedule="step", lr_decay_every=4, lr_decay_factor=0.5)
    assert [lr_factor(step, s) for s in range(1, 11)] == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    cosine = TrainConfig(steps=100, lr_schedule="cosine")
    factors = [lr_factor(cosine, s) for s in range(1, 101)]
    assert factors[0] == 1.0 and factors[-1] < 1e-3 and factors == sorted(factors, reverse=True)
    assert lr_factor(TrainConfig(), 12345) == 1.0


@pytest.mark.parametrize("algorithm", ["protonet", "reptile"])
def test_trainer_applies_the_schedule_to_the_outer_rate(tiny_flat, tmp_path, algorithm):
    raw = tiny_config(tiny_flat).to_dict()
    raw["algorithm"] = {"name": algorithm, "lr": 0.01}
    raw["train"].update(lr_schedule="step", lr_decay_every=5, lr_decay_factor=0.1)
    rates = Rates()
    assert Trainer(RunConfig.from_dict(raw), run_dir=tmp_path / "r", callbacks=[rates]).run().status == "finished"
    assert rates.lr[:5] == pytest.approx([0.01] * 5)
    assert rates.lr[5:10] == pytest.approx([0.001] * 5)


def test_a_resumed_run_follows_the_same_schedule(tiny_flat, tmp_path):
    raw = tiny_config(tiny_flat).to_dict()
    raw["train"].update(lr_schedule="step", lr_decay_every=3, lr_decay_factor=0.5)
    full = Rates()
    Trainer(RunConfig.from_dict(raw), run_dir=tmp_path / "full", callbacks=[full]).run()
    control = RunControl()
    first = Rates(stop_at=4, control=control)
    Trainer(RunConfig.from_dict(raw), run_dir=tmp_path / "cut", callbacks=[first], control=control).run()
    second = Rates()
    assert Trainer.resume(tmp_path / "cut", callbacks=[second]).run().status == "finished"
    assert first.lr + second.lr == pytest.approx(full.lr)
    assert first.loss + second.loss == pytest.approx(full.loss, rel=1e-5, abs=1e-6)


def test_a_bad_decay_factor_is_named():
    with pytest.raises(ConfigError, match="lr_decay_factor"):
        RunConfig.from_dict({"train": {"lr_decay_factor": 0}})
    with pytest.raises(ConfigError, match="lr_schedule"):
        RunConfig.from_dict({"train": {"lr_schedule": "warmup"}})
