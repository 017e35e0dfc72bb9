"""Screenshot of the Adapt tab with classes drawn on the draw pads, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/adapt_drawn.py [--out docs/screens/adapt_drawn.png]

Opens the real main window (in a temporary run history), switches to the Adapt tab, opens the bundled
model (``assets/demo_model.pt``, trained on Omniglot's handwriting) and draws four classes, three drawings each, with real mouse
events on each card's draw pad (press, moves, release; Enter adds the drawing), then one drawing per
class on the test zone's pad. The shapes are seeded hand-like variants (a slanted, jittered copy of
a few strokes). The last card's pad stays open with a drawing under way. Prints the predictions.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402

Polyline = list[tuple[float, float]]
SHAPES: dict[str, list[Polyline]] = {   # strokes on a 0..1 square
    "ring": [[(0.5 + 0.38 * math.cos(t), 0.5 + 0.38 * math.sin(t)) for t in np.linspace(-1.6, 4.6, 40)]],
    "hook": [[(0.15, 0.2), (0.8, 0.2), (0.75, 0.45), (0.6, 0.7), (0.35, 0.88)]],
    "cross": [[(0.5, 0.12), (0.5, 0.88)], [(0.15, 0.45), (0.85, 0.45)]],
    "steps": [[(0.15, 0.2), (0.75, 0.2), (0.2, 0.55), (0.8, 0.55), (0.25, 0.88), (0.85, 0.88)]],
}
VARIANTS = 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    return shot_parser(__doc__, out="docs/screens/adapt_drawn.png", timeout=300.0).parse_args(argv)


def hand_drawn(strokes: list[Polyline], seed: int, side: int) -> list[Polyline]:
    """A seeded hand-like copy of ``strokes`` in pad pixels: slant, scale, jitter, points every ~3 px."""
    rng = np.random.default_rng(seed)
    slant, scale = rng.uniform(-0.15, 0.15), rng.uniform(0.75, 0.9)
    result = []
    for stroke in strokes:
        points = np.array(stroke) + rng.normal(0, 0.025, (len(stroke), 2))
        dense = []
        for a, b in zip(points, points[1:]):
            steps = max(2, int(np.linalg.norm(b - a) * side / 3))
            dense += [a + (b - a) * t for t in np.linspace(0, 1, steps, endpoint=False)]
        dense.append(points[-1])
        result.append([(side * (0.5 + scale * (x - 0.5 + slant * (y - 0.5))), side * (0.5 + scale * (y - 0.5)))
                       for x, y in dense])
    return result


def draw(pad, strokes: list[Polyline]) -> None:
    """Real mouse events on the pad: press, a move to each point, release."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    for stroke in strokes:
        points = [QPoint(round(x), round(y)) for x, y in stroke]
        QTest.mousePress(pad, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
        for point in points[1:]:
            QTest.mouseMove(pad, point)
        QTest.mouseRelease(pad, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1])


def main(argv: list[str] | None = None) -> int:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from engine.api import DEMO_MODEL

    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_home()
    _, window = start_window(args)
    panel = window.adapt_panel
    for dock in (window.setup_dock, window.runs_dock, window.log_dock):
        dock.close()
    tabs = window.center_tabs
    tabs.setCurrentIndex(next(i for i in range(tabs.count()) if tabs.tabText(i) == "Adapt"))
    if not panel.load_checkpoint(DEMO_MODEL):
        raise SystemExit(f"could not open {DEMO_MODEL} (see the banner)")
    names = list(SHAPES)
    for index, name in enumerate(names):
        card = panel.add_class(name)
        card.name_edit.deselect()   # add_class selects the name for typing
        QTest.mouseClick(card.draw_button, Qt.MouseButton.LeftButton)
        for variant in range(VARIANTS):
            draw(card.draw_box.pad, hand_drawn(SHAPES[name], 100 * index + variant, card.draw_box.pad.width()))
            QTest.keyClick(card.draw_box.pad, Qt.Key.Key_Return)
        if index < len(names) - 1:
            QTest.mouseClick(card.draw_button, Qt.MouseButton.LeftButton)   # close its pad
    zone = panel.test_zone
    QTest.mouseClick(zone.draw_button, Qt.MouseButton.LeftButton)
    for index, name in enumerate(names):
        draw(zone.draw_box.pad, hand_drawn(SHAPES[name], 100 * index + 50, zone.draw_box.pad.width()))
        QTest.mouseClick(zone.draw_box.add_button, Qt.MouseButton.LeftButton)
    last = panel.card_list.card_named(names[-1])
    draw(last.draw_box.pad, hand_drawn(SHAPES[names[-1]], 999, last.draw_box.pad.width())[:1])  # under way
    wait_until(lambda: not panel.is_busy() and panel.is_current() and len(zone.tiles) == len(names),
               args.timeout, "the predictions")
    for name, tile in zip(names, zone.tiles):
        print(f"drawn {name}: predicted {tile.predicted} ({max(tile.probabilities):.0%})")
    out = save_grab(window, args.out, settle_ms=1000)
    print(f"wrote {out}")
    window.close()
    return 0


if __name__ == "__main__":
    exit_with(main)
