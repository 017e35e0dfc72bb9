"""Prefetching the next training batch in a background thread changes nothing but the timing.

Prefetching is off on the CPU by default; these tests force it on (``Trainer(prefetch=True)``
or ``engine.training.prefetch.ENABLED``) and compare with the inline trainer: the same
episodes at every step, bit-identical weights, the same checkpointed sampler state (so a
resumed run continues the same sequence), errors surfacing at the step that needs the
batch, and no thread left behind.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from engine.config import DataConfig

import engine.training.trainer as trainer_module
from engine.data.types import ClassBatch
from engine.errors import ConfigError
from engine.runtime import collective
from engine.training import prefetch as prefetch_module
from engine.training.callbacks import Callback
from engine.training.checkpoint import load_checkpoint
from engine.training.control import RunControl
from engine.training.prefetch import BatchPrefetcher, prefetch_default
from engine.training.trainer import Trainer

from .helpers import tiny_config

STEPS = 8


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("batch-prefetch")]


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None, control: RunControl | None = None) -> None:
        self.steps, self.failed, self.threads_seen = [], [], []
        self.stop_at, self.control = stop_at, control

    def on_step(self, m):
        self.steps.append(m.step)
        self.threads_seen.append(len(prefetch_threads()))
        if self.stop_at == m.step:
            self.control.stop()

    def on_failed(self, message, s):
        self.failed.append(message)


@pytest.fixture
def record_batches(monkeypatch: pytest.MonkeyPatch) -> list[list]:
    """Every built algorithm's meta_train_step appends what identifies its batch (and the drawing thread)."""
    seen: list[list] = []
    real_build = trainer_module.build_algorithm

    def build(config, n_train_classes):
        algorithm = real_build(config, n_train_classes)
        real_step, log = algorithm.meta_train_step, []
        seen.append(log)

        def step(batch):
            if isinstance(batch, ClassBatch):
                log.append((batch.x.clone(), batch.y.clone()))
            else:
                log.append([(t.support_index.clone(), t.query_index.clone(), t.support_x.clone()) for t in batch])
            return real_step(batch)

        algorithm.meta_train_step = step
        return algorithm

    monkeypatch.setattr(trainer_module, "build_algorithm", build)
    return seen


def assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b)
    for one, other in zip(a, b):
        if isinstance(one, tuple):
            assert torch.equal(one[0], other[0]) and torch.equal(one[1], other[1])
        else:
            assert len(one) == len(other)
            for (s1, q1, x1), (s2, q2, x2) in zip(one, other):
                assert torch.equal(s1, s2) and torch.equal(q1, q2) and torch.equal(x1, x2)


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    modules_a, modules_b = a.algorithm.modules(), b.algorithm.modules()
    assert modules_a.keys() == modules_b.keys()
    for name in modules_a:
        state_a, state_b = modules_a[name].state_dict(), modules_b[name].state_dict()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), f"{name}.{key}"


def config_for(root: Path, algorithm: str = "protonet", steps: int = STEPS):
    config = tiny_config(root, algorithm, steps=steps)
    config.train.num_threads = 1
    if algorithm == "baseline":
        config.algorithm.batch_size = 8
    return config


# -- the choice ------------------------------------------------------------------------------------------------
def test_prefetch_is_on_for_accelerators_and_off_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert prefetch_default(torch.device("cuda")) and prefetch_default(torch.device("mps"))
    assert not prefetch_default(torch.device("cpu"))
    glyphs, photos, augmented = DataConfig(), DataConfig(image_size=84), DataConfig(augment_affine=True)
    assert not prefetch_default(torch.device("cuda"), glyphs)           # a light draw: inline
    assert prefetch_default(torch.device("cuda"), photos) and prefetch_default(torch.device("cuda"), augmented)
    assert not prefetch_default(torch.device("cpu"), augmented)
    monkeypatch.setattr(prefetch_module, "ENABLED", True)
    assert prefetch_default(torch.device("cpu"))


# -- (a) the same batches, the same weights --------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["protonet", "baseline"])
def test_prefetched_run_trains_on_the_same_batches_to_the_same_weights(tiny_flat, tmp_path, record_batches,
                                                                       algorithm):
    inline_rec, ahead_rec = Recorder(), Recorder()
    inline = Trainer(config_for(tiny_flat, algorithm), run_dir=tmp_path / "inline", callbacks=[inline_rec],
                     prefetch=False)
    assert inline.run().status == "finished", inline_rec.failed
    ahead = Trainer(config_for(tiny_flat, algorithm), run_dir=tmp_path / "ahead", callbacks=[ahead_rec],
                    prefetch=True)
    assert ahead.run().status == "finished", ahead_rec.failed
    assert inline_rec.threads_seen == [0] * STEPS
    assert all(n == 1 for n in ahead_rec.threads_seen[:-1])  # the thread lives while batches remain
    inline_batches, ahead_batches = record_batches
    assert len(ahead_batches) == STEPS
    assert_same_batches(inline_batches, ahead_batches)
    assert_same_weights(inline, ahead)
    for name in ("best.pt", "last.pt"):
        a = load_checkpoint(tmp_path / "inline" / "checkpoints" / name).extra["sampler"]
        b = load_checkpoint(tmp_path / "ahead" / "checkpoints" / name).extra["sampler"]
        assert a.keys() == b.keys() and all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)
    assert ahead.batch_seconds > 0 and ahead.batch_seconds < ahead.train_seconds
    assert prefetch_threads() == []


def test_batches_are_drawn_by_the_prefetch_thread(tiny_flat, monkeypatch):
    drawn_in: list[str] = []
    real_next = Trainer._next_batch

    def next_batch(self):
        drawn_in.append(threading.current_thread().name)
        return real_next(self)

    monkeypatch.setattr(Trainer, "_next_batch", next_batch)
    monkeypatch.setattr(prefetch_module, "ENABLED", True)  # the module switch, as Trainer(prefetch=None) reads it
    config = config_for(tiny_flat, steps=3)
    config.train.val_every = 0
    assert Trainer(config).run().status == "finished"
    assert len(drawn_in) == 3 and all(name.startswith("batch-prefetch") for name in drawn_in)
    monkeypatch.setattr(prefetch_module, "ENABLED", None)
    drawn_in.clear()
    assert Trainer(config).run().status == "finished"
    assert drawn_in == [threading.current_thread().name] * 3  # on the CPU by default: inline


# -- (b) stop, resume: the uninterrupted run ------------------------------------------------------------------
@pytest.mark.parametrize("resume_prefetch", [True, False])
def test_stopped_prefetched_run_resumes_to_the_uninterrupted_weights(tiny_flat, tmp_path, resume_prefetch):
    full = Trainer(config_for(tiny_flat), run_dir=tmp_path / "full", prefetch=False)
    assert full.run().status == "finished"
    # the inline run stopped at step 6 saves the sampler state before batch 7: the prefetched one must too
    for name, ahead in (("cut-inline", False), ("cut", True)):
        control = RunControl()
        rec = Recorder(stop_at=6, control=control)
        summary = Trainer(config_for(tiny_flat), run_dir=tmp_path / name, callbacks=[rec], control=control,
                          prefetch=ahead).run()
        assert summary.status == "stopped" and summary.steps_done == 6, rec.failed
        assert prefetch_threads() == []
    a = load_checkpoint(tmp_path / "cut-inline" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a.step == b.step == 6
    assert all(torch.equal(a.extra["sampler"][k], b.extra["sampler"][k]) for k in a.extra["sampler"])
    resumed = Trainer.resume(tmp_path / "cut", prefetch=resume_prefetch)
    assert resumed.run().status == "finished"
    assert_same_weights(full, resumed)
    assert prefetch_threads() == []


# -- (c) errors and clean shutdown --------------------------------------------------------------------------
class FailingSampler:
    """Wraps the trainer's own sampler; its ``fail_at``-th draw raises."""

    def __init__(self, sampler, fail_at: int, error: Exception) -> None:
        self.sampler, self.fail_at, self.error, self.draws, self.threads = sampler, fail_at, error, 0, []

    def sample_batch(self, n):
        self.draws += 1
        self.threads.append(threading.current_thread().name)
        if self.draws == self.fail_at:
            raise self.error
        return self.sampler.sample_batch(n)

    def sample(self):
        return self.sample_batch(1)

    def state_dict(self):
        return self.sampler.state_dict()

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state)


@pytest.mark.parametrize("error, expected", [
    (ValueError("the sampler broke at draw 3"), "internal error: ValueError: the sampler broke at draw 3"),
    (ConfigError("task.n_way: not enough classes at draw 3"), "task.n_way: not enough classes at draw 3"),
])
def test_a_sampler_error_fails_the_run_at_the_step_that_needs_the_batch(tiny_flat, tmp_path, monkeypatch,
                                                                        error, expected):
    real_make = Trainer._make_samplers
    wrappers = []

    def make(self):
        real_make(self)
        self._sampler = FailingSampler(self._sampler, 3, error)
        wrappers.append(self._sampler)

    monkeypatch.setattr(Trainer, "_make_samplers", make)
    results = {}
    for ahead in (False, True):
        rec = Recorder()
        summary = Trainer(config_for(tiny_flat), run_dir=tmp_path / f"r{ahead}", callbacks=[rec],
                          prefetch=ahead).run()
        results[ahead] = (summary.status, summary.message, rec.steps, rec.failed)
        assert prefetch_threads() == []
    assert results[True] == results[False]
    status, message, steps, failed = results[True]
    assert status == "failed" and message == expected and failed == [expected]
    assert steps == [1, 2]
    assert all(name.startswith("batch-prefetch") for name in wrappers[1].threads)
    assert wrappers[1].draws == 3  # never drew past the failing batch


def test_closing_the_step_generator_early_joins_the_thread(tiny_flat, tmp_path):
    trainer = Trainer(config_for(tiny_flat), run_dir=tmp_path / "r", prefetch=True)
    steps = trainer.steps()
    next(steps)
    next(steps)
    assert len(prefetch_threads()) == 1
    steps.close()
    assert prefetch_threads() == []


def test_pause_parks_the_thread_and_stop_while_paused_ends_it(tiny_flat, tmp_path):
    control = RunControl()

    class PauseAtTwo(Recorder):
        def on_step(self, m):
            super().on_step(m)
            if m.step == 2:
                control.pause()

    rec = PauseAtTwo()
    trainer = Trainer(config_for(tiny_flat), run_dir=tmp_path / "r", callbacks=[rec], control=control,
                      prefetch=True)
    runner = threading.Thread(target=trainer.run)
    runner.start()
    deadline = time.monotonic() + 30
    while not control.paused and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert rec.steps == [1, 2]
    assert len(prefetch_threads()) == 1  # batch 3 waits, drawn; the thread idles
    control.stop()
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert trainer.summary.status == "stopped" and trainer.summary.steps_done == 2
    assert prefetch_threads() == []
    resumed = Trainer.resume(tmp_path / "r", prefetch=True)
    assert resumed.run().status == "finished"
    full = Trainer(config_for(tiny_flat), prefetch=False)
    assert full.run().status == "finished"
    assert_same_weights(full, resumed)
    assert prefetch_threads() == []


# -- a sampler passed in, the race, torch.distributed ---------------------------------------------------------
def test_a_sampler_passed_in_is_drawn_inline_even_when_prefetch_is_asked(tiny_flat, tmp_path, record_batches):
    own = Trainer(config_for(tiny_flat), run_dir=tmp_path / "own", prefetch=True)
    assert own.run().status == "finished"
    data = own.data
    cfg = config_for(tiny_flat)
    sampler = data.episodes("train", cfg.task.n_way, cfg.task.n_shot, cfg.task.n_query, cfg.train.seed)
    rec = Recorder()
    given = Trainer(cfg, run_dir=tmp_path / "given", callbacks=[rec], data=data, sampler=sampler, prefetch=True)
    assert given.run().status == "finished", rec.failed
    assert rec.threads_seen == [0] * STEPS
    assert_same_batches(record_batches[0], record_batches[1])
    assert_same_weights(own, given)


def test_a_race_starts_no_prefetch_thread(tiny_flat, tmp_path, monkeypatch):
    from engine.race import Race, RaceCallback, RaceConfig

    monkeypatch.setattr(prefetch_module, "ENABLED", True)
    seen = []

    class Watch(RaceCallback):
        def on_step(self, algorithm, metrics, seconds):
            seen.append(len(prefetch_threads()))

    config = config_for(tiny_flat, steps=3)
    config.train.val_episodes = 2
    race = RaceConfig.from_run_config(config, ["protonet", "baseline"], test_episodes=2)
    result = Race(race, race_dir=tmp_path / "race", callbacks=[Watch()]).run()
    assert result.status == "finished"
    assert seen and seen == [0] * len(seen)


@pytest.mark.parametrize("algorithm", ["protonet", "baseline"])
def test_distributed_rank_takes_its_shard_of_the_prefetched_batch(tiny_flat, monkeypatch, record_batches, algorithm):
    """Rank 1 of 2 (collectives stubbed, one process): prefetched shards equal the inline ones, and they are
    the second half of each global batch."""
    world = collective.World(1, 2, 1, "gloo")
    monkeypatch.setattr(collective, "current_world", lambda: world)
    monkeypatch.setattr(collective, "any_rank", lambda flag, device: flag)
    monkeypatch.setattr(collective, "average_metrics", lambda metrics, device, keys=("loss", "accuracy"): metrics)
    for name in ("broadcast_state", "all_reduce_gradients", "average_tensors_", "average_floating_buffers"):
        monkeypatch.setattr(collective, name, lambda *args, **kwargs: None)
    config = config_for(tiny_flat, algorithm, steps=4)
    config.task.meta_batch_size = 4
    config.train.val_every = 0
    trainers = [Trainer(config, prefetch=ahead) for ahead in (False, True)]
    for trainer in trainers:
        assert trainer.run().status == "finished", trainer.summary.message
    assert_same_batches(record_batches[0], record_batches[1])
    assert_same_weights(*trainers)
    data = trainers[0].data
    if algorithm == "baseline":
        sampler = data.class_batches(config.algorithm.batch_size, config.train.seed)
        for x, y in record_batches[1]:
            batch = sampler.sample()
            assert torch.equal(y, batch.y[4:]) and torch.equal(x, batch.x[4:])
    else:
        sampler = data.episodes("train", config.task.n_way, config.task.n_shot, config.task.n_query,
                                config.train.seed)
        for tasks in record_batches[1]:
            expected = sampler.sample_batch(4)[2:]
            assert [torch.equal(s, e.support_index) for (s, _q, _x), e in zip(tasks, expected)] == [True, True]
    assert prefetch_threads() == []


# -- the prefetcher alone -------------------------------------------------------------------------------------
def test_prefetcher_stays_one_batch_ahead_and_records_the_state_before_each_draw():
    drawn = []
    counter = {"n": 0}

    def draw():
        counter["n"] += 1
        drawn.append(counter["n"])
        return counter["n"]

    with BatchPrefetcher(draw, lambda: {"next": counter["n"] + 1}, limit=3) as prefetcher:
        assert prefetcher.pending_state() == {"next": 1}
        time.sleep(0.05)
        assert drawn == [1]  # one ahead, no further
        assert prefetcher.take() == 1
        assert prefetcher.pending_state() == {"next": 2}
        assert [prefetcher.take(), prefetcher.take()] == [2, 3]
        assert prefetcher.pending_state() == {"next": 4}  # after the last batch: the state after it
        assert drawn == [1, 2, 3]
        with pytest.raises(RuntimeError):
            prefetcher.take()
    assert not prefetcher.alive


def test_prefetcher_reraises_the_draw_error_and_keeps_the_state_before_it():
    def draw():
        raise KeyError("no such image")

    prefetcher = BatchPrefetcher(draw, lambda: {"s": 1}, limit=5)
    assert prefetcher.pending_state() == {"s": 1}
    with pytest.raises(KeyError, match="no such image"):
        prefetcher.take()
    prefetcher.close()
    assert not prefetcher.alive


def test_prefetcher_close_while_a_batch_waits_joins_the_thread():
    prefetcher = BatchPrefetcher(lambda: torch.zeros(3), dict, limit=1000)
    prefetcher.take()
    prefetcher.pending_state()
    prefetcher.close()
    prefetcher.close()
    assert not prefetcher.alive


# -- CUDA (skipped without a GPU) ------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("algorithm", ["protonet", "baseline"])
def test_cuda_prefetch_is_the_default_pins_in_the_thread_and_trains_the_same(tiny_flat, record_batches,
                                                                             monkeypatch, algorithm):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    taken: list[tuple[str, bool]] = []
    real_take = Trainer._take_batch

    def take(self):
        batch = real_take(self)
        x = batch.x if isinstance(batch, ClassBatch) else batch[0].support_x
        taken.append((x.device.type, x.is_pinned()))
        return batch

    monkeypatch.setattr(Trainer, "_take_batch", take)
    config = config_for(tiny_flat, algorithm, steps=6)
    config.train.device = "cuda"
    config.data.augment_flips = True  # a heavy draw: prefetched by default on CUDA
    trainers = []
    for ahead in (False, None):  # inline, then the default on CUDA: prefetched
        trainer = Trainer(config, prefetch=ahead)
        assert trainer.run().status == "finished", trainer.summary.message
        trainers.append(trainer)
    assert taken[:6] == [("cpu", False)] * 6 and taken[6:] == [("cpu", True)] * 6
    assert_same_batches(record_batches[0], record_batches[1])
    for name, module in trainers[0].algorithm.modules().items():
        other = trainers[1].algorithm.modules()[name].state_dict()
        for key, value in module.state_dict().items():
            assert torch.allclose(value, other[key], atol=1e-5, rtol=1e-5), f"{name}.{key}"
    assert trainers[1].batch_seconds < trainers[1].train_seconds
    assert prefetch_threads() == []


def test_prefetcher_held_take_draws_the_next_batch_only_after_release():
    drawn = []

    def draw():
        drawn.append(len(drawn) + 1)
        return drawn[-1]

    with BatchPrefetcher(draw, lambda: {"drawn": len(drawn)}, limit=4) as prefetcher:
        assert prefetcher.take(hold=True) == 1
        time.sleep(0.05)
        assert drawn == [1]  # held: nothing drawn yet
        prefetcher.release()
        assert prefetcher.pending_state() == {"drawn": 1}
        assert prefetcher.take(hold=True) == 2
        assert prefetcher.take(hold=True) == 3  # a take without release releases first
        assert prefetcher.pending_state() == {"drawn": 3}  # so does pending_state
        assert prefetcher.take() == 4
    assert not prefetcher.alive
