"""EpisodeSampler and ClassBatchSampler invariants on an in-memory store (no files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.data.preprocess import Preprocessing
from engine.data.sampler import ClassBatchSampler, EpisodeSampler
from engine.data.store import ImageStore
from engine.errors import ConfigError

torch.set_num_threads(1)

SIZE = 4
PREP = Preprocessing(image_size=SIZE, channels=1)


def make_store(counts: list[int]) -> ImageStore:
    """Class c has counts[c] images; image i is a distinct pattern (pixel [0,0] = i, [0,1] = 255 - i)."""
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])
    n = len(labels)
    assert n <= 200
    cache = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.uint8)
    cache[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    cache[:, 0, 0, 1] = 255 - torch.arange(n, dtype=torch.uint8)
    return ImageStore(class_names=[f"g/c{c}" for c in range(len(counts))],
                      class_groups=["g"] * len(counts), labels=labels,
                      paths=[Path(f"/none/{i}.png") for i in range(n)], preprocessing=PREP,
                      cache=cache, cache_slots=torch.arange(n))


def image_ids(x: torch.Tensor) -> torch.Tensor:
    """Recover the store index from normalised images built by make_store."""
    raw = ((x[:, 0, 0, 0] * 0.5 + 0.5) * 255).round().long()
    return raw


def test_episode_shapes_labels_and_disjointness() -> None:
    store = make_store([10] * 8)
    class_ids = [1, 2, 3, 5, 6, 7]
    sampler = EpisodeSampler(store, class_ids, PREP, n_way=4, n_shot=2, n_query=3, seed=0)
    for _ in range(20):
        task = sampler.sample()
        assert task.support_x.shape == (8, 1, SIZE, SIZE) and task.query_x.shape == (12, 1, SIZE, SIZE)
        assert task.support_x.dtype == torch.float32
        assert task.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
        assert torch.bincount(task.query_y).tolist() == [3, 3, 3, 3]
        assert task.query_y.tolist() == sorted(task.query_y.tolist())  # class-major
        assert len(set(task.class_ids.tolist())) == 4
        assert set(task.class_ids.tolist()) <= set(class_ids)
        support, query = set(task.support_index.tolist()), set(task.query_index.tolist())
        assert len(support) == 8 and len(query) == 12 and not support & query
        # every image belongs to the class its label points to
        assert torch.equal(store.labels[task.support_index], task.class_ids[task.support_y])
        assert torch.equal(store.labels[task.query_index], task.class_ids[task.query_y])
        # the pixels are those of the indexed images, normalised
        assert torch.equal(image_ids(task.support_x), task.support_index)
        assert torch.allclose(task.query_x, PREP.normalize(store.get(task.query_index)))
        assert task.n_way == 4


def test_same_seed_same_episodes_other_seed_differs() -> None:
    store = make_store([6] * 10)

    def run(seed: int) -> list[list[int]]:
        sampler = EpisodeSampler(store, range(10), PREP, n_way=5, n_shot=1, n_query=2, seed=seed)
        return [torch.cat([t.support_index, t.query_index]).tolist() for t in sampler.sample_batch(5)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_all_classes_and_images_get_used() -> None:
    store = make_store([5] * 6)
    sampler = EpisodeSampler(store, range(6), PREP, n_way=2, n_shot=1, n_query=1, seed=1)
    seen_classes, seen_images = set(), set()
    for task in sampler.sample_batch(200):
        seen_classes |= set(task.class_ids.tolist())
        seen_images |= set(task.support_index.tolist()) | set(task.query_index.tolist())
    assert seen_classes == set(range(6)) and seen_images == set(range(30))


def test_small_classes_are_left_out_and_named() -> None:
    store = make_store([6, 3, 6, 6, 2, 6])
    sampler = EpisodeSampler(store, range(6), PREP, n_way=3, n_shot=1, n_query=5, seed=0, part="train")
    assert sampler.left_out == ["g/c1", "g/c4"]
    assert sampler.warning is not None
    assert "left out 2 class(es)" in sampler.warning and "fewer than 6 images" in sampler.warning
    assert "g/c1 (3)" in sampler.warning and "g/c4 (2)" in sampler.warning
    assert sampler.n_classes == 4
    for task in sampler.sample_batch(30):
        assert not {1, 4} & set(task.class_ids.tolist())


def test_too_few_usable_classes_is_a_config_error() -> None:
    store = make_store([6, 3, 6])
    with pytest.raises(ConfigError) as info:
        EpisodeSampler(store, range(3), PREP, n_way=3, n_shot=1, n_query=5, seed=0, part="val")
    message = str(info.value)
    assert "task.n_way" in message and "val" in message and "only 2" in message


def test_unequal_class_sizes_sample_within_each_class() -> None:
    store = make_store([3, 40, 7, 3])
    sampler = EpisodeSampler(store, range(4), PREP, n_way=4, n_shot=1, n_query=2, seed=3)
    for task in sampler.sample_batch(50):
        assert torch.equal(store.labels[task.query_index], task.class_ids[task.query_y])
        assert len(set(task.query_index.tolist()) | set(task.support_index.tolist())) == 12


def test_flip_augmentation_is_seeded_and_mirrors_images() -> None:
    store = make_store([8] * 5)
    kwargs = dict(n_way=5, n_shot=2, n_query=2, seed=4)
    plain = EpisodeSampler(store, range(5), PREP, **kwargs).sample()  # type: ignore[arg-type]
    flipped_a = EpisodeSampler(store, range(5), PREP, augment=True, flips=True, **kwargs).sample()  # type: ignore[arg-type]
    flipped_b = EpisodeSampler(store, range(5), PREP, augment=True, flips=True, **kwargs).sample()  # type: ignore[arg-type]
    assert torch.equal(plain.support_index, flipped_a.support_index)  # same episode
    assert torch.equal(flipped_a.support_x, flipped_b.support_x)  # same augmentation
    x, original = torch.cat([flipped_a.support_x, flipped_a.query_x]), torch.cat([plain.support_x, plain.query_x])
    mirrored = torch.tensor([torch.allclose(a, b.flip(-1), atol=1e-6) for a, b in zip(x, original)])
    unchanged = torch.tensor([torch.allclose(a, b, atol=1e-6) for a, b in zip(x, original)])
    assert bool((mirrored | unchanged).all()) and mirrored.any() and unchanged.any()


def test_flags_without_augment_change_nothing() -> None:
    store = make_store([8] * 5)
    plain = EpisodeSampler(store, range(5), PREP, 5, 1, 1, seed=2).sample()
    off = EpisodeSampler(store, range(5), PREP, 5, 1, 1, seed=2, flips=True, color_jitter=True).sample()
    assert torch.equal(plain.support_x, off.support_x)


def test_color_jitter_changes_pixels_within_range() -> None:
    store = make_store([8] * 5)
    plain = EpisodeSampler(store, range(5), PREP, 5, 2, 2, seed=2).sample()
    jittered = EpisodeSampler(store, range(5), PREP, 5, 2, 2, seed=2, augment=True, color_jitter=True).sample()
    assert not torch.equal(plain.query_x, jittered.query_x)
    assert jittered.query_x.min() >= -1.0 and jittered.query_x.max() <= 1.0


def test_episode_sampler_state_resumes_sequence() -> None:
    store = make_store([6] * 8)
    sampler = EpisodeSampler(store, range(8), PREP, 3, 1, 2, seed=5, augment=True, flips=True)
    sampler.sample_batch(3)
    state = sampler.state_dict()
    expected = sampler.sample()
    fresh = EpisodeSampler(store, range(8), PREP, 3, 1, 2, seed=0, augment=True, flips=True)
    fresh.load_state_dict(state)
    got = fresh.sample()
    assert torch.equal(got.query_index, expected.query_index) and torch.equal(got.query_x, expected.query_x)


def test_class_batches_remap_labels_and_cover_each_pass() -> None:
    store = make_store([4, 5, 6, 5])
    class_ids = [1, 3]
    sampler = ClassBatchSampler(store, class_ids, PREP, batch_size=5, seed=0)
    assert sampler.n_classes == 2
    seen: list[int] = []
    for _ in range(2):  # one pass over the 10 images
        batch = sampler.sample()
        assert batch.x.shape == (5, 1, SIZE, SIZE) and batch.y.dtype == torch.long
        ids = image_ids(batch.x)
        assert torch.equal(torch.tensor(class_ids)[batch.y], store.labels[ids])
        seen += ids.tolist()
    assert sorted(seen) == list(range(4, 9)) + list(range(15, 20))


def test_class_batches_are_seeded() -> None:
    store = make_store([4, 5, 6])
    a = ClassBatchSampler(store, [0, 1, 2], PREP, batch_size=4, seed=3)
    b = ClassBatchSampler(store, [0, 1, 2], PREP, batch_size=4, seed=3)
    c = ClassBatchSampler(store, [0, 1, 2], PREP, batch_size=4, seed=9)
    xs = [a.sample().x for _ in range(6)]
    assert all(torch.equal(x, b.sample().x) for x in xs)
    assert not all(torch.equal(x, c.sample().x) for x in xs)


def test_class_batch_larger_than_data_draws_with_replacement() -> None:
    store = make_store([2, 2])
    batch = ClassBatchSampler(store, [0, 1], PREP, batch_size=9, seed=0).sample()
    assert batch.x.shape[0] == 9 and set(batch.y.tolist()) <= {0, 1}


def bar_store() -> tuple[ImageStore, Preprocessing]:
    """Two classes of five 28 px images: a dark 8 x 4 bar on white."""
    cache = torch.full((10, 1, 28, 28), 255, dtype=torch.uint8)
    cache[:, :, 10:18, 12:16] = 0
    prep = Preprocessing(image_size=28, channels=1)
    store = ImageStore(class_names=["a", "b"], class_groups=[None, None],
                       labels=torch.tensor([0] * 5 + [1] * 5), paths=[Path(f"/none/{i}.png") for i in range(10)],
                       preprocessing=prep, cache=cache, cache_slots=torch.arange(10))
    return store, prep


def test_affine_augmentation_moves_ink_but_keeps_background_and_seed() -> None:
    store, prep = bar_store()
    plain = EpisodeSampler(store, [0, 1], prep, 2, 2, 3, seed=1).sample()
    moved_a = EpisodeSampler(store, [0, 1], prep, 2, 2, 3, seed=1, augment=True, affine=True).sample()
    moved_b = EpisodeSampler(store, [0, 1], prep, 2, 2, 3, seed=1, augment=True, affine=True).sample()
    assert torch.equal(moved_a.query_x, moved_b.query_x)
    assert not torch.allclose(moved_a.query_x, plain.query_x, atol=1e-3)
    assert torch.allclose(moved_a.query_x[:, :, 0, 0], plain.query_x[:, :, 0, 0], atol=1e-5)  # background stays
    ink = (moved_a.query_x < 0).float().sum(dim=(1, 2, 3))
    assert bool(((ink > 16) & (ink < 64)).all())  # the bar is still there, roughly its size (32 px)


@pytest.mark.parametrize("affine", [False, True])
def test_elastic_warps_bend_ink_smoothly_keep_background_and_follow_the_seed(affine: bool) -> None:
    store, prep = bar_store()
    def draw(elastic: bool, seed: int = 1) -> torch.Tensor:
        return EpisodeSampler(store, [0, 1], prep, 2, 2, 3, seed=seed, augment=True, affine=affine,
                              elastic=elastic).sample().query_x
    plain, bent, again, other = draw(False), draw(True), draw(True), draw(True, seed=2)
    assert torch.equal(bent, again) and not torch.allclose(bent, other, atol=1e-3)
    assert not torch.allclose(bent, plain, atol=1e-3)  # the warp moved ink
    assert torch.allclose(bent[:, :, 0, 0], plain[:, :, 0, 0], atol=1e-5)  # background stays
    ink = (bent < 0).float().sum(dim=(1, 2, 3))
    assert bool(((ink > 16) & (ink < 64)).all())  # a bent bar, not a torn or vanished one (32 px)
    rows = (bent < 0).any(dim=3).float().sum(dim=(1, 2))
    assert bool(((rows >= 5) & (rows <= 14)).all())  # still about 8 rows tall: small, smooth displacements


def test_elastic_warps_are_off_unless_asked_and_count_as_augmentation() -> None:
    from engine.config import DataConfig
    from engine.training.sampling import augments

    store, prep = bar_store()
    unaugmented = EpisodeSampler(store, [0, 1], prep, 2, 2, 3, seed=1, augment=False, elastic=True).sample()
    plain = EpisodeSampler(store, [0, 1], prep, 2, 2, 3, seed=1).sample()
    assert torch.equal(unaugmented.query_x, plain.query_x)  # validation / test episodes are never warped
    assert augments(DataConfig(augment_elastic=True)) and not augments(DataConfig())
    bent = ClassBatchSampler(store, [0, 1], prep, batch_size=6, seed=0, augment=True, elastic=True).sample()
    straight = ClassBatchSampler(store, [0, 1], prep, batch_size=6, seed=0).sample()
    assert torch.equal(bent.y, straight.y) and not torch.allclose(bent.x, straight.x, atol=1e-3)
