"""Plain-language settings: labels and tooltips of every generated field, Basic vs Advanced, and fields
hidden where they do nothing (CUDA graphs without a CUDA device, MAML's task batching for ProtoNet)."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.api import ALGORITHMS
from studio.panels.algorithm_panel import AlgorithmPanel
from studio.panels.dataset_panel import DatasetPanel
from studio.widgets.config_form import ConfigForm
from studio.widgets.episode_form import EpisodeShapeForm

LEFT = Qt.MouseButton.LeftButton
BASIC = ("task.n_way", "task.n_shot", "algorithm.lr", "model.backbone", "train.steps")
FIRST_SENTENCE = re.compile(r"^[A-Z][^\n]*?[.)](\s|$)")


def check_form(form: ConfigForm) -> int:
    """Every field of ``form``: a plain label; a tooltip whose first line opens with a sentence and whose
    last line is the config key. Returns how many fields it checked."""
    for name, editor in form.editors.items():
        spec = editor.spec
        label = form.labels[name].text()
        assert label and "_" not in label and label[0].isupper(), f"{spec.key}: label {label!r}"
        for tip in (editor.widget.toolTip(), form.labels[name].toolTip()):
            lines = tip.split("\n")
            assert FIRST_SENTENCE.match(lines[0]), f"{spec.key}: tooltip does not open with a sentence: {tip!r}"
            assert spec.key not in lines[0], f"{spec.key}: the key belongs at the end: {tip!r}"
            assert lines[-1] == f"(config key: {spec.key})", f"{spec.key}: tooltip must end with its key: {tip!r}"
    return len(form.editors)


def test_every_generated_field_has_a_label_and_a_tooltip_ending_with_its_key(qtbot):
    panel = AlgorithmPanel()
    qtbot.addWidget(panel)
    checked = 0
    for name in ALGORITHMS:
        panel.set_algorithm(name)
        checked += sum(check_form(form) for form in panel.forms.values())
    data = DatasetPanel()
    qtbot.addWidget(data)
    checked += check_form(data.split_form) + check_form(data.prep_form)
    episodes = EpisodeShapeForm()
    qtbot.addWidget(episodes)
    checked += check_form(episodes)
    assert checked > 100
    assert panel.forms["task"].labels["n_shot"].text() == "Examples per class (shot)"
    assert panel.field("task.n_shot").widget.toolTip() == ("Sets how many labelled support images each class of an "
                                                           "episode gets.\nRange: >= 1, <= 1000\n"
                                                           "(config key: task.n_shot)")


def test_advanced_settings_are_collapsed_by_default_and_open_with_a_click(qtbot):
    panel = AlgorithmPanel()
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    assert not panel.advanced_toggle.isChecked()
    for key in BASIC:
        assert panel.field(key).widget.isVisible(), key
    advanced = ("task.n_query", "task.meta_batch_size", "model.hidden_channels", "train.seed", "train.val_every")
    for key in advanced:
        assert not panel.field(key).widget.isVisible(), key
    assert "more)" in panel.advanced_toggle.text()

    QTest.mouseClick(panel.advanced_toggle, LEFT)
    for key in BASIC + advanced:
        assert panel.field(key).widget.isVisible(), key
    QTest.mouseClick(panel.advanced_toggle, LEFT)
    assert not panel.field("train.seed").widget.isVisible()

    panel.field("task.n_query").set_value(7)  # hidden fields keep their values
    assert panel.section_values()["task"]["n_query"] == 7


def test_the_data_tab_keeps_the_split_seed_and_preprocessing_under_advanced(qtbot):
    panel = DatasetPanel()
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    for name in ("split_mode", "train_ratio", "val_ratio"):
        assert panel.split_form.editor(name).widget.isVisible(), name
    assert not panel.split_form.editor("split_seed").widget.isVisible()
    assert not panel.prep_box.isVisible()
    QTest.mouseClick(panel.advanced_toggle, LEFT)
    assert panel.split_form.editor("split_seed").widget.isVisible() and panel.prep_box.isVisible()


def test_cuda_graphs_show_only_for_a_cuda_device(qtbot):
    panel = AlgorithmPanel()
    qtbot.addWidget(panel)
    panel.show()
    QTest.mouseClick(panel.advanced_toggle, LEFT)
    train = panel.forms["train"]
    panel.set_device("cpu")
    assert not panel.field("train.cuda_graphs").widget.isVisible() and not train.is_shown("cuda_graphs")
    assert panel.field("train.precision").widget.isVisible()
    panel.set_device("cuda:0")
    assert panel.field("train.cuda_graphs").widget.isVisible()
    panel.set_algorithm("maml")  # CUDA graphs are ProtoNet's: hidden for MAML even on CUDA
    assert not panel.field("train.cuda_graphs").widget.isVisible()


def test_the_window_without_cuda_hides_cuda_graphs_and_follows_the_device(window, qtbot):
    panel = window.algorithm_panel
    window.setup_tabs.setCurrentIndex(1)
    QTest.mouseClick(panel.advanced_toggle, LEFT)
    assert window.device_panel.device() == "cpu"  # this machine: no CUDA device
    assert not panel.forms["train"].is_shown("cuda_graphs")
    assert not panel.field("train.cuda_graphs").widget.isVisible()
    window.device_panel.device_changed.emit("cuda:0")  # what choosing a CUDA device emits
    assert panel.field("train.cuda_graphs").widget.isVisible()
    assert window.current_config().train.cuda_graphs is True  # hidden or not, the value is kept
    # the two fields made by hand (not from the schema) follow the same rule
    for combo, key in ((window.device_panel.combo, "train.device"), (window.dataset_panel.root_combo, "data.root")):
        assert combo.toolTip().split("\n")[-1] == f"(config key: {key})"
        assert FIRST_SENTENCE.match(combo.toolTip())


def test_maml_only_fields_are_hidden_for_protonet(qtbot):
    panel = AlgorithmPanel()
    qtbot.addWidget(panel)
    panel.show()
    QTest.mouseClick(panel.advanced_toggle, LEFT)
    panel.set_algorithm("protonet")
    for key in ("train.task_batching", "train.vmap_chunk"):
        assert not panel.field(key).widget.isVisible(), key
    assert "inner_lr" not in panel.forms["algorithm"].editors  # the algorithm section is the config's own
    for name in ("maml", "fomaml"):
        panel.set_algorithm(name)
        for key in ("train.task_batching", "train.vmap_chunk", "algorithm.inner_lr"):
            assert panel.field(key).widget.isVisible(), (name, key)
    panel.set_algorithm("reptile")
    assert not panel.field("train.vmap_chunk").widget.isVisible()
