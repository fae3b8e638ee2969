"""Noise models: statistics per region, determinism, region separation, errors."""

import numpy as np
import pytest

from physeg.data.noise import NOISE_LEVELS, add_noise, noise_intensity, noisy_shape
from physeg.data.synthetic import shape_image


def _img(n=256, fg=0.7, bg=0.3, dtype=np.float64):
    return shape_image("square", n, shape_value=fg, background_value=bg, dtype=dtype)


def _check_mean_var(x, mean, var, z=5.0):
    """Sample mean and variance within z standard errors (var of s^2 ~ 2 var^2 / n, Gaussian;
    we use 3 var^2 / n, which also covers the uniform and Poisson kurtosis)."""
    n = x.size
    assert abs(x.mean() - mean) < z * np.sqrt(var / n) + 1e-12, (x.mean(), mean)
    assert abs(x.var(ddof=1) - var) < z * np.sqrt(3 * var**2 / n) + 1e-12, (x.var(), var)


def test_levels_are_spec_values():
    assert NOISE_LEVELS == {
        "gaussian": (0.1, 0.2, 0.3, 0.4),
        "uniform": (0.2, 0.4, 0.6, 0.8),
        "speckle": (0.1, 0.2, 0.3, 0.4),
        "poisson": (50.0, 20.0, 10.0, 5.0),
    }
    assert noise_intensity("uniform", 3) == 0.6
    assert noise_intensity("gaussian", 0) == 0.0


def test_gaussian_statistics_per_region():
    img, m = _img()
    out = add_noise(img, m, kind="gaussian", intensity=0.2, background_intensity=0.05, rng=0,
                    clip=False)
    _check_mean_var(out[m], 0.7, 0.2**2)
    _check_mean_var(out[~m], 0.3, 0.05**2)


def test_uniform_statistics_and_support():
    img, m = _img()
    out = add_noise(img, m, kind="uniform", intensity=0.4, background_intensity=0.2, rng=1,
                    clip=False)
    _check_mean_var(out[m], 0.7, 0.4**2 / 3)
    _check_mean_var(out[~m], 0.3, 0.2**2 / 3)
    assert np.all(np.abs(out[m] - 0.7) <= 0.4) and np.all(np.abs(out[~m] - 0.3) <= 0.2)


def test_speckle_variance_proportional_to_intensity_squared():
    img, m = _img(fg=0.8, bg=0.2)
    out = add_noise(img, m, kind="speckle", intensity=0.3, rng=2, clip=False)
    _check_mean_var(out[m], 0.8, (0.8 * 0.3) ** 2)
    _check_mean_var(out[~m], 0.2, (0.2 * 0.3) ** 2)
    ratio = out[m].var() / out[~m].var()
    assert abs(ratio - 16.0) < 2.0  # (0.8 / 0.2)^2
    # A zero-valued region stays clean under multiplicative noise.
    img0, m0 = _img(fg=1.0, bg=0.0)
    out0 = add_noise(img0, m0, kind="speckle", intensity=0.3, rng=2, clip=False)
    assert np.all(out0[~m0] == 0.0)


def test_poisson_mean_and_variance():
    img, m = _img(fg=0.8, bg=0.2)
    out = add_noise(img, m, kind="poisson", intensity=20, background_intensity=5, rng=3,
                    clip=False)
    _check_mean_var(out[m], 0.8, 0.8 / 20)
    _check_mean_var(out[~m], 0.2, 0.2 / 5)
    # Values are on the lattice k / kappa.
    np.testing.assert_allclose(out[m] * 20, np.round(out[m] * 20), atol=1e-9)
    np.testing.assert_allclose(out[~m] * 5, np.round(out[~m] * 5), atol=1e-9)


def test_region_separation_mixed_kinds():
    img, m = _img()
    out = add_noise(img, m, kind="gaussian", intensity=0.1, background_kind="none", rng=4)
    np.testing.assert_array_equal(out[~m], img[~m])
    assert not np.array_equal(out[m], img[m])
    out = add_noise(img, m, kind="none", background_kind="uniform", background_intensity=0.2,
                    rng=4)
    np.testing.assert_array_equal(out[m], img[m])
    assert not np.array_equal(out[~m], img[~m])


def test_determinism_and_input_untouched():
    img, m = _img(dtype=np.float32)
    before = img.copy()
    a = add_noise(img, m, kind="gaussian", intensity=0.2, rng=7)
    b = add_noise(img, m, kind="gaussian", intensity=0.2, rng=np.random.default_rng(7))
    c = add_noise(img, m, kind="gaussian", intensity=0.2, rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(img, before)
    assert a.dtype == np.float32


def test_clip_to_unit_interval():
    img, m = _img(fg=1.0, bg=0.0)
    out = add_noise(img, m, kind="gaussian", intensity=0.4, rng=0)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.min() == 0.0 and out.max() == 1.0  # clipping happened at both ends


def test_rgb_per_channel():
    img, m = shape_image("circle", 200, channels=3, shape_value=(0.8, 0.5, 0.2),
                         background_value=0.3, dtype=np.float64)
    out = add_noise(img, m, kind=["gaussian", "uniform", "none"], intensity=[0.1, 0.3, 0.0],
                    background_kind="gaussian", background_intensity=(0.05, 0.1, 0.2), rng=1,
                    clip=False)
    assert out.shape == img.shape
    _check_mean_var(out[..., 0][m], 0.8, 0.01)
    _check_mean_var(out[..., 1][m], 0.5, 0.09 / 3)
    np.testing.assert_array_equal(out[..., 2][m], 0.2)
    for c, s in enumerate((0.05, 0.1, 0.2)):
        _check_mean_var(out[..., c][~m], 0.3, s**2)
    # Channels are independent draws.
    corr = np.corrcoef(out[..., 0][~m], out[..., 1][~m])[0, 1]
    assert abs(corr) < 0.05


def test_noisy_shape_levels_and_defaults():
    img, m = noisy_shape("triangle", 128, "gaussian", 3, rng=0, clip=False)
    assert img.shape == m.shape == (128, 128) and img.dtype == np.float32
    _check_mean_var(img[m].astype(np.float64), 1.0, 0.3**2)
    img2, _ = noisy_shape("triangle", 128, "gaussian", 3, rng=0, clip=False)
    np.testing.assert_array_equal(img, img2)
    # Test 3.1: lower background level; level 0 is clean.
    img3, m3 = noisy_shape("circle", 128, "speckle", 2, rng=0, background_level=0)
    np.testing.assert_array_equal(img3[~m3], np.float32(0.2))
    rgb, m4 = noisy_shape("square", 64, "poisson", 1, rng=0, channels=3)
    assert rgb.shape == (64, 64, 3)


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        (dict(kind="gausian", intensity=0.1), ValueError, "Did you mean 'gaussian'"),
        (dict(kind="gaussian"), ValueError, "intensity is required"),
        (dict(kind="gaussian", intensity=-0.1), ValueError, "must be >= 0"),
        (dict(kind="poisson", intensity=0), ValueError, "must be > 0"),
        (dict(kind="gaussian", intensity="0.1"), TypeError, "must be a number"),
        (dict(kind="gaussian", intensity=0.1, background_kind="uniform"), ValueError,
         "background_intensity is required"),
        (dict(kind="gaussian", intensity=[0.1, 0.2]), ValueError, "one per channel"),
    ],
)
def test_parameter_errors(kwargs, exc, msg):
    img, m = _img(32)
    with pytest.raises(exc, match=msg):
        add_noise(img, m, rng=0, **kwargs)


def test_input_errors():
    img, m = _img(32)
    with pytest.raises(TypeError, match="float image"):
        add_noise((img * 255).astype(np.uint8), m, intensity=0.1)
    with pytest.raises(ValueError, match="does not match image shape"):
        add_noise(img, m[:-1], intensity=0.1)
    with pytest.raises(ValueError, match="boolean"):
        add_noise(img, m * 2.5, intensity=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        add_noise(img - 1.0, m, kind="poisson", intensity=10)
    with pytest.raises(ValueError, match="level must be an int in 0..4"):
        noisy_shape("square", 32, "gaussian", 5)
