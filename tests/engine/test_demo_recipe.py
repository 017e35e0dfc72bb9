"""assets/make_demo_model.py's recipes: what each source trains by default (no training here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from engine.config import BUILTIN_GLYPHS, ProtoNetConfig, SimpleShotConfig

SCRIPT = Path(__file__).resolve().parents[2] / "assets" / "make_demo_model.py"


def load_script():
    spec = importlib.util.spec_from_file_location("make_demo_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_glyph_only_recipe_is_simpleshot_with_elastic_warps_and_l2n() -> None:
    script = load_script()
    config = script.recipe(script.parse_args(["--source", "glyphs"]), None)
    assert isinstance(config.algorithm, SimpleShotConfig) and config.algorithm.centering is False
    assert config.algorithm.batch_size == 220
    assert config.data.root == BUILTIN_GLYPHS
    assert config.data.augment_elastic and config.data.augment_affine and config.data.augment_rotations
    assert config.train.seed == 0 and config.train.steps == 4000
    assert config.model.test_views == 1  # no gain from test-time views for the glyph recipe on the dev set


def test_the_shipped_omniglot_recipe_is_protonet_without_elastic_warps() -> None:
    script = load_script()
    config = script.recipe(script.parse_args([]), Path("/data/images_background_small1"))
    assert isinstance(config.algorithm, ProtoNetConfig)
    assert config.data.root == "/data/images_background_small1"
    assert config.data.augment_affine and config.data.augment_rotations and not config.data.augment_elastic
    assert (config.task.n_way, config.task.n_shot, config.task.n_query) == (20, 1, 10)
    assert config.model.test_views == 16
    assert config.train.precision == "fp32"  # the shipped figures are fp32 runs' (auto is bf16 on some CPUs)


def test_recipe_options_override_the_source_defaults() -> None:
    script = load_script()
    args = script.parse_args(["--source", "glyphs", "--algorithm", "protonet", "--no-elastic", "--seed", "3",
                              "--test-views", "8"])
    config = script.recipe(args, None)
    assert isinstance(config.algorithm, ProtoNetConfig)
    assert not config.data.augment_elastic and config.train.seed == 3 and config.model.test_views == 8
    simpleshot_on_omniglot = script.recipe(script.parse_args(["--algorithm", "simpleshot"]), Path("/s1"))
    assert isinstance(simpleshot_on_omniglot.algorithm, SimpleShotConfig)
    assert simpleshot_on_omniglot.algorithm.centering is True  # the default CL2N: L2N is the glyph recipe's alone
