"""heat's mixture fidelity: region models beyond means, with known answers."""

from __future__ import annotations

import numpy as np
import pytest

import physeg
from physeg._regions import border_geodesic, prior_partition, region_features

pytest.importorskip("sklearn")


def _dice(a, b):
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


def _two_colour_background(size=64, seed=0):
    """Object: an olive disc; background: a red half and a green half whose mean is olive too.

    A two-phase piecewise-constant model splits red from green (the largest contrast) and
    misses the disc; one mixture per phase models the two-coloured background.
    """
    gen = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    patches = xx < size / 2
    red, green = np.array([0.8, 0.2, 0.1]), np.array([0.2, 0.8, 0.1])
    img = np.where(patches[..., None], red, green)
    img[mask] = (red + green) / 2
    img = np.clip(img + gen.normal(0, 0.03, img.shape), 0, 1)
    return img, mask


def test_mixtures_separate_regions_that_share_their_mean_colour():
    img, mask = _two_colour_background()
    means = physeg.segment(img, method="heat", channel_axis=-1, fidelity="means")
    mixtures = physeg.segment(img, method="heat", channel_axis=-1, fidelity="mixtures", rng=0)
    assert _dice(mixtures == 1, mask) > 0.9
    assert _dice(means == 1, mask) < 0.5  # the means split red from green instead
    # without the texture channel (the red/green edge looks textured) it is all but exact
    colour_only = physeg.segment(img, method="heat", channel_axis=-1, fidelity="mixtures",
                                 texture=0.0, rng=0)
    assert _dice(colour_only == 1, mask) > 0.98
    # fidelity="auto" takes the mixtures for a colour image
    np.testing.assert_array_equal(physeg.segment(img, method="heat", channel_axis=-1, rng=0),
                                  mixtures)


def test_mixtures_are_reproducible_and_the_object_is_label_1():
    img, mask = _two_colour_background(seed=1)
    a = physeg.segment(img, method="heat", channel_axis=-1, fidelity="mixtures", rng=4)
    b = physeg.segment(img, method="heat", channel_axis=-1, fidelity="mixtures", rng=4)
    np.testing.assert_array_equal(a, b)
    dark = 1 - img  # the inverted image: the object is still label 1
    c = physeg.segment(dark, method="heat", channel_axis=-1, fidelity="mixtures", rng=4)
    assert _dice(c == 1, mask) > 0.9


def test_mixtures_work_on_grey_images_and_volumes():
    gen = np.random.default_rng(2)
    yy, xx = np.mgrid[:48, :48]
    mask = (yy - 24) ** 2 + (xx - 24) ** 2 < 144
    img = np.where(mask, 0.3, 0.6) + gen.normal(0, 0.05, mask.shape)
    lab = physeg.segment(img, method="heat", fidelity="mixtures", rng=0)
    assert _dice(lab == 1, mask) > 0.95
    zz, yy, xx = np.mgrid[:20, :24, :24]
    ball = (zz - 10) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 < 36
    vol = np.where(ball, 0.8, 0.2) + gen.normal(0, 0.05, ball.shape)
    lab3 = physeg.segment(vol, method="heat", fidelity="mixtures", rng=0)
    assert lab3.shape == vol.shape and _dice(lab3 == 1, ball) > 0.9


def test_mixtures_refuse_what_they_do_not_model():
    img, _ = _two_colour_background()
    with pytest.raises(ValueError, match="two phases"):
        physeg.segment(img, method="heat", channel_axis=-1, fidelity="mixtures", classes=3)
    with pytest.raises(ValueError, match="border prior"):
        physeg.segment(img, method="heat", channel_axis=-1, fidelity="mixtures", init="otsu")


def test_border_geodesic_is_small_where_the_border_reaches_without_crossing_an_edge():
    img, mask = _two_colour_background()
    feats = region_features(img, -1, texture_sigma=2.0)
    assert feats.shape == (64, 64, 4) and feats.dtype == np.float32
    geo = border_geodesic(feats)
    assert geo[mask].mean() > 3 * geo[~mask].mean()
    assert _dice(prior_partition(geo), mask) > 0.8


def test_kinetic_with_the_mixture_feature_finds_the_same_object():
    img, mask = _two_colour_background()
    lab = physeg.segment(img, method="kinetic", channel_axis=-1, fidelity="mixtures", rng=0)
    assert _dice(lab == 1, mask) > 0.9
