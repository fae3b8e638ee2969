"""The object prior (``foreground``) and single-object post-processing, with known answers."""

from __future__ import annotations

import numpy as np
import pytest

import physeg
from physeg._foreground import border_shares, foreground_order, keep_one_object

BINARY_METHODS = ("otsu", "chan-vese", "heat", "kinetic")


def _disc_image(dark_object: bool, size=48, centre=(24, 24), radius=10, seed=0):
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    lo, hi = (0.8, 0.2) if dark_object else (0.2, 0.8)
    img = np.where(mask, hi, lo) + np.random.default_rng(seed).normal(0, 0.05, mask.shape)
    return img, mask


def _dice(a, b):
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


@pytest.mark.parametrize("method", BINARY_METHODS)
@pytest.mark.parametrize("dark_object", [False, True])
def test_the_object_is_label_1_whatever_its_brightness(method, dark_object):
    img, mask = _disc_image(dark_object)
    labels = physeg.segment(img, method=method, rng=0)
    assert _dice(labels == 1, mask) > 0.95
    # the explicit rules pick by brightness instead
    bright = physeg.segment(img, method=method, rng=0, foreground="bright")
    dark = physeg.segment(img, method=method, rng=0, foreground="dark")
    assert _dice((bright == 1) if not dark_object else (dark == 1), mask) > 0.95
    np.testing.assert_array_equal(bright, 1 - dark)


def test_an_object_touching_the_border_is_still_the_object():
    img, mask = _disc_image(True, centre=(40, 24), radius=14)  # cut by the bottom edge
    assert border_shares(mask.astype(int), 2)[1] > 0
    labels = physeg.segment(img, method="otsu")
    assert _dice(labels == 1, mask) > 0.95


def test_many_small_objects_are_label_1():
    gen = np.random.default_rng(3)
    yy, xx = np.mgrid[:96, :96]
    mask = np.zeros((96, 96), bool)
    for cy, cx in gen.integers(8, 88, size=(12, 2)):
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < 16
    img = np.where(mask, 0.9, 0.1) + gen.normal(0, 0.05, mask.shape)  # nuclei: bright on dark
    for method in ("otsu", "heat"):
        assert _dice(physeg.segment(img, method=method) == 1, mask) > 0.9


def test_the_border_decides_and_a_tie_falls_back_to_the_minority():
    band = np.zeros((20, 20), int)
    band[8:12, :] = 1  # a band across the image holds 8 of the 76 border pixels
    assert border_shares(band, 2) == pytest.approx([68 / 76, 8 / 76])
    assert foreground_order(band, brightness=[1.0, 0.0], rule="auto")[1] == 1
    half = np.zeros((20, 20), int)
    half[:, 12:] = 1  # border shares 0.55 / 0.45 -> the border decides: phase 1
    assert foreground_order(half, brightness=[1.0, 0.0], rule="auto")[1] == 1
    tie = np.zeros((20, 20), int)
    tie[:, :10] = 1
    tie[5:15, 10:14] = 1  # equal border shares, but phase 1 is the majority (240 of 400)
    shares = border_shares(tie, 2)
    assert abs(shares[0] - shares[1]) < 0.1
    assert foreground_order(tie, brightness=[0.0, 1.0], rule="auto")[1] == 0
    even = np.zeros((20, 20), int)
    even[:, 10:] = 1  # equal border, equal area: brightness order is kept
    assert list(foreground_order(even, brightness=[1.0, 0.0], rule="auto")) == [1, 0]


def test_more_than_two_phases_put_the_border_phase_first():
    lab = np.zeros((30, 30), int)
    lab[5:25, 5:25] = 2
    lab[10:20, 10:20] = 1
    order = foreground_order(lab, brightness=[0.9, 0.1, 0.5], rule="auto")
    assert order[0] == 0 and list(order[1:]) == [1, 2]  # then darkest first
    assert list(foreground_order(lab, [0.9, 0.1, 0.5], "bright")) == [1, 2, 0]
    assert foreground_order(lab, [0.9, 0.1, 0.5], "dark")[0] == 0


def test_keep_one_object_keeps_the_largest_and_fills_its_holes():
    lab = np.zeros((30, 30), np.uint8)
    lab[2:20, 2:20] = 1
    lab[8:12, 8:12] = 0  # a hole
    lab[25:28, 25:28] = 1  # a speck
    out = keep_one_object(lab)
    expected = np.zeros_like(lab)
    expected[2:20, 2:20] = 1
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(keep_one_object(np.zeros((4, 4), np.uint8)), 0)
    img, _ = _disc_image(False)
    img[2:5, 2:5] = 0.8  # a bright speck
    one = physeg.segment(img, method="otsu", objects="one")
    assert one[3, 3] == 0 and one[24, 24] == 1
