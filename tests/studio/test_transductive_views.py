"""A transductive model (TIM) in the Adapt view and the episode inspector: the whole Test zone is predicted in one
batch, one test image alone is explained in one line, and both views say "Predictions depend on the whole test set"
(and say nothing of the kind for ProtoNet)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.inspection import inspect_episodes
from engine.sessions.adapt_compute import query_tensor, support_tensors
from engine.sessions.adapt_support import usable_classes
from studio.panels.inspector_panel import InspectorPanel
from studio.widgets.transductive_note import TRANSDUCTIVE_NOTE
from tests.studio.test_adapt_panel import CLASSES, _train, drop, images_of, make_classes, mime_for, wait_idle
from tests.studio.test_adapt_panel import panel, protonet_ckpt, protonet_run  # noqa: F401 (fixtures)

torch.set_num_threads(1)


def shows_note(panel) -> bool:
    """The panel's transductive note is on screen, inside the panel."""
    return panel.isAncestorOf(panel.transductive_note) and panel.transductive_note.isVisibleTo(panel)


@pytest.fixture(scope="module")
def tim_run(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tiny_flat, tmp_path_factory.mktemp("transductive") / "tim", "tim", batch_size=8)


def test_adapt_view_predicts_the_whole_test_zone_together_and_says_so(  # noqa: F811 (fixtures)
        panel, qtbot, tim_run, protonet_ckpt, tiny_flat) -> None:
    assert panel.load_checkpoint(tim_run / "checkpoints" / "best.pt")
    assert shows_note(panel)
    assert panel.transductive_note.text().startswith(TRANSDUCTIVE_NOTE) and "TIM" in panel.transductive_note.text()
    make_classes(panel, tiny_flat)
    drop(panel.test_zone, mime_for([images_of(tiny_flat, name, 6, 7)[0] for name in CLASSES]))
    wait_idle(qtbot, panel)
    qtbot.waitUntil(panel.is_current, timeout=30_000)

    session = panel.session
    assert len(session.queries) == 3 and session.output.query_probs.shape == (3, 3)
    support_x, support_y = support_tensors(usable_classes(session.support), session.prep)
    with torch.no_grad():
        predictor = session.algorithm.adapt(support_x, support_y)
        together = predictor.predict(query_tensor(session.queries, session.prep))
        first_two = predictor.predict(query_tensor(session.queries[:2], session.prep))
    assert torch.allclose(session.output.query_probs, together, atol=1e-6)
    assert not torch.allclose(together[:2], first_two, atol=1e-6), "the third image changes the first two"
    shown = torch.tensor([tile.probabilities for tile in panel.test_zone.tiles])
    assert torch.allclose(shown, together, atol=1e-6)

    assert panel.load_checkpoint(protonet_ckpt)
    assert not shows_note(panel)


def test_one_test_image_alone_is_explained_in_one_line_until_a_second_arrives(panel, qtbot, tim_run,  # noqa: F811
                                                                             tiny_flat) -> None:
    assert panel.load_checkpoint(tim_run / "checkpoints" / "best.pt")
    make_classes(panel, tiny_flat, names=CLASSES[:2])
    panel.add_test_files(images_of(tiny_flat, CLASSES[0], 6, 7))
    qtbot.waitUntil(lambda: "at least 2" in panel.banner_text(), timeout=30_000)
    text = panel.banner_text()
    assert "query images" in text and "transductive" in text and "(got 1)" in text and "\n" not in text
    panel.add_test_files(images_of(tiny_flat, CLASSES[1], 6, 7))
    qtbot.waitUntil(lambda: panel.is_current() and not panel.is_busy(), timeout=30_000)
    assert panel.banner_text() == ""
    assert all(tile.predicted in CLASSES[:2] for tile in panel.test_zone.tiles)


def test_episode_inspector_says_a_transductive_model_s_predictions_depend_on_the_whole_test_set(
        qtbot, tim_run, protonet_run) -> None:  # noqa: F811
    panel = InspectorPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_inspection(inspect_episodes(tim_run, n_episodes=2, n_way=3, n_shot=1, n_query=2))
    assert shows_note(panel) and panel.transductive_note.text().startswith(TRANSDUCTIVE_NOTE)
    panel.show_inspection(inspect_episodes(protonet_run, n_episodes=2, n_way=3, n_shot=1, n_query=2))
    assert not shows_note(panel)
