"""Algorithm panel: which few-shot algorithm, and its hyperparameters.

The algorithm list is the registry's (:data:`engine.algorithms.registry.ALGORITHMS`, each
with its config's title and one-line summary), so a newly registered algorithm is offered
with no edit here; the forms for the task, algorithm, model and train sections
are generated from the config dataclasses (see :mod:`studio.widgets.config_form`).
They show the fields declared ``basic`` (way, shot, learning rate, backbone, steps); the
"Advanced settings" toggle shows the rest (remembered across launches). Fields that do
nothing for the chosen algorithm or device (MAML's vmap chunk for ProtoNet, CUDA graphs
without a CUDA device) are hidden; their values are kept.
Presets are RunConfig JSON files (``RunConfig.to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout,
                               QWidget)

from engine.api import (ALGORITHM_CONFIGS, ALGORITHMS, RECIPES, ConfigError, ModelConfig, RunConfig, TaskConfig,
                        TrainConfig)
from studio import settings as st
from studio.widgets.config_form import ConfigForm
from studio.widgets.fields import AdvancedToggle

SECTIONS = ("task", "algorithm", "model", "train")
SECTION_TITLES = {"task": "Episodes (task)", "algorithm": "Algorithm hyperparameters", "model": "Backbone (model)",
                  "train": "Training loop"}


class PresetError(ConfigError):
    """A preset file cannot be read; the message names the file (and the field)."""


def read_preset(path: str | Path) -> RunConfig:
    """Parse a preset JSON file into a validated RunConfig; PresetError naming the file and field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PresetError(f"{path}: cannot read the preset ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PresetError(f"{path}: not a JSON preset ({error})") from None
    try:
        return RunConfig.from_dict(raw)
    except ConfigError as error:
        raise PresetError(f"{path}: {error}") from None


def write_preset(path: str | Path, config: RunConfig) -> Path:
    from engine.api import atomic_write_json

    return atomic_write_json(path, config.to_dict())


def algorithm_summary(name: str) -> str:
    """What the registered algorithm ``name`` does (its config's ``summary``) and its paper (``Algorithm.paper``)."""
    summary = ALGORITHM_CONFIGS[name].summary.strip()
    paper = ALGORITHMS[name].paper.strip()
    return f"{summary} Paper: {paper}." if paper else summary


class AlgorithmPanel(QWidget):
    """Choose the algorithm and edit the task / algorithm / model / train hyperparameters."""

    config_changed = Signal()
    preset_loaded = Signal(object)   # RunConfig
    recipe_chosen = Signal(str)      # a key of engine.algorithms.recipes.RECIPES
    error = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device = "cpu"
        self.algorithm_combo = QComboBox()
        self.algorithm_combo.setObjectName("algorithm")
        for name in ALGORITHMS:
            cls = ALGORITHM_CONFIGS[name]
            self.algorithm_combo.addItem(cls.title or name, name)
            self.algorithm_combo.setItemData(self.algorithm_combo.count() - 1, algorithm_summary(name),
                                             Qt.ItemDataRole.ToolTipRole)
        self.recipe_combo = self._recipe_combo()
        self.summary_label = QLabel()
        self.summary_label.setObjectName("algorithm_summary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setStyleSheet("color: #505050;")
        self.forms: dict[str, ConfigForm] = {
            "task": ConfigForm("task", TaskConfig),
            "algorithm": ConfigForm("algorithm", ALGORITHM_CONFIGS["protonet"]),
            "model": ConfigForm("model", ModelConfig),
            "train": ConfigForm("train", TrainConfig, exclude=("device",)),
        }
        for form in self.forms.values():
            form.changed.connect(self.config_changed)
        self.algorithm_combo.currentIndexChanged.connect(self._algorithm_changed)
        self.advanced_toggle = AdvancedToggle(st.KEY_ADVANCED_ALGORITHM, list(self.forms.values()))

        self.save_button = QPushButton("Save preset…")
        self.save_button.setToolTip("Save every setting (data, algorithm, model, training) as a JSON preset.")
        self.load_button = QPushButton("Load preset…")
        self.load_button.setToolTip("Load a JSON preset saved earlier (or a run's config.json).")
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("Reset the hyperparameters of this panel to the defaults.")
        self.reset_button.clicked.connect(self.reset_defaults)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        top = QHBoxLayout()
        top.addWidget(QLabel("Algorithm"))
        top.addWidget(self.algorithm_combo, 1)
        layout.addLayout(top)
        recipes = QHBoxLayout()
        recipes.addWidget(QLabel("Recipe"))
        recipes.addWidget(self.recipe_combo, 1)
        layout.addLayout(recipes)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.advanced_toggle)
        for section in SECTIONS:
            box = QGroupBox(SECTION_TITLES[section])
            box_layout = QVBoxLayout(box)
            box_layout.setContentsMargins(4, 8, 4, 4)
            box_layout.addWidget(self.forms[section])
            layout.addWidget(box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.save_button)
        buttons.addStretch(1)
        buttons.addWidget(self.reset_button)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self._algorithm_changed()

    # -- recipes -------------------------------------------------------------
    def _recipe_combo(self) -> QComboBox:
        """Whole pipelines for photos in one choice; choosing one emits ``recipe_chosen`` and shows the prompt again."""
        combo = QComboBox()
        combo.setObjectName("recipe")
        combo.addItem("Choose a recipe for photos…", "")
        for recipe in RECIPES:
            combo.addItem(recipe.title, recipe.key)
            combo.setItemData(combo.count() - 1, recipe.summary, Qt.ItemDataRole.ToolTipRole)
        combo.activated.connect(self._recipe_activated)
        return combo

    def _recipe_activated(self, index: int) -> None:
        key = self.recipe_combo.itemData(index)
        self.recipe_combo.setCurrentIndex(0)
        if key:
            self.recipe_chosen.emit(key)

    # -- algorithm ----------------------------------------------------------
    def algorithm_name(self) -> str:
        return self.algorithm_combo.currentData()

    def set_algorithm(self, name: str) -> None:
        index = self.algorithm_combo.findData(name)
        if index < 0:
            raise ConfigError(f"algorithm.name: unknown algorithm {name!r}")
        self.algorithm_combo.setCurrentIndex(index)

    def _algorithm_changed(self, *args: Any) -> None:
        cls = ALGORITHM_CONFIGS[self.algorithm_name()]
        self.summary_label.setText(algorithm_summary(self.algorithm_name()))
        self.forms["algorithm"].set_section_class(cls)
        self._show_what_applies()
        self.config_changed.emit()

    def set_device(self, device: str) -> None:
        """The device runs train on (``train.device``): fields for other devices hide."""
        self.device = device or "cpu"
        self._show_what_applies()

    def _show_what_applies(self) -> None:
        cls = ALGORITHM_CONFIGS[self.algorithm_name()]
        for form in self.forms.values():
            form.set_context(cls, self.device)
        self.advanced_toggle.refresh()

    # -- values -------------------------------------------------------------
    def errors(self) -> list[str]:
        return [message for section in SECTIONS for message in self.forms[section].errors()]

    def section_values(self) -> dict[str, dict[str, Any]]:
        return {section: self.forms[section].values() for section in SECTIONS}

    def apply_to(self, config: RunConfig) -> RunConfig:
        """Fill ``config``'s task / algorithm / model / train sections from the forms (valid fields)."""
        values = self.section_values()
        config.task = TaskConfig(**values["task"])
        config.algorithm = ALGORITHM_CONFIGS[self.algorithm_name()](**values["algorithm"])
        config.model = ModelConfig(**values["model"])
        train = TrainConfig(**values["train"])
        train.device = config.train.device
        config.train = train
        return config

    def load_config(self, config: RunConfig) -> None:
        self.set_algorithm(config.algorithm.name)
        self.forms["task"].load(config.task)
        self.forms["algorithm"].load(config.algorithm)
        self.forms["model"].load(config.model)
        self.forms["train"].load(config.train)
        self.config_changed.emit()

    def reset_defaults(self) -> None:
        cls = ALGORITHM_CONFIGS[self.algorithm_name()]
        self.load_config(RunConfig(algorithm=cls()))

    def field(self, key: str) -> Any:
        """The editor of ``section.name`` (e.g. ``task.n_shot``), for scripts and tests."""
        section, name = key.split(".", 1)
        return self.forms[section].editor(name)

    # -- presets ------------------------------------------------------------
    def ask_save_path(self) -> str:
        start = st.read_str(st.KEY_PRESET_FOLDER, str(Path.home()))
        path, _ = QFileDialog.getSaveFileName(self, "Save preset", str(Path(start) / "preset.json"),
                                              "Presets (*.json)")
        return path

    def ask_load_path(self) -> str:
        start = st.read_str(st.KEY_PRESET_FOLDER, str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Load preset", start, "Presets (*.json);;All files (*)")
        return path

    @staticmethod
    def remember_folder(path: str | Path) -> None:
        st.settings().setValue(st.KEY_PRESET_FOLDER, str(Path(path).parent))
