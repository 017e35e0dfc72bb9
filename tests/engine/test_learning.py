"""Each algorithm learns on the built-in glyph data: held-out-class accuracy well above chance.

One short seeded run per algorithm (Conv-4 with 32 filters, 5-way 5-shot), evaluated on
classes never seen in training. Chance is 20%.
"""

import pytest

from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.data.dataset import load_data
from engine.evaluation import evaluate
from engine.training.trainer import Trainer

# steps per algorithm: enough to clear the bar on 2 CPU cores in a few seconds each
STEPS = {"protonet": 60, "matching": 60, "maml": 60, "fomaml": 60, "reptile": 40,
         "baseline": 150, "baseline++": 150, "simpleshot": 150, "relation": 60, "feat": 60}
STEPS.update(dict.fromkeys(("tim", "pt_map", "laplacianshot", "bd_cspn", "transductive_finetuning"), 150))
STEPS.update({"meta_sgd": 60, "boil": 60, "r2d2": 60, "meta_baseline": 60, "pmf": 60})
THRESHOLD = 0.45


@pytest.fixture(scope="module")
def glyph_data(glyph_root):
    config = RunConfig()
    config.data.root = str(glyph_root)
    return load_data(config.data)


@pytest.mark.parametrize("name", sorted(ALGORITHM_CONFIGS))
def test_algorithm_learns_held_out_classes(name, glyph_data, glyph_root):
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[name]())
    config.data.root = str(glyph_root)
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 5, 5, 5, 2
    config.model.hidden_channels = 32
    config.train.steps, config.train.val_every, config.train.val_episodes = STEPS[name], 0, 10
    config.train.seed = 1
    trainer = Trainer(config, data=glyph_data)
    summary = trainer.run()
    assert summary.status == "finished", summary.message
    result = evaluate(trainer.algorithm, glyph_data, part="test", episodes=60, n_way=5, n_shot=5, n_query=5, seed=3)
    assert result.accuracy > THRESHOLD, f"{name}: {result.accuracy:.3f} on held-out classes"
