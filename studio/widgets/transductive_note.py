"""The note a view shows for a transductive algorithm: its predictions depend on the whole test set.

A transductive algorithm (``Algorithm.transductive``: TIM, PT-MAP, LaplacianShot, BD-CSPN, transductive
fine-tuning) classifies all the test images of an episode, or of the Adapt view's Test zone, together, so
adding or removing one test image can change the predictions of the others. The Adapt view and the episode
inspector show this note while such a model is in use, and hide it otherwise.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from studio.widgets.elide import WrappedLabel

TRANSDUCTIVE_NOTE = "Predictions depend on the whole test set"


def transductive_text(title: str) -> str:
    """The note's full text for the algorithm called ``title``."""
    return (f"{TRANSDUCTIVE_NOTE}: {title} is transductive, it classifies all the test images together, so "
            "adding or removing one can change the predictions of the others.")


class TransductiveNote(WrappedLabel):
    """A wrapped, hidden-by-default label: :meth:`show_for` shows it for a transductive algorithm only."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("", parent)
        self.setObjectName("transductive_note")
        self.setStyleSheet("color: #8a5a00; background: #fff4e5; border-radius: 4px; padding: 3px 6px;")
        self.setVisible(False)

    def show_for(self, transductive: bool, title: str) -> None:
        """Show the note for ``title`` when ``transductive``; hide it otherwise."""
        self.setText(transductive_text(title) if transductive else "")
        self.setVisible(bool(transductive))
