"""Kinetic fitting: CBO over theta with the histogram (l2), Dice and mixed losses; save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import physeg
from physeg.families.kinetic import _fit


def _pair(seed, n=40, noise=0.25):
    from physeg.data.noise import noisy_shape

    return noisy_shape("square", n, "gaussian", 2, rng=seed)


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("loss", ["dice", "l2", "mixed"])
def test_fit_save_load_predict(tmp_path, loss):
    img, m = _pair(0)
    model = physeg.fit("kinetic", [img], [m], loss=loss, n_agents=4, max_iter=2, fit_size=24,
                       rng=0, t_final=2.0)
    lo, hi = _fit.theta_bounds(1, 2).T
    theta = [model.params["delta"], model.params["sigma"], model.params["radius"],
             float(model.params["barriers"])]
    assert np.all(np.asarray(theta) >= lo) and np.all(np.asarray(theta) <= hi)
    assert model.info["loss"] == loss and np.isfinite(model.info["loss_value"])
    assert model.info["n_evals"] >= 4 * 2
    path = model.save(tmp_path / "k.json")
    doc = json.loads(path.read_text())
    assert doc["method"] == "kinetic" and doc["params"]["barriers"] == model.params["barriers"]
    back = physeg.load(path)
    assert isinstance(back, physeg.families.kinetic.KineticModel) and back.params == model.params
    test_img, test_m = _pair(1)
    a = back.predict(test_img, rng=3)
    b = model.predict(test_img, rng=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == test_m.shape


def test_fit_is_deterministic_under_seed():
    img, m = _pair(0)
    kw = dict(loss="l2", n_agents=4, max_iter=2, fit_size=24, t_final=1.0)
    a = physeg.fit("kinetic", [img], [m], rng=7, **kw)
    b = physeg.fit("kinetic", [img], [m], rng=7, **kw)
    assert a.params == b.params


def test_dice_fit_finds_a_good_mask_on_other_image():
    img, m = _pair(0)
    model = physeg.fit("kinetic", [img], [m], loss="dice", n_agents=6, max_iter=3, fit_size=32,
                       rng=1)
    assert model.info["loss_value"] < 0.05  # 1 - Dice on the training image
    test_img, test_m = _pair(5)
    assert _dice(model.predict(test_img, rng=0), test_m) >= 0.95


def test_l2_objective_is_the_histogram_loss_of_the_macro_model():
    from physeg.families.kinetic import _macro

    img, m = _pair(0)
    feats, labs = _fit.prepare([img], [m], 2, 32)
    obj = _fit.make_objective(feats, labs, classes=2, loss="l2",
                              base={"transport_rate": 20.0, "binarise_rate": 0.5,
                                    "t_final": 2.0}, n_bins=30, rng=np.random.default_rng(0))
    theta = np.array([[0.3, 0.2, 0.1, 0.5], [0.5, 0.5, 0.05, 0.4]])
    vals = obj(theta)
    st = _macro.macro_setup(feats[0], n_bins=30)
    gt = _macro.gt_distribution([1 - labs[0].mean(), labs[0].mean()], 30)
    for a in range(2):
        out = _macro.macro_solve(st, delta=theta[a, :1], sigma=theta[a, 1:2],
                                 radius=theta[a, 2:3], barriers=theta[a, 3:].reshape(1, 1, 1),
                                 t_final=2.0)
        assert vals[a] == pytest.approx(_macro.histogram_loss(out["rho"][0, 0], gt, 30),
                                        rel=0.05, abs=2e-3)


def test_fit_multiclass_rgb_theta_layout():
    rng = np.random.default_rng(0)
    lab = np.zeros((24, 24), np.uint8)
    lab[4:12, 4:20] = 1
    lab[14:22, 4:20] = 2
    img = np.stack([lab / 2.0, lab / 2.0, 1 - lab / 2.0], -1) + rng.normal(0, 0.05, (24, 24, 3))
    model = physeg.fit("kinetic", [np.clip(img, 0, 1)], [lab], classes=3, loss="l2",
                       n_agents=3, max_iter=1, rng=0, t_final=1.0)
    assert len(model.params["barriers"].split(",")) == 3 * 2
    assert model.predict(np.clip(img, 0, 1), channel_axis=-1, rng=0).shape == lab.shape


def test_fit_errors():
    img, m = _pair(0)
    with pytest.raises(ValueError, match="one mask per training image"):
        physeg.families.kinetic.fit_kinetic([img], None)
    with pytest.raises(ValueError, match="classes=2"):
        physeg.fit("kinetic", [img], [m.astype(np.uint8) * 2])
    with pytest.raises(ValueError, match="loss"):
        physeg.fit("kinetic", [img], [m], loss="huber")
    with pytest.raises(ValueError, match="does not match"):
        physeg.fit("kinetic", [img], [m[:10]])
    with pytest.raises(ValueError, match="unknown fit options"):
        physeg.families.kinetic.fit_kinetic([img], [m], bogus=1)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_fit_rejects_bad_refresh_interval(bad):
    img = np.zeros((16, 16), np.float32)
    img[4:12, 4:12] = 1.0
    with pytest.raises(ValueError, match="refresh must be a positive number"):
        _fit.fit([img], [img.astype(np.uint8)], loss="l2", refresh=bad)


def test_fit_on_non_square_images_keeps_their_rectangle():
    """A 30 x 60 and a 50 x 20 training image are resized to <= fit_size per side with their
    aspect ratio, and both losses (particle model and macroscopic model) run on their
    rectangles Omega; the fitted model segments a non-square image."""
    from physeg.data.noise import noisy_shape

    pairs = [noisy_shape("ellipse", (30, 60), "gaussian", 2, rng=0),
             noisy_shape("circle", (50, 20), "gaussian", 2, rng=1)]
    feats, labs = _fit.prepare([p[0] for p in pairs], [p[1] for p in pairs], 2, 24)
    assert [f.shape[:2] for f in feats] == [(12, 24), (24, 10)]
    model = physeg.fit("kinetic", [p[0] for p in pairs], [p[1] for p in pairs], loss="mixed",
                       n_agents=4, max_iter=2, fit_size=24, rng=0, t_final=2.0)
    assert np.isfinite(model.info["loss_value"])
    test_img, test_m = noisy_shape("ellipse", (40, 80), "gaussian", 2, rng=2)
    lab = model.predict(test_img, rng=0)
    assert lab.shape == test_m.shape and _dice(lab, test_m) >= 0.9
