import json

import pytest

from engine.config import (ALGORITHM_CONFIGS, MAMLConfig, RunConfig, check_field, describe_fields, validate)
from engine.errors import ConfigError


def test_round_trip_through_json_keeps_every_field():
    config = RunConfig(algorithm=MAMLConfig(inner_lr=0.1, first_order=True), name="x")
    config.task.n_shot = 5
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert isinstance(again.algorithm, MAMLConfig)


@pytest.mark.parametrize("section,field,value,needle", [
    ("task", "n_shot", 0, "task.n_shot"),
    ("task", "n_way", 1, "task.n_way"),
    ("algorithm", "lr", -0.1, "algorithm.lr"),
    ("algorithm", "lr", 0.0, "algorithm.lr"),
    ("data", "channels", 2, "data.channels"),
    ("train", "steps", 0, "train.steps"),
])
def test_impossible_values_name_the_field(section, field, value, needle):
    raw = RunConfig().to_dict()
    raw[section][field] = value
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        RunConfig.from_dict(raw)


def test_wrong_type_and_unknown_fields_are_named():
    with pytest.raises(ConfigError, match=r"task\.n_way: expected int"):
        RunConfig.from_dict({"task": {"n_way": "five"}})
    with pytest.raises(ConfigError, match=r"task\.n_wya: unknown field"):
        RunConfig.from_dict({"task": {"n_wya": 5}})
    with pytest.raises(ConfigError, match="unknown algorithm 'mamal'"):
        RunConfig.from_dict({"algorithm": {"name": "mamal"}})


def test_split_ratios_must_leave_test_classes():
    config = RunConfig()
    config.data.train_ratio, config.data.val_ratio = 0.8, 0.2
    with pytest.raises(ConfigError, match="train_ratio"):
        validate(config)


def test_every_algorithm_declares_help_and_bounds():
    for name, cls in ALGORITHM_CONFIGS.items():
        assert cls.title and cls.summary, name
        for spec in describe_fields(cls, "algorithm"):
            assert spec.help, f"{name}.{spec.name} has no help text"
            assert check_field(spec, spec.default) is None, f"{name}.{spec.name} default is invalid"
