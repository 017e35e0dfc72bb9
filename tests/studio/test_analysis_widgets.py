"""The shared widgets of the analysis views: the episode-shape form takes the schema's bounds, the run
picker lists runs with a checkpoint (and picks it by the one rule), and a newly registered algorithm
with an inner loop shows up in the scrubber, the inspector and the algorithm form with no studio edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from PySide6.QtCore import QObject, Signal

from engine.algorithms import registry
from engine.algorithms.reptile import Reptile
from engine.config import EpisodeShape, ReptileConfig, RunConfig, TaskConfig, TrainConfig, describe_fields
from engine.io import atomic_write_json
from engine.scrubbing import has_inner_loop, inner_loop_algorithms
from engine.training.run_store import CONFIG_FILE, RunRecord, RunStore, checkpoint_file, now_iso, write_record
from studio.widgets.episode_form import EpisodeShapeForm
from studio.widgets.run_picker import RunPicker


class _ScrubbableConfig(ReptileConfig):
    name: ClassVar[str] = "throwaway-scrub"
    title: ClassVar[str] = "Throwaway scrubbable"


class _Scrubbable(Reptile):
    inner_loop = True


class _Window(QObject):
    """What the inspector and the scrubber ask of the main window."""

    selection_changed = Signal(list)
    training_ended = Signal(str)

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.runs_panel = self
        self.device_panel = self
        self.shown_errors: list[tuple[str, str]] = []

    def device(self) -> str:
        return "cpu"

    def show_error(self, title: str, message: str) -> None:
        self.shown_errors.append((title, message))


def _run(store: RunStore, name: str, algorithm: str, checkpoints: tuple[str, ...] = ("best", "last")) -> RunRecord:
    """A run folder with a run.json, a config.json and (empty) checkpoint files ``checkpoints``."""
    run_dir = store.new_run_dir(name)
    config = RunConfig(algorithm=registry.ALGORITHM_CONFIGS[algorithm]())
    config.name = name
    atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())
    record = RunRecord(run_dir, name, algorithm, "builtin:glyphs", "cpu", "finished", 0.5, 1.0, now_iso(), 10, 10)
    write_record(record)
    for which in checkpoints:
        path = checkpoint_file(run_dir, which)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return store.record(run_dir)


@pytest.fixture
def throwaway() -> Any:
    registry.register(_ScrubbableConfig, _Scrubbable)
    yield _ScrubbableConfig.name
    registry.unregister(_ScrubbableConfig.name)


def test_the_episode_shape_takes_the_run_configs_bounds(qtbot: Any) -> None:
    schema = {spec.name: spec for spec in describe_fields(TaskConfig, "task")}
    schema["episodes"] = next(spec for spec in describe_fields(TrainConfig, "train") if spec.name == "val_episodes")
    form = EpisodeShapeForm(initial=EpisodeShape(n_query=3, episodes=100), per_row=2)
    qtbot.addWidget(form)
    for spec in describe_fields(EpisodeShape, "episode"):
        assert (spec.min, spec.max) == (schema[spec.name].min, schema[spec.name].max)
        assert (form.spin(spec.name).minimum(), form.spin(spec.name).maximum()) == (spec.min, spec.max)
    assert form.shape() == EpisodeShape(n_way=5, n_shot=1, n_query=3, episodes=100)
    form.load({"n_way": 7, "n_shot": 2})
    assert form.shape() == EpisodeShape(n_way=7, n_shot=2, n_query=3, episodes=100)
    shape_only = EpisodeShapeForm(("n_way", "n_shot", "n_query"))
    qtbot.addWidget(shape_only)
    assert set(shape_only.editors) == {"n_way", "n_shot", "n_query"}


def test_the_run_picker_lists_runs_with_a_checkpoint_and_keeps_the_choice(qtbot: Any, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    picker = RunPicker(store, object_name="picker", empty_text="no run yet")
    qtbot.addWidget(picker)
    picker.refresh()
    assert picker.record() is None and picker.combo.currentText() == "no run yet"
    first = _run(store, "first", "protonet")
    _run(store, "untrained", "protonet", checkpoints=())
    last_only = _run(store, "last only", "maml", checkpoints=("last",))
    with qtbot.waitSignal(picker.run_changed):
        picker.refresh()
    assert picker.combo.count() == 2  # the run without a checkpoint is not offered
    assert picker.select(first.run_dir) and picker.run_dir() == first.run_dir
    picker.refresh()
    assert picker.run_dir() == first.run_dir
    assert picker.select(last_only.run_dir)
    assert picker.checkpoint("best") == picker.checkpoint("last") == checkpoint_file(last_only.run_dir, "last")
    label = RunPicker(None, listed=False, object_name="label", describe=lambda r: f"run {r.name}")
    qtbot.addWidget(label)
    label.set_record(first)
    assert label.record() is first and label.text() == "run first"
    assert label.checkpoint("last") == checkpoint_file(first.run_dir, "last")


def test_a_new_algorithm_with_an_inner_loop_appears_in_the_views(qtbot: Any, tmp_path: Path, throwaway: str) -> None:
    from studio.panels.algorithm_panel import AlgorithmPanel
    from studio.panels.inspector_panel import InspectorPanel
    from studio.panels.scrubber_panel import ScrubberPanel

    assert has_inner_loop(throwaway) and throwaway in inner_loop_algorithms()
    store = RunStore(tmp_path / "runs")
    run = _run(store, "scrub me", throwaway)
    _run(store, "no inner loop", "protonet")
    window = _Window(store)
    scrubber = ScrubberPanel(window)
    qtbot.addWidget(scrubber)
    assert scrubber.run_picker.combo.count() == 1 and scrubber.run_picker.run_dir() == run.run_dir
    assert "Throwaway scrubbable" in scrubber.run_picker.combo.currentText()
    assert "Throwaway scrubbable" in scrubber.run_picker.combo.toolTip()
    assert scrubber.steps_spin.value() == 20 and scrubber.run_button.isEnabled()  # 2 x its 10 test steps
    inspector = InspectorPanel(window)
    qtbot.addWidget(inspector)
    assert inspector.run_picker.combo.count() == 2
    panel = AlgorithmPanel()
    qtbot.addWidget(panel)
    assert panel.algorithm_combo.findData(throwaway) >= 0
