"""Bad input to meta-engine sweep: exit 2, one line naming the field or URL, nothing written."""

from __future__ import annotations

import pytest

from engine.cli import main
from engine.config import RunConfig
from engine.errors import ConfigError
from engine.sweep import SweepSettings, build_space, dimension_from_text, open_study, space_from_json
from tests.engine.sweep_helpers import TINY_FLAGS


@pytest.mark.parametrize("args, named", [
    (["--param", "task.n_wya=2:5"], "task.n_wya: no such field"),
    (["--param", "algorithm.inner_lr=0.1:0.5"], "algorithm.inner_lr: no such field of algorithm 'protonet'"),
    (["--param", "task.n_way=1:5"], "task.n_way: range 1..5 is outside the field's bounds"),
    (["--param", "algorithm.lr=1e-4:20:log"], "algorithm.lr: range 0.0001..20 is outside the field's bounds"),
    (["--param", "model.backbone="], "model.backbone: the list of choices is empty"),
    (["--param", "model.backbone=conv4,vgg"], "model.backbone: choice 'vgg' is refused"),
    (["--param", "task.n_way=9:3"], "task.n_way: the range's low (9) must be below its high (3)"),
    (["--param", "data.root=a,b"], "data.root: neither a numeric nor a choice field"),
    (["--param", "model.backbone=1:3"], "model.backbone: not a numeric field"),
    (["--param", "train.steps=2:5"], "train.steps: set by the sweep itself"),
    ([], "--param: name at least one field to search"),
    (["--param", "task.n_way=2:5", "--storage", "sqlite:////no/such/folder/x.db"], "sqlite:////no/such/folder/x.db"),
    (["--param", "task.n_way=2:5", "--storage", "not-a-url"], "not-a-url: not a storage URL"),
    (["--param", "task.n_way=2:5", "--storage", "postgresql://nobody@127.0.0.1:1/none"],
     "postgresql://nobody@127.0.0.1:1/none: the study storage cannot be opened"),
    (["--param", "task.n_way=2:5", "--pruner", "hyperband"], "--pruner must be one of median, halving, none"),
    (["--param", "task.n_way=2:5", "--trials", "0"], "--trials must be at least 1"),
    (["--param", "task.n_way=2:5", "--dataset", "/no/such/data"], "/no/such/data: dataset folder does not exist"),
])
def test_bad_input_is_refused_by_name_and_nothing_is_written(tmp_path, capsys, args, named):
    runs = tmp_path / "runs"
    # one 1-step trial if the check is missing: the test fails fast instead of sweeping
    assert main(["sweep", *TINY_FLAGS, "--runs-dir", str(runs), "--study", "bad", "--steps", "1", "--trials", "1",
                 *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and named in err, err
    assert not runs.exists()  # no run folder, no study database


def test_a_study_name_used_for_another_space_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs"
    first = build_space([dimension_from_text("algorithm.lr=1e-4:1e-2:log", "protonet")])
    open_study(SweepSettings(RunConfig(), first, 4, "taken", runs_root=runs))
    before = sorted(p.name for p in runs.iterdir())
    database = (runs / "sweeps" / "optuna.db").read_bytes()
    assert main(["sweep", *TINY_FLAGS, "--runs-dir", str(runs), "--study", "taken",
                 "--param", "algorithm.lr=1e-4:1e-1:log"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--study taken: this study already searches another space" in err, err
    assert "algorithm.lr=" in err
    assert sorted(p.name for p in runs.iterdir()) == before and (runs / "sweeps" / "optuna.db").read_bytes() == database


def test_show_of_a_missing_study_or_storage_names_it(tmp_path, capsys):
    assert main(["sweep", "show", "--runs-dir", str(tmp_path / "runs"), "--study", "nope"]) == 2
    assert "no study storage at" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # reading never creates a database
    open_study(SweepSettings(RunConfig(), build_space([dimension_from_text("task.n_way=2:5", "protonet")]), 2,
                             "there", runs_root=tmp_path / "runs"))
    assert main(["sweep", "show", "--runs-dir", str(tmp_path / "runs"), "--study", "nope"]) == 2
    assert "--study nope: no such study in sqlite:///" in capsys.readouterr().err


def test_the_space_file_takes_ranges_logs_and_choices():
    space = space_from_json({"algorithm.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                             "task.n_way": {"low": 2, "high": 6}, "model.backbone": ["conv4", "resnet12"],
                             "data.augment_flips": [True, False]}, "protonet")
    assert space.keys == ["algorithm.lr", "data.augment_flips", "model.backbone", "task.n_way"]
    by_key = {d.key: d for d in space.dimensions}
    assert by_key["algorithm.lr"].log and by_key["task.n_way"].kind == "int"
    assert by_key["model.backbone"].choices == ("conv4", "resnet12")
    assert dimension_from_text("data.augment_flips=true,false", "protonet").choices == (True, False)
    with pytest.raises(ConfigError, match="task.n_way: a range needs both low and high"):
        space_from_json({"task.n_way": {"low": 2}}, "protonet")
    with pytest.raises(ConfigError, match="task.val_n_way: a log range needs a low above 0"):
        space_from_json({"task.val_n_way": {"low": 0, "high": 5, "log": True}}, "protonet")
