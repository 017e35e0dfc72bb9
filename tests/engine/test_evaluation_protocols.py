"""Lake et al. 2015's within-alphabet protocol: episodes within one group, nested data only, CLI."""

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import DataConfig
from engine.data.dataset import load_data
from engine.errors import ConfigError, DatasetError
from engine.evaluation_protocols import WithinGroupSampler, folder_groups
from tests.conftest import write_dataset

OMNIGLOT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "omniglot"


def _nested_with_small_group(root: Path) -> Path:
    """group00 and group01 with 6 classes each, plus group_small with 2 classes (10 images each)."""
    write_dataset(root, n_classes=12, n_images=10, groups=2)
    write_dataset(root / "group_small", n_classes=2, n_images=10, seed=7)
    return root


@pytest.fixture(scope="module")
def nested_data(tmp_path_factory):
    root = _nested_with_small_group(tmp_path_factory.mktemp("within") / "data")
    return load_data(DataConfig(root=str(root), split_mode="ratio"))


def test_every_episode_takes_its_classes_from_one_group_and_both_big_groups_come_up(nested_data):
    ids = list(range(nested_data.store.n_classes))
    sampler = WithinGroupSampler(nested_data, ids, n_way=5, n_shot=1, n_query=1, seed=3)
    seen_groups = set()
    for _ in range(40):
        task = sampler.sample()
        groups = {nested_data.store.class_groups[int(c)] for c in task.class_ids}
        assert len(groups) == 1, groups
        assert len(task.class_ids) == 5 and len(task.support_x) == 5 and len(task.query_x) == 5
        assert set(task.support_index.tolist()).isdisjoint(task.query_index.tolist())  # another drawing
        seen_groups |= groups
    assert seen_groups == {"group00", "group01"}  # group_small (2 classes) cannot hold a 5-way episode
    assert sampler.skipped_groups == ["group_small"]


def test_the_same_seed_gives_the_same_episodes(nested_data):
    ids = list(range(nested_data.store.n_classes))
    first, second = (WithinGroupSampler(nested_data, ids, 5, 1, 1, seed=11) for _ in range(2))
    for _ in range(5):
        a, b = first.sample(), second.sample()
        assert a.class_ids.tolist() == b.class_ids.tolist()
        assert a.query_index.tolist() == b.query_index.tolist()


def test_too_few_characters_per_alphabet_is_one_clear_error(nested_data):
    ids = list(range(nested_data.store.n_classes))
    with pytest.raises(ConfigError, match="--n-way 7: the within-alphabet protocol needs an alphabet with 7 "
                                          "characters .* has 6"):
        WithinGroupSampler(nested_data, ids, n_way=7, n_shot=1, n_query=1, seed=0)


def test_a_flat_data_set_is_refused_naming_the_folder(tiny_flat):
    data = load_data(DataConfig(root=str(tiny_flat), split_mode="ratio"))
    with pytest.raises(ConfigError, match=f"needs a nested data set .*{tiny_flat} is flat"):
        WithinGroupSampler(data, list(range(data.store.n_classes)), 3, 1, 1, seed=0)
    with pytest.raises(DatasetError, match="needs a nested data set folder"):
        folder_groups(tiny_flat)


@pytest.fixture(scope="module")
def nested_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("within-run")
    train_root = write_dataset(base / "train", n_classes=12, n_images=10, groups=3, seed=1)
    run_dir = base / "run"
    assert main(["train", "--dataset", str(train_root), "--run-dir", str(run_dir), "--steps", "2",
                 "--val-every", "2", "--val-episodes", "2", "--n-way", "3", "--n-shot", "1", "--n-query", "2",
                 "--hidden-channels", "8", "--train-ratio", "0.5", "--val-ratio", "0.25", "--quiet"]) == 0
    return run_dir / "checkpoints" / "last.pt", train_root


def test_cli_within_alphabet_leaves_out_the_training_folders_alphabets(nested_run, tmp_path, capsys):
    checkpoint, train_root = nested_run  # its alphabets: group00, group01, group02
    evaluation_root = write_dataset(tmp_path / "eval", n_classes=12, n_images=10, groups=2, seed=5)
    write_dataset(evaluation_root / "Extra", n_classes=5, n_images=10, seed=9)  # an alphabet training lacks
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(evaluation_root), "--classes", "all",
                 "--protocol", "within-alphabet", "--exclude-groups-of", str(train_root),
                 "--n-way", "4", "--episodes", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["protocol"] == "within-alphabet" and report["n_way"] == 4 and report["n_shot"] == 1
    assert report["n_episodes"] == 30 and report["error_rate"] == pytest.approx(1 - report["accuracy"])
    evaluated_groups = {name.split("/")[0] for name in report["per_class_accuracy"]}
    assert evaluated_groups == {"Extra"}, evaluated_groups
    assert "without the 3 excluded group(s): 5 classes" in report["classes"]


def test_cli_within_alphabet_prints_the_error_rate(nested_run, tmp_path, capsys):
    checkpoint, _ = nested_run
    evaluation_root = _nested_with_small_group(tmp_path / "eval")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(evaluation_root), "--classes", "all",
                 "--protocol", "within-alphabet", "--exclude-groups", "group_small", "--n-way", "5",
                 "--episodes", "10"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("5-way 1-shot within-alphabet error rate on ") and "(95% CI, 10 episodes, seed 0)" in line


def test_cli_within_alphabet_on_a_flat_folder_is_one_line(nested_run, tiny_flat, capsys):
    checkpoint, _ = nested_run
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(tiny_flat),
                 "--protocol", "within-alphabet", "--n-way", "3", "--episodes", "2"]) != 0
    assert f"needs a nested data set (<root>/<alphabet>/<character>/<image>); {tiny_flat} is flat" in \
        capsys.readouterr().err


def test_evaluating_on_a_small_other_folder_needs_no_split_of_it(nested_run, tmp_path, capsys):
    """The run's ratios (0.5 / 0.25) would split 4 classes into 2 train, 1 val, 1 test, and 3 classes into
    2 / 1 / 0: a refusal once, though another folder's classes are chosen by what training saw, not by parts."""
    from engine.inspection import inspect_episodes

    checkpoint, _ = nested_run
    small = write_dataset(tmp_path / "three", n_classes=3, n_images=6, seed=3)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(small), "--n-way", "3",
                 "--n-shot", "1", "--n-query", "2", "--episodes", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_episodes"] == 4 and len(report["per_class_accuracy"]) == 3
    inspected = inspect_episodes(checkpoint, n_episodes=4, seed=0, dataset=str(small), n_way=3, n_shot=1, n_query=2)
    assert inspected.n_episodes == 4 and inspected.mean == pytest.approx(report["accuracy"])


@pytest.mark.slow
def test_within_alphabet_on_real_omniglot_small2_without_small1s_alphabets(tmp_path, capsys):
    if not OMNIGLOT.is_dir():
        pytest.skip(f"real Omniglot not found at {OMNIGLOT} (../shared/datasets/omniglot)")
    for name in ("images_background_small1", "images_background_small2"):
        with zipfile.ZipFile(OMNIGLOT / f"{name}.zip") as archive:
            archive.extractall(tmp_path)
    checkpoint = Path(__file__).resolve().parents[2] / "assets" / "demo_model.pt"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", str(tmp_path / "images_background_small2"),
                 "--protocol", "within-alphabet", "--exclude-groups-of", str(tmp_path / "images_background_small1"),
                 "--episodes", "40", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    groups = {name.split("/")[0] for name in report["per_class_accuracy"]}
    assert groups == {"Japanese_(katakana)", "Sanskrit", "Tagalog"}
    assert len(report["per_class_accuracy"]) == 106 and report["n_way"] == 20 and report["n_episodes"] == 40
    assert report["error_rate"] < 0.35  # the shipped model reads real handwriting: 22.1% over 1000 episodes
