"""The measured training-time estimate (engine/training/estimate.py) and the schema's plain-language
declarations behind the forms (labels, help sentences, basic fields, where a field applies)."""

from __future__ import annotations

import dataclasses

import pytest

from engine.config import (ALGORITHM_CONFIGS, DataConfig, EpisodeShape, ModelConfig, RunConfig, TaskConfig,
                           TrainConfig, describe_fields)
from engine.errors import TrainingError
from engine.training.estimate import TrainingTimeEstimate, measure_training_time
from tests.engine.helpers import tiny_config

SECTIONS = [(DataConfig, "data"), (TaskConfig, "task"), (ModelConfig, "model"), (TrainConfig, "train"),
            (EpisodeShape, "episode")] + [(cls, "algorithm") for cls in ALGORITHM_CONFIGS.values()]


def test_total_seconds_adds_setup_steps_and_every_validation():
    estimate = TrainingTimeEstimate(setup_s=2.0, step_s=0.05, validation_episode_s=0.01, timed_steps=4)
    train = TrainConfig(steps=1000, val_every=250, val_episodes=100)
    assert estimate.validations(train) == 4
    assert estimate.total_seconds(train) == pytest.approx(2.0 + 50.0 + 4.0)
    assert estimate.validations(TrainConfig(steps=1000, val_every=300)) == 4  # 300, 600, 900 and the end
    assert estimate.validations(TrainConfig(steps=1000, val_every=0)) == 1


def test_measure_training_time_times_real_steps_and_writes_nothing(tiny_flat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tiny_flat, steps=500)
    estimate = measure_training_time(config, trial_steps=5, trial_validation_episodes=4)
    assert estimate is not None and estimate.timed_steps == 3
    assert 0 < estimate.step_s < 30 and estimate.validation_episode_s >= 0 and estimate.setup_s >= 0
    assert estimate.total_seconds(config.train) > 500 * estimate.step_s
    assert config.train.steps == 500  # the caller's config is not touched
    assert list(tmp_path.iterdir()) == []  # no run folder


def test_measure_training_time_stops_when_asked_and_names_a_bad_field(tiny_flat):
    assert measure_training_time(tiny_config(tiny_flat), should_stop=lambda: True) is None
    broken = tiny_config(tiny_flat)
    broken.task.n_way = 50  # more ways than the 8 training classes
    with pytest.raises(TrainingError, match="n_way|classes"):
        measure_training_time(broken)


def test_every_field_has_a_label_and_help_that_opens_with_a_sentence():
    for section_cls, section in SECTIONS:
        for spec in describe_fields(section_cls, section):
            assert spec.label and spec.title == spec.label, spec.key
            assert spec.help[:1].isupper() and "." in spec.help, spec.key


def test_basic_fields_are_the_few_most_people_change():
    basic = {spec.key for cls, section in SECTIONS[:4] for spec in describe_fields(cls, section) if spec.basic}
    assert basic == {"data.split_mode", "data.train_ratio", "data.val_ratio", "task.n_way", "task.n_shot",
                     "model.backbone", "train.steps", "train.device"}
    assert all(spec.basic for spec in describe_fields(ALGORITHM_CONFIGS["protonet"], "algorithm")
               if spec.name == "lr")


def test_where_a_field_applies():
    train = {spec.name: spec for spec in describe_fields(TrainConfig, "train")}
    protonet, maml, fomaml = (ALGORITHM_CONFIGS[n] for n in ("protonet", "maml", "fomaml"))
    assert not train["cuda_graphs"].applies(protonet, "cpu")
    assert train["cuda_graphs"].applies(protonet, "cuda:0") and not train["cuda_graphs"].applies(maml, "cuda")
    assert not train["vmap_chunk"].applies(protonet, "cuda:0")
    assert train["vmap_chunk"].applies(maml, "cpu") and train["task_batching"].applies(fomaml, "cpu")
    assert train["steps"].applies(protonet, "cpu") and train["vmap_chunk"].applies(None, "cpu")
    # the declarations changed no default
    assert dataclasses.asdict(RunConfig().train)["cuda_graphs"] is True
