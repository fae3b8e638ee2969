"""Tests of the ``heat`` method (heat-semigroup threshold dynamics) with known answers."""

from __future__ import annotations

import numpy as np
import pytest

import physeg
from physeg.families.heat import segment_heat
from physeg.families.heat._mbo import heat_multiplier, heat_smoother, heat_step


def _disc(shape, centre, radius):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return r2 <= radius**2


def _noisy(mask, sigma, seed=0, lo=0.25, hi=0.75):
    rng = np.random.default_rng(seed)
    return (lo + (hi - lo) * mask + rng.normal(0.0, sigma, mask.shape)).astype(np.float32)


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


# ---- the heat step ------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [None, (2.0, 0.5)])
def test_cosine_mode_decays_exactly(spacing):
    n0, n1, k0, k1, tau = 40, 56, 3, 5, 1.7
    i = np.arange(n0)[:, None]
    j = np.arange(n1)[None, :]
    u = np.cos(np.pi * k0 * (i + 0.5) / n0) * np.cos(np.pi * k1 * (j + 0.5) / n1)
    h0, h1 = (1.0, 1.0) if spacing is None else spacing
    lam_k = (np.pi * k0 / (n0 * h0)) ** 2 + (np.pi * k1 / (n1 * h1)) ** 2
    out = heat_step(u.astype(np.float32), heat_multiplier(u.shape, tau, spacing))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.exp(-tau * lam_k) * u, atol=2e-6)


def test_heat_step_conserves_mass_and_constants_3d():
    rng = np.random.default_rng(1)
    u = (rng.random((9, 17, 12)) > 0.5).astype(np.float32)
    mult = heat_multiplier(u.shape, 3.0, (1.0, 2.0, 1.0))
    out = heat_step(u, mult)
    assert abs(float(out.sum(dtype=np.float64)) - float(u.sum())) < 1e-3
    assert out.min() > -1e-4 and out.max() < 1 + 1e-4
    np.testing.assert_allclose(heat_step(np.ones_like(u), mult), 1.0, atol=1e-6)
    assert not mult.flags.writeable  # cached multipliers cannot be corrupted by a caller


# ---- the model ----------------------------------------------------------------------------


def test_energy_never_increases_binary_grey():
    mask = _disc((96, 96), (40, 55), 22)
    img = _noisy(mask, 0.3, seed=3)
    # a poor start (a box inside the disc) gives a long descent (about 25 steps) to check
    init = np.zeros(mask.shape, np.uint8)
    init[25:50, 40:65] = 1
    labels, info = segment_heat(img, init="mask", init_labels=init, lam=3.0, return_energy=True)
    e = np.asarray(info["energy"])
    assert len(e) >= 10
    assert np.all(np.diff(e) <= 1e-6 * e[0]), e
    assert e[-1] < e[0]
    assert info["stop"] == "converged"
    assert _dice(labels == 1, mask) > 0.97


def test_energy_never_increases_multiphase_rgb():
    rng = np.random.default_rng(4)
    lab = np.zeros((64, 80), int)
    lab[_disc(lab.shape, (30, 25), 15)] = 1
    lab[10:50, 50:72] = 2
    colours = np.array([[0.1, 0.2, 0.3], [0.7, 0.3, 0.2], [0.3, 0.8, 0.6]])
    img = colours[lab] + rng.normal(0, 0.15, lab.shape + (3,))
    labels, info = segment_heat(img, classes=3, channel_axis=-1, init="kmeans", lam=4.0,
                                rng=0, return_energy=True)
    e = np.asarray(info["energy"])
    assert np.all(np.diff(e) <= 1e-6 * e[0]), e
    # labels are ordered by brightness (mean over channels): bg 0.2, disc 0.4, box 0.567
    assert np.mean(labels == lab) > 0.99


def test_disc_stays_in_place_after_100_iterations():
    mask = _disc((128, 128), (50.3, 77.6), 20)
    img = _noisy(mask, 0.3, seed=5)
    true_c = np.argwhere(mask).mean(axis=0)
    labels, info = segment_heat(img, max_iter=100, tol=0.0, return_energy=True)
    assert info["iterations"] <= 100
    got_c = np.argwhere(labels == 1).mean(axis=0)
    assert np.linalg.norm(got_c - true_c) <= 0.5
    # the result is a fixed point: more iterations would not move it
    again, info2 = segment_heat(img, init="mask", init_labels=labels, max_iter=100,
                                return_energy=True)
    assert info2["iterations"] == 1 and info2["stop"] == "converged"
    np.testing.assert_array_equal(again, labels)


def test_pure_curvature_flow_shrinks_disc_without_drift():
    # With a huge boundary weight the fidelity is negligible: MBO is curvature flow, so a disc
    # shrinks around its centre (heatdiff's even-length kernel moved it 20 px in 20 steps).
    mask = _disc((100, 120), (43.5, 70.5), 24)
    img = np.where(mask, 0.75, 0.25)
    labels, info = segment_heat(img, lam=400.0, tau=16.0, max_iter=15, return_energy=True)
    assert info["iterations"] == 15 and info["stop"] == "max_iter"
    assert np.all(np.diff(info["energy"]) <= 1e-6 * info["energy"][0])
    area = np.count_nonzero(labels)
    assert 0 < area < 0.9 * mask.sum()
    got_c = np.argwhere(labels == 1).mean(axis=0)
    assert np.linalg.norm(got_c - np.array([43.5, 70.5])) <= 0.5


def test_uint8_and_float_give_same_labels():
    mask = _disc((90, 110), (45, 50), 25)
    img8 = np.clip(np.round(255 * _noisy(mask, 0.2, seed=7)), 0, 255).astype(np.uint8)
    ref = segment_heat(img8)
    for other in (img8.astype(np.float32) / 255, img8.astype(np.float64) / 255,
                  img8.astype(np.uint16) * 257):
        np.testing.assert_array_equal(segment_heat(other), ref)
    assert _dice(ref == 1, mask) > 0.98
    rgb8 = np.stack([img8, 255 - img8, img8 // 2], axis=-1)
    np.testing.assert_array_equal(
        segment_heat(rgb8, channel_axis=-1, fidelity="means"),
        segment_heat(rgb8.astype(np.float32) / 255, channel_axis=-1, fidelity="means"),
    )
    # the mixtures see the same CIELAB features up to float rounding
    agree = np.mean(segment_heat(rgb8, channel_axis=-1, rng=0)
                    == segment_heat(rgb8.astype(np.float32) / 255, channel_axis=-1, rng=0))
    assert agree > 0.999


def test_3d_ellipsoid():
    shape = (36, 48, 40)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    mask = ((z - 17) / 11.0) ** 2 + ((y - 25) / 16.0) ** 2 + ((x - 19) / 13.0) ** 2 <= 1
    img = _noisy(mask, 0.3, seed=8)
    labels = physeg.segment(img, method="heat")
    assert labels.shape == shape
    assert _dice(labels == 1, mask) > 0.98


def test_rgb_object_invisible_in_grey():
    # the object differs from the background only in hue: the channel mean is equal
    mask = _disc((80, 80), (40, 38), 22)
    obj, bg = np.array([0.8, 0.2, 0.5]), np.array([0.2, 0.8, 0.5])
    rng = np.random.default_rng(9)
    img = np.where(mask[..., None], obj, bg) + rng.normal(0, 0.2, mask.shape + (3,))
    chw = np.moveaxis(img, -1, 0)
    labels = physeg.segment(chw, method="heat", channel_axis=0)
    agree = max(_dice(labels == 1, mask), _dice(labels == 0, mask))
    assert agree > 0.99


def test_three_phases_ordered_by_brightness():
    lab = np.zeros((96, 96), int)
    lab[_disc(lab.shape, (48, 48), 36)] = 1
    lab[_disc(lab.shape, (48, 48), 16)] = 2
    rng = np.random.default_rng(10)
    img = np.array([0.8, 0.5, 0.2])[lab] + rng.normal(0, 0.08, lab.shape)  # centre darkest
    labels, info = segment_heat(img, classes=3, lam=4.0, foreground="bright",
                                return_energy=True)
    assert np.all(np.diff(info["means"][:, 0]) > 0)  # label order = brightness order
    assert np.mean(labels == (2 - lab)) > 0.99
    # the border prior: label 0 = the phase on the border (the bright outside), then by
    # brightness (the dark centre 1, the ring 2)
    auto, info = segment_heat(img, classes=3, lam=4.0, return_energy=True)
    assert np.mean(auto == np.array([0, 2, 1])[lab]) > 0.99
    assert info["means"][0, 0] > info["means"][2, 0] > info["means"][1, 0]


def test_spacing_rescales_tau_and_lam_exactly():
    mask = _disc((70, 90), (30, 44), 18)
    img = _noisy(mask, 0.25, seed=11)
    ref = segment_heat(img, tau=1.0, lam=8.0)
    h = 0.5
    scaled, info = segment_heat(img, tau=1.0 * h * h, lam=8.0 * h, spacing=(h, h),
                                return_energy=True)
    np.testing.assert_array_equal(scaled, ref)
    # anisotropic voxels: the result differs, but the disc is still found
    aniso = segment_heat(img, spacing=(2.0, 1.0))
    assert _dice(aniso == 1, mask) > 0.97


def test_input_never_modified():
    mask = _disc((48, 48), (20, 24), 10)
    img = _noisy(mask, 0.2, seed=12)
    init = mask.astype(np.uint8)
    img_c, init_c = img.copy(), init.copy()
    segment_heat(img, init="mask", init_labels=init, reaction=0.3)
    segment_heat(img)
    np.testing.assert_array_equal(img, img_c)
    np.testing.assert_array_equal(init, init_c)


def test_a_dark_object_is_label_1_by_the_border_prior():
    mask = _disc((64, 64), (32, 32), 16)
    img = _noisy(mask, 0.1, seed=13, lo=0.8, hi=0.2)
    assert _dice(segment_heat(img) == 1, mask) > 0.99
    assert _dice(segment_heat(img, foreground="dark") == 1, mask) > 0.99
    assert _dice(segment_heat(img, foreground="bright") == 0, mask) > 0.99


def test_reaction_grows_a_seed_to_the_object():
    mask = _disc((96, 96), (48, 50), 26)
    img = _noisy(mask, 0.15, seed=14)
    seed = _disc(mask.shape, (48, 50), 6).astype(np.uint8)
    early = segment_heat(img, init="mask", init_labels=seed, reaction=0.3, tau=4.0, max_iter=3)
    assert np.count_nonzero(early) < 0.5 * mask.sum()  # it grows, it does not jump
    assert np.count_nonzero(early) > seed.sum()
    final, info = segment_heat(img, init="mask", init_labels=seed, reaction=0.3, tau=4.0,
                               max_iter=400, return_energy=True)
    assert info["stop"] == "converged"
    assert _dice(final == 1, mask) > 0.97


def test_same_seed_same_labels_kmeans():
    rng = np.random.default_rng(15)
    img = rng.random((40, 40, 3))
    a = segment_heat(img, channel_axis=-1, init="kmeans", classes=3, rng=3)
    b = segment_heat(img, channel_axis=-1, init="kmeans", classes=3, rng=3)
    np.testing.assert_array_equal(a, b)


# ---- errors -------------------------------------------------------------------------------


def test_constant_image_error():
    with pytest.raises(ValueError, match="constant"):
        segment_heat(np.full((16, 16), 7, np.uint8))
    with pytest.raises(ValueError, match="constant"):
        physeg.segment(np.zeros((16, 16, 3)), method="heat", channel_axis=-1)


def test_bad_arguments_have_clear_errors():
    img = _noisy(_disc((32, 32), (16, 16), 8), 0.1)
    with pytest.raises(ValueError, match="needs init_labels"):
        segment_heat(img, init="mask")
    with pytest.raises(ValueError, match="does not match the image's spatial shape"):
        segment_heat(img, init="mask", init_labels=np.ones((10, 10), int))
    with pytest.raises(ValueError, match="only used with init='mask'"):
        segment_heat(img, init="otsu", init_labels=np.ones((32, 32), int))
    with pytest.raises(ValueError, match="no pixel of phase"):
        segment_heat(img, init_labels=np.zeros((32, 32), int))
    with pytest.raises(ValueError, match="labels must be 0..2"):
        segment_heat(img, classes=3, init_labels=np.full((32, 32), 5))
    with pytest.raises(ValueError, match="Did you mean 'kmeans'"):
        segment_heat(img, init="kmean")
    with pytest.raises(ValueError, match="out of range"):
        segment_heat(img, reaction=2.0)
    with pytest.raises(ValueError, match="out of range"):
        physeg.segment(img, method="heat", tau="0")
    with pytest.raises(ValueError, match="spacing must give one positive size"):
        segment_heat(img, spacing=(1.0, -1.0))


def test_registered_with_declared_params():
    m = physeg.get_method("heat")
    assert m.supports_3d and m.supports_multichannel
    names = {p.name for p in m.params}
    assert {"classes", "tau", "lam", "init", "reaction", "max_iter", "tol"} <= names
    assert "init_labels" not in names
    img = _noisy(_disc((40, 40), (20, 20), 10), 0.1)
    labels = physeg.segment(img, method="heat", tau="2", lam="12", init="otsu")
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}


def test_fit_picks_tau_lam_and_model_roundtrips(tmp_path):
    masks = [_disc((48, 56), (20, 30), 12), _disc((48, 56), (28, 24), 14)]
    images = [_noisy(m, 0.25, seed=20 + i) for i, m in enumerate(masks)]
    model = physeg.fit("heat", images, masks, learn="grid", init="otsu")
    assert model.params["tau"] in (0.5, 1.0, 2.0, 4.0)
    assert model.params["lam"] in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    assert len(model.info["grid"]) == 24 and model.info["score"] > 0.97
    # the chosen pair is the best of the grid
    assert model.info["score"] == max(g["score"] for g in model.info["grid"])
    labels = model.predict(images[0])
    assert _dice(labels == 1, masks[0]) > 0.95
    path = model.save(tmp_path / "heat.json")
    again = physeg.load(path)
    np.testing.assert_array_equal(again.predict(images[0]), labels)
    with pytest.raises(ValueError, match="needs masks"):
        physeg.fit("heat", images, None)


@pytest.mark.parametrize("bad, error", [(-1, ValueError), ("abc", TypeError), (1.5, TypeError)])
def test_bad_rng_is_refused_whatever_the_init(bad, error):
    """The one rng rule (physeg._validate.as_rng), as in kinetic and dynaseg: otsu and mask
    initialisations use no random numbers, but a bad seed is still an error, not ignored."""
    img = _noisy(_disc((24, 24), (12, 12), 6), 0.1)
    with pytest.raises(error, match="rng"):
        segment_heat(img, init="otsu", rng=bad)
    with pytest.raises(error, match="rng"):
        physeg.segment(img, method="heat", rng=bad)
    assert segment_heat(img, init="otsu", rng=0).shape == img.shape


def test_fit_names_the_pair_whose_mask_has_another_size():
    masks = [_disc((32, 32), (16, 16), 8), _disc((32, 32), (14, 16), 8)]
    images = [_noisy(m, 0.1, seed=i) for i, m in enumerate(masks)]
    masks[1] = masks[1][:, :30]
    with pytest.raises(ValueError, match=r"masks\[1\] shape \(32, 30\) does not match the "
                                         r"image's spatial shape \(32, 32\)"):
        physeg.fit("heat", images, masks, learn="grid", init="otsu")
    rgb = np.repeat(images[0][..., None], 3, axis=-1)
    with pytest.raises(ValueError, match=r"masks\[0\] shape \(32, 30\) .* \(32, 32\)"):
        physeg.fit("heat", [rgb], [masks[1]], learn="grid", init="otsu")


def test_the_smoother_diffuses_a_stack_of_phases_as_the_dct_does():
    # threshold dynamics diffuses one field (binary) or one per phase (K > 2): the Gaussian
    # filter must not mix the phases, and match the exact semigroup to its truncation
    gen = np.random.default_rng(4)
    stack = (gen.random((3, 29, 41)) > 0.5).astype(np.float32)
    for tau, spacing in ((1.0, (1.0, 1.0)), (2.0, (1.0, 1.5)), (0.3, (1.0, 1.0))):
        exact = heat_step(stack, heat_multiplier(stack.shape[1:], tau, spacing))
        got = heat_smoother(stack.shape[1:], tau, spacing)(stack)
        assert got.dtype == np.float32 and got.shape == stack.shape
        np.testing.assert_allclose(got, exact, atol=1e-4)
        np.testing.assert_allclose(got.sum(axis=(1, 2)), stack.sum(axis=(1, 2)), rtol=1e-4)
