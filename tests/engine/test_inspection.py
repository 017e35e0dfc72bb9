"""engine.inspection: the inspected episodes are evaluate's episodes, bins partition them, images come
from the store, and bad runs / arguments are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.data.dataset import load_data
from engine.errors import CheckpointError, ConfigError
from engine.evaluation import evaluate
from engine.inference import evaluate_checkpoint
from engine.inspection import EpisodeInspection, InspectedEpisode, inspect_episodes
from engine.training.checkpoint import load_algorithm
from tests.engine.helpers import tiny_config

torch.set_num_threads(1)

SHAPE = dict(n_way=3, n_shot=2, n_query=3)


@pytest.fixture(scope="module")
def run_dir(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.training.trainer import Trainer

    config = tiny_config(tiny_flat, "protonet", steps=2)
    config.train.val_every, config.train.val_episodes, config.train.num_threads = 2, 2, 1
    run = tmp_path_factory.mktemp("inspect") / "run"
    summary = Trainer(config, run_dir=run).run()
    assert summary.status == "finished", summary.message
    return run


@pytest.fixture(scope="module")
def inspection(run_dir: Path) -> EpisodeInspection:
    return inspect_episodes(run_dir, n_episodes=12, seed=3, **SHAPE)


def test_accuracies_equal_evaluate_on_the_runs_test_classes(run_dir: Path, inspection: EpisodeInspection) -> None:
    algorithm, checkpoint = load_algorithm(run_dir / "checkpoints" / "best.pt")
    data = load_data(checkpoint.config.data, split=checkpoint.split)
    result = evaluate(algorithm, data, part="test", episodes=12, seed=3, **SHAPE)
    assert len(set(inspection.accuracies)) > 1  # varied accuracies: the comparison is not trivially true
    assert inspection.accuracies == result.episode_accuracies
    assert (inspection.mean, inspection.ci95) == (result.accuracy, result.ci95)
    assert inspection.n_episodes == 12 and not inspection.stopped
    test_names = set(data.class_names("test"))
    assert all(set(e.class_names) <= test_names for e in inspection.episodes)
    # another seed gives other episodes (the seed is really used)
    other = inspect_episodes(run_dir, n_episodes=12, seed=4, **SHAPE)
    assert [e.query_index.tolist() for e in other.episodes] != [e.query_index.tolist() for e in inspection.episodes]


def test_accuracies_equal_evaluate_checkpoint_on_another_data_set(run_dir: Path, tiny_nested: Path) -> None:
    checkpoint = run_dir / "checkpoints" / "best.pt"
    inspected = inspect_episodes(checkpoint, n_episodes=6, seed=1, dataset=str(tiny_nested), **SHAPE)
    result, scope = evaluate_checkpoint(checkpoint, dataset=str(tiny_nested), episodes=6, seed=1, **SHAPE)
    assert inspected.accuracies == result.episode_accuracies
    assert inspected.scope == scope
    assert inspected.store.paths[int(inspected.episodes[0].query_index[0])].is_relative_to(tiny_nested)


def test_episode_contents_are_consistent(inspection: EpisodeInspection) -> None:
    n_way, n_shot, n_query = SHAPE["n_way"], SHAPE["n_shot"], SHAPE["n_query"]
    store = inspection.store
    for position, episode in enumerate(inspection.episodes):
        support, query = inspection.images(position)
        assert support.dtype == query.dtype == torch.uint8
        assert support.shape[0] == n_way * n_shot and query.shape[0] == n_way * n_query
        assert support.shape[0] + query.shape[0] == n_way * (n_shot + n_query)
        assert torch.equal(query, store.get(episode.query_index))
        # each image really belongs to the class its label names
        for indices, labels in ((episode.support_index, episode.support_y), (episode.query_index, episode.query_y)):
            true_names = [store.class_names[int(store.labels[i])] for i in indices]
            assert true_names == [episode.class_names[int(y)] for y in labels]
        assert episode.probabilities.shape == (n_way * n_query, n_way)
        assert torch.allclose(episode.probabilities.sum(dim=1), torch.ones(n_way * n_query), atol=1e-4)
        assert torch.equal(episode.predicted, episode.probabilities.argmax(dim=1))
        assert episode.accuracy == pytest.approx(float(episode.correct.float().mean()))
        assert episode.n_wrong == int((episode.predicted != episode.query_y).sum())
        support_paths, query_paths = inspection.image_paths(position)
        assert len(support_paths) == n_way * n_shot and all(p.is_file() for p in query_paths)


@pytest.mark.parametrize("n_bins", [1, 3, 10, 20])
def test_bins_cover_every_episode_exactly_once(inspection: EpisodeInspection, n_bins: int) -> None:
    bins = inspection.bins(n_bins)
    assert len(bins) == n_bins
    members = sorted(p for _, _, positions in bins for p in positions)
    assert members == list(range(inspection.n_episodes))
    for i, (low, high, positions) in enumerate(bins):
        for p in positions:
            accuracy = inspection.episodes[p].accuracy
            assert low - 1e-6 <= accuracy and (accuracy < high - 1e-6 or (i == n_bins - 1 and accuracy <= high))


def _fake(accuracies: list[float]) -> EpisodeInspection:
    empty = torch.empty(0, dtype=torch.long)
    episodes = [InspectedEpisode(i, [], empty, empty, empty, empty, empty, torch.empty(0, 0), a)
                for i, a in enumerate(accuracies)]
    return EpisodeInspection(Path("x.pt"), 0, "protonet", "", 5, 1, 15, 0, len(episodes), episodes, 0.0, 0.0,
                             store=None)


def test_bin_edges_hold_their_lower_edge_and_the_last_bin_holds_1() -> None:
    in_float32 = float(torch.tensor([14 / 20]).float().mean())  # 0.699999988, as evaluate computes 14/20
    assert in_float32 < 0.7
    inspection = _fake([0.0, 0.7, in_float32, 0.75, 1 / 3, 1.0, 0.05 * 3])
    bins = {round(low, 4): positions for low, _, positions in inspection.bins(20)}
    assert bins[0.0] == [0]
    assert bins[0.7] == [1, 2]          # 0.7 and float32 14/20 belong to [0.70, 0.75), not the bin below
    assert bins[0.75] == [3]
    assert bins[0.3] == [4]
    assert bins[0.95] == [5]            # 1.0 closes the last bin
    assert bins[0.15] == [6]            # 0.15000000000000002 is not pushed up a bin
    zoomed = inspection.bins(4, low=0.5)
    assert [len(p) for _, _, p in zoomed] == [3, 2, 1, 1]  # the 3 values below low go to the first bin
    with pytest.raises(ConfigError, match="n_bins"):
        inspection.bins(0)


def test_stop_and_progress(run_dir: Path) -> None:
    calls: list[tuple[int, int]] = []
    stopped = inspect_episodes(run_dir, n_episodes=10, progress=lambda d, t: calls.append((d, t)),
                               should_stop=lambda: len(calls) >= 3, **SHAPE)
    assert stopped.n_episodes == 3 and stopped.stopped
    assert calls == [(1, 10), (2, 10), (3, 10)]


def test_defaults_come_from_the_run(run_dir: Path) -> None:
    inspected = inspect_episodes(run_dir, n_episodes=2)
    assert (inspected.n_way, inspected.n_shot, inspected.n_query) == (3, 2, 3)  # tiny_config's task
    assert inspected.checkpoint.name == "best.pt" and inspected.algorithm == "protonet"
    assert inspect_episodes(run_dir, n_episodes=1, which="last").checkpoint.name == "last.pt"


def test_bad_runs_and_arguments_are_named(run_dir: Path, tmp_path: Path, tiny_nested: Path) -> None:
    with pytest.raises(CheckpointError, match="no such run folder or checkpoint file"):
        inspect_episodes(tmp_path / "missing", n_episodes=1)
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    with pytest.raises(CheckpointError, match="empty-run: the run folder has no checkpoint"):
        inspect_episodes(empty_run, n_episodes=1)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        inspect_episodes(broken, n_episodes=1)
    for kwargs, field in ((dict(n_episodes=0), "n_episodes"), (dict(n_way=1), "n_way"), (dict(n_shot=0), "n_shot"),
                          (dict(n_query=0), "n_query"), (dict(split="bogus"), "split")):
        with pytest.raises(ConfigError, match=field):
            inspect_episodes(run_dir, **{"n_episodes": 1, **kwargs})
    with pytest.raises(ConfigError, match="n_way=9: only 4 classes available in the run's test classes"):
        inspect_episodes(run_dir, n_episodes=1, n_way=9)
    with pytest.raises(ConfigError, match="split='val' needs the checkpoint's own data set"):
        inspect_episodes(run_dir, n_episodes=1, split="val", dataset=str(tiny_nested))
