"""Synthetic images: exact masks, geometry, colour, 3D volumes, errors."""

import numpy as np
import pytest

from physeg.data.synthetic import (
    SHAPES,
    ellipsoids_volume,
    shape_image,
    shape_mask,
    three_level_image,
)

AREA = {  # analytic area fractions of [-1, 1]^2 (module docstring)
    "square": 0.25,
    "circle": np.pi * 0.55**2 / 4,
    "triangle": 0.5 * 1.2 * 1.1 / 4,
    "rhombus": 2 * 0.45 * 0.7 / 4,
    "ellipse": np.pi * 0.7 * 0.4 / 4,
}


def test_five_shapes():
    assert SHAPES == ("square", "circle", "triangle", "rhombus", "ellipse")


@pytest.mark.parametrize("shape", SHAPES)
def test_image_is_painted_exactly_from_mask(shape):
    img, mask = shape_image(shape, 64, shape_value=0.7, background_value=0.1)
    assert img.dtype == np.float32 and mask.dtype == bool and img.shape == mask.shape == (64, 64)
    assert np.all(img[mask] == np.float32(0.7))
    assert np.all(img[~mask] == np.float32(0.1))
    assert mask.any() and (~mask).any()


@pytest.mark.parametrize("shape", SHAPES)
def test_area_converges_to_analytic(shape):
    # Pixel-centre sampling: error ~ perimeter / n.
    frac = shape_mask(shape, 512).mean()
    assert abs(frac - AREA[shape]) < 0.01


def test_square_is_exact_half_extent():
    m = shape_mask("square", 8)
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    np.testing.assert_array_equal(m, expected)


@pytest.mark.parametrize("shape", ["square", "circle", "rhombus", "ellipse"])
def test_symmetric_shapes_are_symmetric(shape):
    m = shape_mask(shape, 65)
    np.testing.assert_array_equal(m, m[::-1])
    np.testing.assert_array_equal(m, m[:, ::-1])


def test_triangle_apex_up():
    m = shape_mask("triangle", 100)
    widths = m.sum(axis=1)
    rows = np.flatnonzero(widths)
    assert widths[rows[0]] < widths[rows[-1]]  # narrow on top, wide at the bottom
    np.testing.assert_array_equal(m, m[:, ::-1])


def test_non_square_size():
    img, mask = shape_image("circle", (40, 80))
    assert img.shape == (40, 80)


def test_rgb_per_channel_values():
    img, mask = shape_image("rhombus", 32, channels=3, shape_value=(0.9, 0.5, 0.1),
                            background_value=0.2, dtype=np.float64)
    assert img.shape == (32, 32, 3) and img.dtype == np.float64
    np.testing.assert_array_equal(img[mask], np.tile([0.9, 0.5, 0.1], (mask.sum(), 1)))
    np.testing.assert_array_equal(img[~mask], 0.2)


def test_three_level_image_exact_labels():
    img, lab = three_level_image(64, values=(0.1, 0.4, 0.9))
    assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1, 2}
    for k, v in enumerate((0.1, 0.4, 0.9)):
        assert np.all(img[lab == k] == np.float32(v))


def test_ellipsoids_volume_deterministic_and_exact():
    v1, l1 = ellipsoids_volume((16, 32, 32), n=3, rng=5, instance=True)
    v2, l2 = ellipsoids_volume((16, 32, 32), n=3, rng=5, instance=True)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(v1, v2)
    assert set(np.unique(l1)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(v1, (l1 > 0).astype(np.float32))
    _, lb = ellipsoids_volume((16, 32, 32), n=3, rng=5)
    np.testing.assert_array_equal(lb, (l1 > 0).astype(np.uint8))
    _, l3 = ellipsoids_volume((16, 32, 32), n=3, rng=6, instance=True)
    assert not np.array_equal(l1, l3)


def test_ellipsoids_do_not_touch():
    from scipy import ndimage

    _, lab = ellipsoids_volume((32, 48, 48), n=5, rng=2, instance=True)
    # Binary connected components equal the instances: no two ellipsoids touch.
    _, ncomp = ndimage.label(lab > 0, structure=np.ones((3, 3, 3)))
    assert ncomp == 5


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda: shape_mask("sqare"), ValueError, "Did you mean 'square'"),
        (lambda: shape_image("circle", 2), ValueError, "too small"),
        (lambda: shape_image("circle", (10, 10, 10)), TypeError, "tuple of 2 ints"),
        (lambda: shape_image("circle", 16, shape_value=(1, 0)), ValueError, "single number"),
        (lambda: shape_image("circle", 16, channels=3, shape_value=(1, 0)), ValueError,
         "sequence of 3"),
        (lambda: shape_image("circle", 16, channels=0), ValueError, "positive int"),
        (lambda: shape_image("circle", 16, dtype=np.uint8), TypeError, "floating"),
        (lambda: three_level_image(32, values=(0, 0, 1)), ValueError, "distinct"),
        (lambda: ellipsoids_volume((8, 32, 32)), ValueError, "at least 16"),
        (lambda: ellipsoids_volume(n=0), ValueError, "1..8"),
    ],
)
def test_errors(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()
