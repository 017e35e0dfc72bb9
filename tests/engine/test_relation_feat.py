"""Relation Networks and FEAT: checkpoints reproduce predictions, the adapt session serves them, bad input is
named in one line, and (when the bench-only peer easyfsl 1.5.0 is installed) the maths equal easyfsl's.

Learning on the built-in glyphs is covered by tests/engine/test_learning.py (parametrised over every
registered algorithm), the generic contracts by tests/engine/test_algorithms.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from engine.algorithms.registry import build_algorithm
from engine.config import ALGORITHM_CONFIGS, RunConfig, validate
from engine.data.dataset import load_data
from engine.data.preprocess import Preprocessing
from engine.data.splits import ClassSplit
from engine.errors import CheckpointError, ConfigError
from engine.sessions import AdaptSession, list_dropped
from engine.training.checkpoint import load_algorithm, save_checkpoint
from engine.training.trainer import Trainer

from .helpers import tiny_config

torch.set_num_threads(1)
NAMES = ["relation", "feat"]
BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def runs(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4-step run of each algorithm on the synthetic folder; name -> its last checkpoint."""
    folder = tmp_path_factory.mktemp("relation-feat-runs")
    found = {}
    for name in NAMES:
        trainer = Trainer(tiny_config(tiny_flat, algorithm=name, steps=4), run_dir=folder / name)
        summary = trainer.run()
        assert summary.status == "finished", summary.message
        found[name] = folder / name / "checkpoints" / "last.pt"
    return found


@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_alone_reproduces_the_predictions_of_its_learned_module(name, runs, tiny_flat):
    loaded, checkpoint = load_algorithm(runs[name])
    learned = {"relation": "relation", "feat": "attention"}[name]
    assert learned in loaded.modules()
    task = load_data(checkpoint.config.data).episodes("test", 3, 2, 3, seed=5).sample()
    got = loaded.adapt(task.support_x, task.support_y).predict(task.query_x)
    again, _ = load_algorithm(runs[name])
    assert torch.equal(again.adapt(task.support_x, task.support_y).predict(task.query_x), got)
    # the learned module is part of the checkpoint: with a freshly initialised one, predictions differ
    torch.manual_seed(0)
    fresh = build_algorithm(checkpoint.config, checkpoint.n_train_classes)
    fresh.backbone.load_state_dict(loaded.backbone.state_dict())
    fresh.train(False)
    assert not torch.allclose(fresh.adapt(task.support_x, task.support_y).predict(task.query_x), got, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_the_adapt_session_adapts_a_checkpoint_and_predicts(name, runs, tiny_flat):
    session = AdaptSession()
    session.load_model(runs[name])
    for cls in ("class000", "class004"):
        listing = list_dropped(sorted((tiny_flat / cls).glob("*.png"))[:2])
        session.add_support_images(session.add_class(cls).uid, listing, session.decode(listing))
    queries = sorted((tiny_flat / "class000").glob("*.png"))[5:7]
    listing = list_dropped(queries)
    session.add_test_images(listing, queries, session.decode(listing))
    assert session.adapts_in_gui_thread()  # one-pass adaptation
    output = session.adapt_now()
    assert output.query_probs.shape == (2, 2)
    assert torch.allclose(output.query_probs.sum(1), torch.ones(2), atol=1e-5)
    assert sorted(session.predictions()) == sorted(map(str, queries))


def test_relation_networks_on_a_backbone_without_feature_maps_name_the_field():
    config = RunConfig(algorithm=ALGORITHM_CONFIGS["relation"]())
    config.model.backbone = "mlp"
    with pytest.raises(ConfigError, match=r"^model\.backbone: Relation Networks compare feature maps"):
        build_algorithm(config, n_train_classes=4)


def test_an_unknown_relation_loss_names_the_field():
    config = RunConfig(algorithm=ALGORITHM_CONFIGS["relation"](loss="hinge"))
    with pytest.raises(ConfigError, match=r"algorithm\.loss"):
        validate(config)
    with pytest.raises(ConfigError, match=r"algorithm\.loss"):
        build_algorithm(config, n_train_classes=4)


@pytest.mark.parametrize("name,learned,message", [
    ("relation", "relation", "relation module was trained on feature maps of 16 channels, but this "
                                        "backbone (model.backbone, model.hidden_channels) gives 8"),
    ("feat", "attention", "attention module was trained on features of size 16, but this backbone"),
])
def test_a_learned_module_of_another_backbone_is_refused_naming_file_weight_and_fields(name, learned, message,
                                                                                     tmp_path):
    """A checkpoint whose relation (attention) module was trained on another backbone than its own: the
    loader names the file and the weight; loading the state directly names the mismatch and the fields."""
    wide, narrow = RunConfig(algorithm=ALGORITHM_CONFIGS[name]()), RunConfig(algorithm=ALGORITHM_CONFIGS[name]())
    wide.model.hidden_channels, narrow.model.hidden_channels = 16, 8
    donor, model = build_algorithm(wide, n_train_classes=4), build_algorithm(narrow, n_train_classes=4)
    state = model.state_dict()
    state["modules"][learned] = donor.state_dict()["modules"][learned]
    with pytest.raises(ValueError) as raised:
        model.load_state_dict(state)
    assert message in str(raised.value) and "\n" not in str(raised.value)

    path = save_checkpoint(tmp_path / "mixed.pt", model, narrow, ClassSplit(train=["a", "b", "c", "d"], val=["e"],
                                                                             test=["f"]),
                           Preprocessing(image_size=28, channels=1), step=1, n_train_classes=4)
    payload = torch.load(path, weights_only=True)
    payload["algorithm"]["modules"][learned] = donor.state_dict()["modules"][learned]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"mixed\.pt: weight {learned}\.\S+ has shape"):
        load_algorithm(path)


@pytest.mark.parametrize("name", NAMES)
def test_the_maths_equal_easyfsl(name):
    """The bench's maths checks on one small random episode: scores/probabilities, loss, gradients
    (and the relation module's BatchNorm statistics) within float32 round-off of easyfsl 1.5.0."""
    pytest.importorskip("easyfsl.methods", reason="easyfsl 1.5.0 is a bench-only peer: bench/install_peers.sh")
    sys.path.insert(0, str(BENCH))
    try:
        import bench_relation_feat_vs_easyfsl as bench
        import common
        import easyfsl.methods as easyfsl_methods
        import easyfsl.modules as easyfsl_modules
    finally:
        sys.path.remove(str(BENCH))
    device = torch.device("cpu")
    with common.strict_fp32():
        config = common.run_config(ALGORITHM_CONFIGS[name](), n_way=3, n_shot=2, n_query=3, meta_batch=1,
                                   device=device, seed=0)
        config.model.hidden_channels, config.train.precision = 16, "fp32"
        ours = common.build_ours(config, device, seed=0)
        ours.meta_train_step(common.random_tasks(1, n_way=3, n_shot=2, n_query=3, seed=1, device=device))
        if name == "relation":
            peer, checks = bench.relation_peer(ours, easyfsl_methods), bench.relation_checks
        else:
            peer, checks = bench.feat_peer(ours, easyfsl_methods, easyfsl_modules), bench.feat_checks
        (task,) = common.random_tasks(1, n_way=3, n_shot=2, n_query=3, seed=2, device=device)
        results = checks(ours, peer, task)
    assert len(results) >= 4
    for label, value in results.items():
        assert value <= bench.tolerance(label), f"{label}: {value:.3g}"
