"""physeg._regions: the shared no-label region models (working resolution, start, densities)."""

from __future__ import annotations

import numpy as np
import pytest

from physeg._regions import (
    WORK_PIXELS,
    DiagonalMixture,
    PhaseMixtures,
    _log_density,
    em_steps,
    explained_variance,
    initial_partition,
    many_compact_objects,
    many_objects,
    may_be_many_objects,
    region_features,
    seed_mixture,
    to_full_resolution,
    to_working_resolution,
)

pytest.importorskip("sklearn")


def test_the_float32_density_is_scikit_learns():
    from sklearn.mixture import GaussianMixture

    gen = np.random.default_rng(0)
    X = np.concatenate([gen.normal(0, [1, 2, 3], (500, 3)), gen.normal(4, 0.5, (300, 3))])
    model = GaussianMixture(4, covariance_type="diag", random_state=0).fit(X)
    np.testing.assert_allclose(_log_density(model, X), model.score_samples(X), atol=1e-4)


def _two_clusters(seed=0):
    gen = np.random.default_rng(seed)
    return np.concatenate([gen.normal(0, [1, 2, 3], (1500, 3)), gen.normal(4, 0.5, (500, 3))])


@pytest.mark.parametrize("max_iter, tol", [(1, 1e-2), (3, 1e-2), (10, 1e-2), (10, 0.0)])
def test_warm_em_steps_are_scikit_learns(max_iter, tol):
    import warnings

    from sklearn.mixture import GaussianMixture

    X = _two_clusters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns when max_iter stops it
        start = GaussianMixture(5, covariance_type="diag", max_iter=2, random_state=0).fit(X[:999])
        ref = GaussianMixture(5, covariance_type="diag", reg_covar=1e-2, tol=tol,
                              max_iter=max_iter, weights_init=start.weights_,
                              means_init=start.means_, precisions_init=start.precisions_
                              ).fit(X + 0.3)
    ours = em_steps(start, X + 0.3, max_iter=max_iter, tol=tol, reg_covar=1e-2)
    for name in ("weights_", "means_", "precisions_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-9,
                                   atol=1e-10)


@pytest.mark.parametrize("seed", [0, 7])
def test_seeded_fit_is_scikit_learns_kmeans_plusplus_fit(seed):
    import warnings

    from sklearn.mixture import GaussianMixture

    X = _two_clusters(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GaussianMixture(5, covariance_type="diag", reg_covar=1e-2, tol=1e-2, max_iter=10,
                              init_params="k-means++", random_state=seed).fit(X)
    ours = em_steps(seed_mixture(X, 5, seed), X, max_iter=10, tol=1e-2, reg_covar=1e-2)
    assert isinstance(ours, DiagonalMixture)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.precisions_, ref.precisions_, rtol=1e-9)
    np.testing.assert_allclose(_log_density(ours, X), ref.score_samples(X), atol=1e-4)


def test_log_odds_favour_the_phase_a_pixel_came_from():
    gen = np.random.default_rng(1)
    X = np.concatenate([gen.normal(0, 1, (400, 2)), gen.normal(5, 1, (400, 2))])
    labels = np.r_[np.zeros(400, int), np.ones(400, int)]
    mix = PhaseMixtures(2, 2000, np.random.default_rng(0))
    mix.fit(X, labels)
    odds = mix.log_odds(X)
    assert odds.dtype == np.float32
    assert (odds[:400] < 0).mean() > 0.99 and (odds[400:] > 0).mean() > 0.99


def test_working_resolution_keeps_dtype_aspect_and_small_images():
    img = (np.random.default_rng(0).random((300, 200, 3)) * 255).astype(np.uint8)
    small = to_working_resolution(img, -1)
    assert small.dtype == np.uint8 and small.shape[-1] == 3
    assert abs(small.shape[0] / small.shape[1] - 1.5) < 0.05
    assert 0.9 * WORK_PIXELS <= small.shape[0] * small.shape[1] <= 1.1 * WORK_PIXELS
    tiny = np.zeros((100, 150))  # fewer than twice the working pixels: untouched
    assert to_working_resolution(tiny, None) is tiny
    vol = np.zeros((40, 40, 40), np.float32)  # 3D: every axis by the same factor
    assert to_working_resolution(vol, None).shape == (22, 22, 22)
    field = np.linspace(-1, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    back = to_full_resolution(field, (40, 60))
    assert back.shape == (40, 60) and back.dtype == np.float32
    np.testing.assert_allclose(back.mean(), 0.0, atol=1e-3)  # bilinear: no shift


def test_the_first_partition_is_the_image_minus_a_border_strip():
    feats = region_features(np.random.default_rng(0).random((40, 60)), None)
    inside = initial_partition(feats)
    assert not inside[:2].any() and not inside[-2:].any()
    assert not inside[:, :3].any() and not inside[:, -3:].any()
    assert inside[2:-2, 3:-3].all()
    with pytest.raises(ValueError, match="constant"):
        initial_partition(region_features(np.full((20, 20), 0.5), None))


def _discs(centres, radius, shape=(96, 96)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, bool)
    for cy, cx in centres:
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    return out


def test_many_objects_tells_nuclei_from_one_object_with_specks():
    grid = [(12 + 24 * i, 12 + 24 * j) for i in range(4) for j in range(4)]
    assert many_objects(_discs(grid, 5).astype(np.uint8))  # 16 nuclei
    one = _discs([(48, 48)], 30) | _discs(grid, 1)  # one object and 16 specks
    assert not many_objects(one.astype(np.uint8))
    assert not many_objects(_discs(grid[:5], 5).astype(np.uint8))  # too few to be "many"
    # many, but one of them holds most of the foreground: a salient object with companions
    assert not many_objects((_discs(grid, 4) | _discs([(48, 48)], 26)).astype(np.uint8))


def test_many_compact_objects_counts_round_nuclei_beside_a_clump_and_not_irregular_blobs():
    grid = [(12 + 24 * i, 12 + 24 * j) for i in range(4) for j in range(4)]
    outer = [(y, x) for y, x in grid if 12 in (y, x) or 84 in (y, x)]  # 12 round nuclei
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    # a ring-shaped clump holding about half the foreground: many_objects says no
    ring = _discs([(48 + 14 * np.sin(a), 48 + 14 * np.cos(a)) for a in angles], 5)
    labels = (ring | _discs(outer, 5)).astype(np.uint8)
    assert not many_objects(labels)
    assert many_compact_objects(labels)
    assert not many_compact_objects(labels, count=13)  # the ring (solidity 0.68) is not one
    # as many crosses (solidity 0.63) are many objects but not compact ones
    crosses = np.zeros((96, 96), bool)
    for cy, cx in grid:
        crosses[cy - 6:cy + 7, cx - 1:cx + 2] = crosses[cy - 1:cy + 2, cx - 6:cx + 7] = True
    assert many_objects(crosses.astype(np.uint8))
    assert not many_compact_objects(crosses.astype(np.uint8))


def test_the_cheap_many_objects_test_passes_nuclei_and_rejects_one_object():
    grid = [(12 + 24 * i, 12 + 24 * j) for i in range(4) for j in range(4)]
    pink, purple = np.array([230, 180, 200], np.uint8), np.array([90, 40, 140], np.uint8)
    nuclei = np.where(_discs(grid, 6)[..., None], purple, pink)
    horse = np.where(_discs([(48, 48)], 30)[..., None], purple, pink)
    assert may_be_many_objects(region_features(nuclei, -1))
    assert not may_be_many_objects(region_features(horse, -1))


def test_explained_variance_is_the_two_phase_signal_share():
    # two flat phases of contrast 1 in shares p, 1 - p plus Gaussian noise of std s: the
    # means explain p (1 - p) / (p (1 - p) + s^2) of the variance; 1 without noise, 0 for a
    # partition that ignores the image
    gen = np.random.default_rng(0)
    labels = (gen.random((400, 500)) < 0.3).astype(np.uint8)
    flat = np.stack([labels, 2 * labels], axis=-1).astype(float)  # 2 channels, |contrast|^2 = 5
    assert explained_variance(flat, labels) == pytest.approx(1.0)
    noisy = flat + gen.normal(0, 0.5, flat.shape)
    signal = 0.3 * 0.7 * 5
    assert explained_variance(noisy, labels) == pytest.approx(signal / (signal + 2 * 0.25),
                                                              abs=0.01)
    unrelated = (gen.random(labels.shape) < 0.5).astype(np.uint8)
    assert explained_variance(noisy, unrelated) < 0.01
    assert explained_variance(np.ones((8, 8, 3)), labels[:8, :8]) == 0.0
