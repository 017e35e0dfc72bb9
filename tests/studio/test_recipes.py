"""The algorithm form's recipes for photos: picked with the keyboard, they set the algorithm, the pre-trained
backbone and the Data tab's image size and colour, keeping the data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.algorithms.recipes import RECIPES, apply_recipe
from engine.config import RunConfig
from engine.errors import ConfigError
from tests.conftest import write_dataset
from tests.studio.conftest import wait_data


def test_apply_recipe_sets_the_pipeline_and_keeps_the_rest() -> None:
    config = RunConfig()
    config.data.root, config.task.n_shot = "/photos", 5
    pmf = apply_recipe(config, "pmf")
    assert (pmf.algorithm.name, pmf.algorithm.finetune_steps, pmf.algorithm.lr) == ("pmf", 20, 1e-5)
    assert (pmf.model.backbone, pmf.model.weights_path) == ("resnet50", "torchvision")
    assert (pmf.data.image_size, pmf.data.channels, pmf.data.root, pmf.task.n_shot) == (224, 3, "/photos", 5)
    with pytest.raises(ConfigError, match="recipe: unknown recipe 'nope'"):
        apply_recipe(config, "nope")


def test_choosing_a_recipe_fills_the_forms_and_the_data_tab(window, qtbot, tmp_path: Path) -> None:
    window.dataset_panel.set_root(str(write_dataset(tmp_path / "small", n_classes=8, n_images=4)))
    wait_data(qtbot, window)
    combo = window.algorithm_panel.recipe_combo
    assert [combo.itemData(i) for i in range(1, combo.count())] == [r.key for r in RECIPES]
    combo.setFocus()
    QTest.keyClick(combo, Qt.Key.Key_Down)  # the first recipe: frozen ImageNet features
    config = window.current_config()
    assert (config.algorithm.name, config.algorithm.meta_train, config.algorithm.finetune_steps) == ("pmf", False, 0)
    assert (config.model.backbone, config.model.weights_path) == ("resnet18", "torchvision")
    assert (config.data.image_size, config.data.channels) == (224, 3)
    assert config.data.root == str(tmp_path / "small")
    assert combo.currentIndex() == 0  # the prompt again: a recipe is an action, the forms show its result
    wait_data(qtbot, window)
