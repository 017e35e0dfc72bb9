"""Every registered algorithm on tiny synthetic image tasks (no data folders).

Each class is a smooth random 28x28 pattern; its images are the pattern plus
Gaussian noise. Training classes 0..29, held-out classes 30..39.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.algorithms.base import Algorithm
from engine.algorithms.functional import FunctionalPredictor, eval_mode
from engine.algorithms.registry import ALGORITHMS, build_algorithm
from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError, DatasetError

torch.set_num_threads(1)

N_CLASSES, N_TRAIN_CLASSES, NOISE = 40, 30, 1.0
TRAIN_POOL, TEST_POOL = torch.arange(N_TRAIN_CLASSES), torch.arange(N_TRAIN_CLASSES, N_CLASSES)

# hyperparameters and steps for a short training run that clearly beats chance
SETTINGS: dict[str, tuple[dict[str, Any], int]] = {
    "protonet": ({}, 25),
    "maml": ({}, 20),
    "fomaml": ({}, 15),
    "reptile": ({"inner_lr": 0.01, "inner_steps": 3, "test_inner_steps": 10, "lr": 0.5}, 8),
    "matching": ({}, 25),
    "baseline": ({"batch_size": 32}, 60),
    "baseline++": ({"batch_size": 32, "lr": 0.003}, 50),
    "simpleshot": ({"batch_size": 32}, 50),
    "relation": ({"lr": 3e-3}, 40),
    "feat": ({}, 30),
    "meta_sgd": ({}, 20),
    "r2d2": ({}, 20),
    "meta_baseline": ({}, 20),
    "boil": ({}, 20),
    "tim": ({"batch_size": 32}, 50),
    "pt_map": ({"batch_size": 32}, 50),
    "laplacianshot": ({"batch_size": 32}, 50),
    "bd_cspn": ({"batch_size": 32}, 50),
    "transductive_finetuning": ({"batch_size": 32}, 50),
    "pmf": ({"lr": 1e-3, "finetune_steps": 3}, 25),
}


def patterns() -> Tensor:
    """[N_CLASSES, 1, 28, 28] smooth random class patterns."""
    low = torch.randn(N_CLASSES, 1, 7, 7, generator=torch.Generator().manual_seed(0))
    return F.interpolate(low, size=28, mode="bilinear", align_corners=False)


PATTERNS = patterns()


def noisy(classes: Tensor, per_class: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    x = PATTERNS[classes].repeat_interleave(per_class, 0)
    y = torch.arange(len(classes)).repeat_interleave(per_class)
    return x + NOISE * torch.randn(x.shape, generator=g), y


def make_task(pool: Tensor, g: torch.Generator, n_way: int = 5, n_shot: int = 1, n_query: int = 5) -> Task:
    classes = pool[torch.randperm(len(pool), generator=g)[:n_way]]
    support_x, support_y = noisy(classes, n_shot, g)
    query_x, query_y = noisy(classes, n_query, g)
    return Task(support_x, support_y, query_x, query_y, class_ids=classes)


def make_batch(algorithm: Algorithm, g: torch.Generator) -> list[Task] | ClassBatch:
    if algorithm.batch_kind == "classes":
        classes = TRAIN_POOL[torch.randint(N_TRAIN_CLASSES, (algorithm.config.batch_size,), generator=g)]
        x = PATTERNS[classes] + NOISE * torch.randn(len(classes), 1, 28, 28, generator=g)
        return ClassBatch(x, classes)
    return [make_task(TRAIN_POOL, g) for _ in range(2)]


def build(name: str, seed: int = 0, **overrides: Any) -> Algorithm:
    torch.manual_seed(seed)
    options = {**SETTINGS[name][0], **overrides}
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[name](**options))
    config.model.hidden_channels = 16
    return build_algorithm(config, N_TRAIN_CLASSES)


def train(algorithm: Algorithm, steps: int, seed: int = 1) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    metrics: dict[str, float] = {}
    for _ in range(steps):
        metrics = algorithm.meta_train_step(make_batch(algorithm, g))
    return metrics


def held_out_accuracy(algorithm: Algorithm, n_tasks: int = 5) -> float:
    g = torch.Generator().manual_seed(2)
    correct = total = 0
    for _ in range(n_tasks):
        task = make_task(TEST_POOL, g)
        probabilities = algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)
        correct += int((probabilities.argmax(1) == task.query_y).sum())
        total += len(task.query_y)
    return correct / total


def weights(algorithm: Algorithm) -> dict[str, Tensor]:
    return {f"{m}.{k}": v.detach().clone() for m, module in algorithm.modules().items()
            for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def trained() -> dict[str, Algorithm]:
    """Each algorithm after its short seeded training run (built lazily, shared by the tests)."""

    class Lazy(dict):
        def __missing__(self, name: str) -> Algorithm:
            algorithm = build(name)
            train(algorithm, SETTINGS[name][1])
            self[name] = algorithm
            return algorithm

    return Lazy()


ALL = sorted(ALGORITHMS)


def test_registry_covers_every_config() -> None:
    assert set(ALGORITHMS) == set(ALGORITHM_CONFIGS)
    assert build("fomaml").config.first_order is True
    assert build("baseline++").batch_kind == "classes"


@pytest.mark.parametrize("name", ALL)
def test_meta_train_step_returns_finite_metrics(name: str) -> None:
    algorithm = build(name)
    before = weights(algorithm)
    metrics = train(algorithm, 1)
    for key in ("loss", "accuracy", "lr"):
        assert isinstance(metrics[key], float) and torch.isfinite(torch.tensor(metrics[key])), key
    assert 0.0 <= metrics["accuracy"] <= 1.0
    after = weights(algorithm)
    assert any(not torch.equal(before[k], after[k]) for k in before), "a training step must change the weights"


@pytest.mark.parametrize("name", ALL)
def test_short_training_beats_chance_on_held_out_classes(name: str, trained) -> None:
    assert held_out_accuracy(trained[name]) > 0.6  # chance is 0.2


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n_way", [3, 5, 7])
def test_adapt_predict_gives_probabilities(name: str, n_way: int, trained) -> None:
    task = make_task(torch.arange(N_CLASSES), torch.Generator().manual_seed(3), n_way=n_way, n_shot=2)
    predictor = trained[name].adapt(task.support_x, task.support_y)
    probabilities = predictor.predict(task.query_x)
    assert predictor.n_classes == n_way
    assert probabilities.shape == (len(task.query_y), n_way)
    assert (probabilities >= 0).all()
    assert torch.allclose(probabilities.sum(1), torch.ones(len(task.query_y)), atol=1e-5)


# Each predictor's own contract: the metric ones adapt to one prototype per class, the mean of the support's
# embeddings; the ones that fine-tune a classifier (MAML, Reptile, Baseline) have no prototypes. All embed.
PROTOTYPE_PREDICTORS = {"protonet", "simpleshot", "matching"}
# transductive: the support class means in embed space, the starting prototypes of the inference
PROTOTYPE_PREDICTORS |= {"tim", "pt_map", "laplacianshot", "bd_cspn", "transductive_finetuning"}
NO_PROTOTYPES = {"maml", "fomaml", "reptile", "baseline", "baseline++"}
PROTOTYPE_PREDICTORS |= {"meta_baseline"}  # its centroids: the support class means (cosine is taken at predict)
PROTOTYPE_PREDICTORS |= {"pmf"}  # class means of the support embedded by its fine-tuned backbone copy
NO_PROTOTYPES |= {"meta_sgd", "boil", "r2d2"}  # adapted networks; R2D2's ridge weights are not class means
PROTOTYPE_PREDICTORS |= {"relation"}  # mean support feature maps, flattened as embed flattens them
ADAPTED_PROTOTYPES = {"feat"}  # one per class in embed space, the class means moved by the set-to-set attention


def test_every_algorithm_has_a_prototype_contract() -> None:
    kinds = (PROTOTYPE_PREDICTORS, NO_PROTOTYPES, ADAPTED_PROTOTYPES)
    assert set().union(*kinds) == set(ALL) and sum(map(len, kinds)) == len(ALL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n_way", [3, 5])
def test_each_predictor_embeds_and_gives_prototypes_where_that_is_its_contract(name: str, n_way: int,
                                                                               trained) -> None:
    task = make_task(torch.arange(N_CLASSES), torch.Generator().manual_seed(3), n_way=n_way, n_shot=2)
    predictor = trained[name].adapt(task.support_x, task.support_y)
    embedded = predictor.embed(task.query_x)
    assert embedded is not None and embedded.ndim == 2 and embedded.shape[0] == len(task.query_y)
    prototypes = predictor.prototypes()
    if name in NO_PROTOTYPES:
        assert prototypes is None
        return
    assert prototypes is not None and prototypes.shape == (n_way, embedded.shape[1])
    if name in ADAPTED_PROTOTYPES:
        return
    support = predictor.embed(task.support_x)
    means = torch.stack([support[task.support_y == c].mean(0) for c in range(n_way)])
    assert torch.allclose(prototypes, means, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_adapt_does_not_change_the_algorithm(name: str, trained) -> None:
    algorithm = trained[name]
    task = make_task(TEST_POOL, torch.Generator().manual_seed(4))
    before = weights(algorithm)
    algorithm.train(True)
    predictor = algorithm.adapt(task.support_x, task.support_y)
    predictor.predict(task.query_x)
    after = weights(algorithm)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert all(module.training for module in algorithm.modules().values()), "modes must be restored"


@pytest.mark.parametrize("name", ALL)
def test_predictor_state_round_trip(name: str, trained) -> None:
    algorithm = trained[name]
    task = make_task(TEST_POOL, torch.Generator().manual_seed(5))
    predictor = algorithm.adapt(task.support_x, task.support_y)
    buffer = io.BytesIO()
    torch.save(predictor.state(), buffer)
    buffer.seek(0)
    restored = algorithm.predictor_from_state(torch.load(buffer, weights_only=True))
    assert restored.n_classes == predictor.n_classes
    assert torch.equal(restored.predict(task.query_x), predictor.predict(task.query_x))


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_and_exact_resume(name: str, trained) -> None:
    original = copy.deepcopy(trained[name])
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    clone = build(name, seed=123)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    task = make_task(TEST_POOL, torch.Generator().manual_seed(6))
    expected = original.adapt(task.support_x, task.support_y).predict(task.query_x)
    assert torch.equal(clone.adapt(task.support_x, task.support_y).predict(task.query_x), expected)
    # optimiser state travels too: one more step (from the same random state: FEAT's dropout) gives the same weights
    batch = make_batch(original, torch.Generator().manual_seed(7))
    torch.manual_seed(7)
    original_metrics = original.meta_train_step(batch)
    torch.manual_seed(7)
    assert clone.meta_train_step(batch) == original_metrics
    for key, value in weights(original).items():
        assert torch.allclose(weights(clone)[key], value, atol=1e-6), key


@pytest.mark.parametrize("name", ["maml", "reptile", "baseline"])
def test_adapt_reports_progress(name: str, trained) -> None:
    task = make_task(TEST_POOL, torch.Generator().manual_seed(8))
    calls: list[tuple[int, int]] = []
    trained[name].adapt(task.support_x, task.support_y, steps=4, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("name", ["maml", "fomaml", "reptile"])
def test_zero_adaptation_steps_is_the_unadapted_model(name: str, trained) -> None:
    algorithm = trained[name]
    task = make_task(TEST_POOL, torch.Generator().manual_seed(9))
    probabilities = algorithm.adapt(task.support_x, task.support_y, steps=0).predict(task.query_x)
    with torch.no_grad():
        expected = algorithm.model(task.query_x).softmax(1)
    assert torch.allclose(probabilities, expected, atol=1e-6)
    adapted = algorithm.adapt(task.support_x, task.support_y, steps=2).predict(task.query_x)
    assert not torch.allclose(adapted, expected, atol=1e-4)


def test_maml_head_rule_for_other_class_counts(trained) -> None:
    algorithm = trained["maml"]
    g = torch.Generator().manual_seed(10)
    with torch.no_grad():
        few = make_task(TEST_POOL, g, n_way=3)
        logits = algorithm.model(few.query_x)
        assert torch.allclose(algorithm.adapt(few.support_x, few.support_y, steps=0).predict(few.query_x),
                              logits[:, :3].softmax(1), atol=1e-6)
        many = make_task(TEST_POOL, g, n_way=7)
        logits = algorithm.model(many.query_x)
        extended = torch.cat([logits, logits.mean(1, keepdim=True).expand(-1, 2)], 1)
        assert torch.allclose(algorithm.adapt(many.support_x, many.support_y, steps=0).predict(many.query_x),
                              extended.softmax(1), atol=1e-6)


def test_anil_adapts_only_the_head() -> None:
    algorithm = build("maml", anil=True)
    train(algorithm, 2)
    task = make_task(TEST_POOL, torch.Generator().manual_seed(11))
    predictor = algorithm.adapt(task.support_x, task.support_y, steps=3)
    assert isinstance(predictor, FunctionalPredictor)
    for name, parameter in algorithm.model.named_parameters():
        changed = not torch.equal(predictor.params[name], parameter.detach())
        assert changed == name.startswith("head."), name


def test_anil_meta_step_trains_the_backbone_through_the_outer_loop() -> None:
    for first_order in (False, True):
        algorithm = build("maml", anil=True, first_order=first_order)
        before = weights(algorithm)
        train(algorithm, 1)
        after = weights(algorithm)
        assert not torch.equal(before["backbone.blocks.0.0.weight"], after["backbone.blocks.0.0.weight"])
        assert not torch.equal(before["head.weight"], after["head.weight"])


def test_maml_batchnorm_uses_batch_statistics_in_every_mode() -> None:
    algorithm = build("maml")
    assert not any("running_mean" in key for key in weights(algorithm))
    x = make_task(TEST_POOL, torch.Generator().manual_seed(12)).query_x
    algorithm.train(True)
    with torch.no_grad():
        in_train = algorithm.model(x)
        algorithm.train(False)
        in_eval = algorithm.model(x)
    assert torch.equal(in_train, in_eval)


def test_baseline_plus_plus_uses_cosine_heads() -> None:
    from engine.algorithms.functional import CosineHead
    plain, cosine = build("baseline"), build("baseline++")
    assert isinstance(plain.head, torch.nn.Linear) and isinstance(cosine.head, CosineHead)
    task = make_task(TEST_POOL, torch.Generator().manual_seed(13))
    assert cosine.adapt(task.support_x, task.support_y, steps=2).state()["kind"] == "cosine"
    assert plain.adapt(task.support_x, task.support_y, steps=2).state()["kind"] == "linear"


def test_simpleshot_tracks_the_training_feature_mean() -> None:
    algorithm = build("simpleshot")
    assert torch.equal(algorithm.feature_mean.mean, torch.zeros_like(algorithm.feature_mean.mean))
    train(algorithm, 3)
    state = algorithm.state_dict()["modules"]["feature_mean"]
    assert int(state["batches"]) == 3
    assert state["mean"].abs().sum() > 0
    task = make_task(TEST_POOL, torch.Generator().manual_seed(14))
    predictor = algorithm.adapt(task.support_x, task.support_y)
    norms = predictor.embed(task.query_x).norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_simpleshot_without_centering_normalises_the_raw_features_l2n() -> None:
    centred, plain = build("simpleshot"), build("simpleshot", centering=False)
    train(centred, 3)
    train(plain, 3)  # same seeds: the same network and running mean; only the adaptation differs
    assert torch.equal(centred.feature_mean.mean, plain.feature_mean.mean)
    task = make_task(TEST_POOL, torch.Generator().manual_seed(14))
    with torch.no_grad(), eval_mode(plain.backbone):
        raw = plain.backbone(task.query_x)
    l2n = plain.adapt(task.support_x, task.support_y).embed(task.query_x)
    cl2n = centred.adapt(task.support_x, task.support_y).embed(task.query_x)
    assert torch.allclose(l2n, F.normalize(raw, dim=1), atol=1e-5)
    assert torch.allclose(cl2n, F.normalize(raw - centred.feature_mean.mean, dim=1), atol=1e-5)
    assert not torch.allclose(l2n, cl2n, atol=1e-3)


@pytest.mark.parametrize("name", ["protonet", "baseline"])
def test_wrong_batch_kind_is_rejected(name: str) -> None:
    algorithm = build(name)
    wrong = ClassBatch(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)) \
        if algorithm.batch_kind == "episodes" else [make_task(TRAIN_POOL, torch.Generator().manual_seed(0))]
    with pytest.raises(TypeError):
        algorithm.meta_train_step(wrong)


def test_build_algorithm_rejects_no_training_classes() -> None:
    with pytest.raises(ConfigError):
        build_algorithm(RunConfig(), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL)
def test_cuda_training_adaptation_and_transfer_to_cpu(name: str) -> None:
    algorithm = build(name).to("cuda")
    metrics = train(algorithm, 2)  # batches are built on the CPU; the algorithm moves them
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("loss", "accuracy", "lr"))
    task = make_task(TEST_POOL, torch.Generator().manual_seed(15))
    predictor = algorithm.adapt(task.support_x, task.support_y)
    probabilities = predictor.predict(task.query_x)
    assert probabilities.device.type == "cpu"
    assert torch.allclose(probabilities.sum(1), torch.ones(len(task.query_y)), atol=1e-5)
    restored = algorithm.predictor_from_state(predictor.state())
    assert torch.allclose(restored.predict(task.query_x), probabilities, atol=1e-6)
    on_cpu = build(name, seed=5)
    on_cpu.load_state_dict(algorithm.state_dict())
    expected = on_cpu.adapt(task.support_x, task.support_y).predict(task.query_x)
    assert torch.allclose(expected, probabilities, atol=2e-2)  # cuDNN uses TF32 convolutions


@pytest.mark.parametrize("name", ALL)
def test_support_set_with_a_missing_class_is_rejected(name: str) -> None:
    algorithm = build(name)
    x = torch.zeros(3, 1, 28, 28)
    with pytest.raises(DatasetError, match="class 1 has no image"):
        algorithm.adapt(x, torch.tensor([0, 2, 2]))
    with pytest.raises(DatasetError, match="one label per image"):
        algorithm.adapt(x, torch.tensor([0, 1]))


@pytest.mark.parametrize("name", ["protonet", "baseline"])
def test_adam_runs_fused_on_the_cpu_with_the_same_updates(name: str) -> None:
    fused, looped = build(name), build(name)
    for algorithm in (fused, looped):
        algorithm.configure_runtime()               # the runtime every run gets: fused Adam on CPU and CUDA
    groups = [g for optimizer in fused.optimizers().values() for g in optimizer.param_groups]
    assert groups and all(g["fused"] is True for g in groups)
    for optimizer in looped.optimizers().values():  # the for-loop update, as PyTorch's CPU default
        for group in optimizer.param_groups:
            group["fused"], group["foreach"] = None, False
    for step in range(4):  # the same losses step after step, so the same updates: compared through what the
        # networks compute, since a conv bias in front of a BatchNorm gets a zero gradient up to round-off, which
        # Adam's normalisation turns into different (and useless) steps for either summation order
        metrics = train(fused, 1, seed=step), train(looped, 1, seed=step)
        assert metrics[0]["loss"] == pytest.approx(metrics[1]["loss"], rel=1e-5, abs=1e-6)
    conv = next(m for m in fused.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert fused.optimizers() and conv.weight.grad is not None
