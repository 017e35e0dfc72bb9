"""The draw pad's rendering rule (engine/data/strokes.py): Omniglot-like drawings, centred and scaled."""

import math

import numpy as np
import pytest

from engine.data.strokes import (EXTENT, OMNIGLOT_CANVAS, PEN_WIDTH, drawing_size, pen_width_for_span,
                                 render_strokes)

SQUARE = [[(0, 0, None), (100, 0, None), (100, 100, None), (0, 100, None), (0, 0, None)]]


def _ink(image: np.ndarray) -> np.ndarray:
    return image < 128


def _box(image: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(_ink(image))
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def test_black_strokes_on_white_centred_with_omniglots_extent_and_pen():
    image = render_strokes(SQUARE, OMNIGLOT_CANVAS)
    assert image.shape == (105, 105) and image.dtype == np.uint8
    assert image[0, 0] == 255 and image[52, 52] == 255 and image.min() == 0
    top, bottom, left, right = _box(image)
    assert abs((top + bottom) / 2 - 52) <= 1 and abs((left + right) / 2 - 52) <= 1          # centred
    assert bottom - top + 1 == pytest.approx(EXTENT * 105 + PEN_WIDTH * 105, abs=2)      # 72 px, like Omniglot
    assert int(_ink(image)[52, :30].sum()) == pytest.approx(PEN_WIDTH * 105, abs=1)      # a 5-px stroke


def test_the_same_drawing_anywhere_and_at_any_scale_renders_the_same_image():
    moved = [[(x * 3 + 500, y * 3 - 40, p) for x, y, p in stroke] for stroke in SQUARE]
    assert np.array_equal(render_strokes(SQUARE, 105), render_strokes(moved, 105))


def test_pressure_widens_the_pen_and_a_mouse_draws_the_nominal_width():
    def width(pressure):
        image = render_strokes([[(0, 0, pressure), (0, 100, pressure), (50, 100, pressure)]], 105)
        return int(_ink(image)[52].sum())

    assert width(0.0) < width(None) == width(0.5) < width(1.0)


def test_sizes_follow_the_model_and_the_pad_paints_what_the_image_shows():
    assert drawing_size(28) == 105 and drawing_size(224) == 224
    assert render_strokes(SQUARE, 224).shape == (224, 224)
    # a drawing 200 units across is rendered 67 px across with a 5-px pen: on the pad the pen is 200 * 5 / 67
    assert pen_width_for_span(200) == pytest.approx(200 * PEN_WIDTH / EXTENT)
    assert pen_width_for_span(200, 1.0) == pytest.approx(1.5 * pen_width_for_span(200))


def test_a_tap_is_a_centred_dot_and_nothing_drawn_is_an_error():
    dot = render_strokes([[(3, 4, None)]], 105)
    top, bottom, left, right = _box(dot)
    assert abs((top + bottom) / 2 - 52) <= 1 and bottom - top <= 6
    with pytest.raises(ValueError, match="no points"):
        render_strokes([], 105)
    with pytest.raises(ValueError, match="not a finite number"):
        render_strokes([[(0, math.nan, None), (1, 1, None)]], 105)
