"""heat's learned fit (issue 16): known answers on synthetic images with exact masks, scribbles,
safe model files (no pickle, tampering refused in one line), the CLI ``physeg fit --scribbles``."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import physeg
from physeg import io as pio
from physeg.data.synthetic import ellipsoids_volume, shape_image, three_level_image
from physeg.families.heat._learned import LearnedHeatModel, descend

pytest.importorskip("sklearn")


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


def _texture(shape, size=64, seed=0):
    """Same mean inside and outside: the object is smooth, the background a coarse texture."""
    gen = np.random.default_rng(seed)
    _, mask = shape_image(shape, size)
    from scipy import ndimage as ndi

    tex = ndi.gaussian_filter(gen.normal(0, 1, (size, size)), 1.0)
    tex = 0.5 + 0.35 * tex / tex.std()
    img = np.where(mask > 0, 0.5 + gen.normal(0, 0.03, mask.shape), tex)
    return np.clip(img, 0, 1).astype(np.float32), mask


def test_texture_where_means_fail():
    """Equal means: the no-label means model cannot separate them, the learned fit can."""
    train, train_mask = _texture("circle", seed=0)
    test, test_mask = _texture("square", seed=1)
    means = physeg.segment(test, "heat", fidelity="means")
    assert max(_dice(means == 1, test_mask), _dice(means == 0, test_mask)) < 0.7
    model = physeg.fit("heat", [train], [train_mask], rng=0)
    assert isinstance(model, LearnedHeatModel)
    assert model.info["class_values"] == [0, 1] and model.info["layout"] == "grey"
    assert _dice(model.predict(test, adapt=0) == 1, test_mask) > 0.94
    # the per-image mixtures + border prior (default adapt=1) cost a little on pure texture
    assert _dice(model.predict(test) == 1, test_mask) > 0.88


def test_colour_same_lightness_different_hue():
    """Object and background of equal grey level but different hue (and noise): colour model."""
    gen = np.random.default_rng(2)
    img, mask = shape_image("triangle", 64, channels=3, shape_value=(0.7, 0.4, 0.4),
                            background_value=(0.4, 0.5, 0.6))
    img = np.clip(img + gen.normal(0, 0.08, img.shape), 0, 1)
    test, tmask = shape_image("circle", 64, channels=3, shape_value=(0.7, 0.4, 0.4),
                              background_value=(0.4, 0.5, 0.6))
    test = np.clip(test + gen.normal(0, 0.08, test.shape), 0, 1)
    model = physeg.fit("heat", [img], [mask], rng=0)
    assert model.info["layout"] == "colour"
    labels = model.predict(test, channel_axis=-1)
    assert labels.dtype == np.uint8 and _dice(labels == 1, tmask) > 0.95


def test_three_classes_and_label_order():
    img, truth = three_level_image(64, values=(0.2, 0.5, 0.8))
    gen = np.random.default_rng(3)
    noisy = img + gen.normal(0, 0.12, img.shape)
    test = img + gen.normal(0, 0.12, img.shape)
    # mask values 10, 20, 30: labels 0, 1, 2 in increasing order of the values
    model = physeg.fit("heat", [noisy], [(truth + 1) * 10], rng=0)
    assert model.info["class_values"] == [10, 20, 30]
    labels = model.predict(test)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.mean(labels == truth) > 0.97


def test_3d_volume():
    vol, mask = ellipsoids_volume((16, 40, 40), n=3, rng=0)
    gen = np.random.default_rng(4)
    train = vol + gen.normal(0, 0.3, vol.shape)
    test, tmask = ellipsoids_volume((16, 40, 40), n=3, rng=1)
    test = test + gen.normal(0, 0.3, test.shape)
    model = physeg.fit("heat", [train], [mask > 0], rng=0, samples=1500, trees=16)
    assert model.info["ndim"] == 3
    # small blobs (1.8 % of the volume): mean curvature is twice as strong in 3D, so a short
    # lam; the colour mixtures and the border prior (adapt) are for 2D photographs, and the
    # no-label prior (0.86 here, the forest 0.97) would pull the blobs towards its result
    labels = model.predict(test, lam=1.0, adapt=0.0, prior_weight=0.0)
    assert labels.shape == test.shape and _dice(labels == 1, tmask > 0) > 0.95


def _strokes(mask):
    """Synthetic scribbles: a few lines inside the object (value 2) and in the background (1)."""
    from scipy import ndimage as ndi

    strokes = np.zeros(mask.shape, np.uint8)
    inner = ndi.binary_erosion(mask > 0, iterations=4)
    outer = ndi.binary_erosion(mask == 0, iterations=4)
    rows = np.zeros(mask.shape, bool)
    rows[::9, :] = True
    cols = np.zeros(mask.shape, bool)
    cols[:, ::13] = True
    strokes[inner & rows] = 2
    strokes[outer & (rows | cols)] = 1
    return strokes


def test_scribbles_few_strokes_are_enough():
    gen = np.random.default_rng(5)
    img, mask = shape_image("circle", 80, channels=3, shape_value=(0.8, 0.6, 0.2),
                            background_value=(0.3, 0.4, 0.5))
    img = np.clip(img + gen.normal(0, 0.15, img.shape), 0, 1)
    strokes = _strokes(mask)
    assert 0.02 < np.mean(strokes > 0) < 0.25  # a few strokes, not a mask
    model = physeg.fit("heat", [img], [strokes], unlabelled=0, rng=0)
    assert model.info["class_values"] == [1, 2] and model.info["unlabelled"] == 0
    labels = model.predict(img, channel_axis=-1)  # stroke value 2 -> label 1
    assert _dice(labels == 1, mask) > 0.95
    with pytest.raises(ValueError, match="at least two classes besides unlabelled=0"):
        physeg.fit("heat", [img], [(strokes == 2).astype(np.uint8) * 2], unlabelled=0)


def test_descend_energy_and_regularisation():
    """Threshold dynamics on -log p removes isolated wrong pixels; lam=0 is the argmax."""
    gen = np.random.default_rng(6)
    _, mask = shape_image("square", 48)
    p1 = np.where(mask > 0, 0.8, 0.2) + 0.0
    flip = gen.random(mask.shape) < 0.1
    p1 = np.where(flip, 1 - p1, p1)
    logp = np.log(np.stack([1 - p1, p1], -1)).astype(np.float32)
    raw, steps0 = descend(logp, tau=1.0, lam=0.0, spacing=(1.0, 1.0))
    assert steps0 == 0 and np.array_equal(raw, (p1 > 0.5).astype(np.intp))
    smooth, _ = descend(logp, tau=1.0, lam=4.0, spacing=(1.0, 1.0))
    assert np.mean(smooth == mask) > 0.99 > np.mean(raw == mask) + 0.05  # corners round


@pytest.mark.parametrize("shape,tau", [((40, 57), 1.0), ((13, 20, 17), 1.0), ((30, 30), 3.0)])
def test_scattered_change_equals_the_reflecting_filter(shape, tau):
    """The incremental G*(change) of the binary descent is the smoother's output (borders and
    corners included: the reflected margins are folded back)."""
    from physeg.families.heat._learned import _scatter_add, _scatter_kernels
    from physeg.families.heat._mbo import heat_smoother

    gen = np.random.default_rng(1)
    d = np.zeros(shape, np.float32)
    idx = np.unique(np.r_[gen.choice(d.size, 25, replace=False), 0, d.size - 1])
    sign = gen.choice([-1.0, 1.0], idx.size)
    d.reshape(-1)[idx] = sign
    kernels = _scatter_kernels(shape, tau, (1.0,) * len(shape))
    full = heat_smoother(shape, tau)(d)
    out = np.zeros(d.size)
    _scatter_add(out, idx, sign, kernels, shape)
    assert np.abs(out.reshape(shape) - full).max() < 1e-6


def test_binary_descent_equals_the_full_recomputation():
    """Updating G*u by the flipped pixels gives the labels of re-filtering u at every step."""
    from physeg.families.heat._mbo import heat_smoother

    gen = np.random.default_rng(3)
    _, mask = shape_image("circle", 64)
    p1 = np.clip(np.where(mask > 0, 0.7, 0.3) + gen.normal(0, 0.25, mask.shape), 0.01, 0.99)
    logp = np.log(np.stack([1 - p1, p1], -1)).astype(np.float32)
    lab, steps = descend(logp, tau=1.0, lam=2.0, spacing=(1.0, 1.0))
    smooth, v, ref_steps = heat_smoother(mask.shape, 1.0), p1 > 0.5, 0
    while ref_steps < 200:  # the plain loop: odds + beta (2 G*u - 1) > 0, beta = 4
        new = logp[..., 1] - logp[..., 0] + 4.0 * (2.0 * smooth(v.astype(np.float32)) - 1) > 0
        ref_steps += 1
        if np.array_equal(new, v):
            break
        v = new
    assert steps == ref_steps > 2 and np.array_equal(lab, v.astype(np.intp))


def test_three_class_descent_equals_the_full_recomputation():
    """K = 3: the two indicator fields of every flipped pixel are updated by scattering; the
    labels and the number of steps are those of re-filtering every field at every step."""
    from scipy import ndimage as ndi

    from physeg.families.heat._mbo import heat_smoother

    gen = np.random.default_rng(2)
    P = ndi.gaussian_filter(gen.dirichlet([1, 1, 1], size=(70, 90)), (2, 2, 0))
    logp = np.log(P / P.sum(-1, keepdims=True)).astype(np.float32)
    lab, steps = descend(logp, tau=1.0, lam=2.0, spacing=(1.0, 1.0))
    smooth, ref, ref_steps = heat_smoother(lab.shape, 1.0), np.argmax(logp, -1), 0
    while ref_steps < 200:
        psi = np.stack([smooth((ref == k).astype(np.float32)) for k in range(3)], -1)
        new = np.argmax(logp + np.float32(4.0) * psi, -1)
        ref_steps += 1
        if np.array_equal(new, ref):
            break
        ref = new
    assert steps == ref_steps > 2 and np.array_equal(lab, ref)


def _fitted(seed=0):
    gen = np.random.default_rng(seed)
    img, mask = shape_image("circle", 48, channels=3, shape_value=(0.9, 0.5, 0.1))
    img = np.clip(img + gen.normal(0, 0.15, img.shape), 0, 1)
    return physeg.fit("heat", [img], [mask], rng=0, trees=8), img


def test_save_load_byte_identical_and_no_pickle(tmp_path, monkeypatch):
    model, img = _fitted()
    labels = model.predict(img, channel_axis=-1)
    path = model.save(tmp_path / "learned.json")
    doc = json.loads(path.read_text())  # plain JSON
    assert doc["method"] == "heat" and "learned" in doc["state"]

    def refuse(*a, **k):
        raise AssertionError("loading a model must not unpickle anything")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    again = physeg.load(path)
    assert isinstance(again, LearnedHeatModel)
    out = again.predict(img, channel_axis=-1)
    assert out.dtype == labels.dtype and out.tobytes() == labels.tobytes()
    # this model follows the no-label result (see the follow test); the forest's labels too
    assert again.params["follow_prior"] is True
    learned = model.predict(img, channel_axis=-1, follow_prior=False)
    assert again.predict(img, channel_axis=-1, follow_prior=False).tobytes() == learned.tobytes()
    np.testing.assert_array_equal(again.predict(img, channel_axis=-1, return_proba=True),
                                  model.predict(img, channel_axis=-1, return_proba=True))


@pytest.mark.parametrize("tamper, reason", [
    (lambda f: f.update(left=_enc(np.r_[_dec(f["left"])[:-1], 10**6])), "child"),
    (lambda f: f.update(feature=_enc(np.where(_dec(f["feature"]) >= 0, 999,
                                              _dec(f["feature"])))), "feature outside"),
    (lambda f: f.update(threshold={"dtype": "|O", "shape": [1], "data": ""}), "dtype"),
    (lambda f: f.update(value={**f["value"], "data": "###"}), "base64"),
    (lambda f: f.update(value={**f["value"], "shape": [3, 2]}), "bytes"),
])
def test_tampered_file_is_refused_in_one_line(tmp_path, tamper, reason):
    model, _ = _fitted()
    path = model.save(tmp_path / "learned.json")
    doc = json.loads(path.read_text())
    tamper(doc["state"]["learned"]["forest"])
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=reason) as err:
        physeg.load(path)
    assert str(err.value).startswith("not a physeg model file:") and "\n" not in str(err.value)


def test_prior_setting_must_match_the_forest(tmp_path):
    model, _ = _fitted()
    assert model.params["prior"] == "default" and model.likelihood.n_extra == 3 + 3
    path = model.save(tmp_path / "learned.json")
    doc = json.loads(path.read_text())
    doc["params"]["prior"] = "none"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="prior setting does not match"):
        physeg.load(path)


def test_prior_none_uses_image_features_only():
    gen = np.random.default_rng(8)
    img, mask = shape_image("circle", 48, channels=3, shape_value=(0.9, 0.5, 0.1))
    img = np.clip(img + gen.normal(0, 0.15, img.shape), 0, 1)
    model = physeg.fit("heat", [img], [mask], rng=0, trees=8, prior="none")
    assert model.likelihood.n_extra == 0 and model.info["n_features"] == 29
    assert _dice(model.predict(img, channel_axis=-1) == 1, mask) > 0.97


def _enc(a):
    from physeg._features import encode_array

    return encode_array(np.asarray(a, np.int32))


def _dec(e):
    from physeg._features import decode_array

    return decode_array(e, "x")


def test_fit_params_checked_once_and_grid_kept():
    model, img = _fitted()
    with pytest.raises(ValueError, match="out of range"):
        physeg.fit("heat", [img], [np.zeros(img.shape[:2], np.uint8)], trees=0)
    with pytest.raises(ValueError, match="learn='grid'"):
        physeg.fit("heat", [img[..., 0]], [np.zeros(img.shape[:2], np.uint8)], init="otsu")
    with pytest.raises(ValueError, match="trained on colour 2D images; got a grey 2D"):
        model.predict(img[..., 0])
    with pytest.raises(ValueError, match="takes tau, lam, adapt, prior_weight and follow_prior"):
        model.predict(img, channel_axis=-1, classes=3)


def test_cli_fit_scribbles_end_to_end(tmp_path):
    from typer.testing import CliRunner

    from physeg.cli import app

    gen = np.random.default_rng(7)
    folders = {k: tmp_path / k for k in ("img", "strokes", "test")}
    truth = {}
    for name, shape in (("a", "circle"), ("b", "square"), ("c", "triangle")):
        img, mask = shape_image(shape, 64, channels=3, shape_value=(0.8, 0.6, 0.2),
                                background_value=(0.3, 0.4, 0.5))
        img = np.clip(img + gen.normal(0, 0.12, img.shape), 0, 1)
        u8 = np.round(img * 255).astype(np.uint8)
        if name == "c":
            pio.write_image(folders["test"] / "c.png", u8)
            truth["c"] = mask
            continue
        pio.write_image(folders["img"] / f"{name}.png", u8)
        pio.write_labels(folders["strokes"] / f"{name}.png", _strokes(mask))
    runner = CliRunner()
    model_path = tmp_path / "model.json"
    res = runner.invoke(app, ["fit", "--method", "heat", "--images", str(folders["img"]),
                              "--masks", str(folders["strokes"]), "-o", str(model_path),
                              "--scribbles"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "stroke pixels" in res.output
    out = tmp_path / "out"
    res = runner.invoke(app, ["segment", str(folders["test"]), "-o", str(out), "--model",
                              str(model_path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    labels = pio.read_mask(out / "c.png")
    assert _dice(labels == 1, truth["c"]) > 0.93
    res = runner.invoke(app, ["fit", "--method", "otsu", "--images", str(folders["img"]),
                              "--masks", str(folders["strokes"]), "-o",
                              str(tmp_path / "m2.json"), "--scribbles"])
    assert res.exit_code == 2


def test_prior_weight_follows_how_well_the_no_label_model_fits_the_labels():
    """Known answers for the fit-time choice of the no-label prior's weight.

    Texture (the no-label model separates nothing, Dice < 0.5 on the labelled image): weight 0
    with one image, and cross-validation over three images keeps the learned posterior alone
    (weight 0) because the prior only lowers the held-out Dice. A clean two-level image (the
    no-label model is exact): the full one-image weight, and the fitted choice is saved.
    """
    from physeg.families.heat._learned import PRIOR_WEIGHT_ONE, PRIOR_WEIGHTS

    train, train_mask = _texture("circle", seed=0)
    one = physeg.fit("heat", [train], [train_mask], rng=0, trees=8)
    assert one.params["prior_weight"] == 0.0 and one.params["adapt"] == 1.0
    assert not one.params["follow_prior"] and one.info["prior_dice"] < 0.5
    pairs = [_texture(s, seed=k) for k, s in enumerate(("circle", "square", "triangle"))]
    three = physeg.fit("heat", [p[0] for p in pairs], [p[1] for p in pairs], rng=0, trees=8)
    table = three.info["cross_validation"]
    assert len(table) == 2 * len(PRIOR_WEIGHTS) + 1 and table[-1]["follow_prior"]
    assert three.params["prior_weight"] == 0.0 and not three.params["follow_prior"]
    best = max(table, key=lambda r: r["score"])
    assert best["score"] > max(r["score"] for r in table if r.get("prior_weight", 0) >= 4.0)
    img, mask = shape_image("circle", 64)
    clean = physeg.fit("heat", [img], [mask], rng=0, trees=8)
    assert clean.params["prior_weight"] == PRIOR_WEIGHT_ONE
    fixed = physeg.fit("heat", [p[0] for p in pairs], [p[1] for p in pairs], rng=0, trees=8,
                       prior_weight=2.0, adapt=0.0)
    assert fixed.params["prior_weight"] == 2.0 and "cross_validation" not in fixed.info


def test_labels_never_make_it_worse_the_no_label_result_is_a_candidate(tmp_path):
    """Known answers for ``follow_prior``: the no-label result is kept where the labels show
    it is the better model.

    One image the no-label model segments exactly (Dice >= FOLLOW_DICE_ONE on it): the model
    follows it, so its labels are ``physeg.segment(image, "heat")``'s on any image, also after
    a save / load; a ``prior_weight`` given at fit or predict time uses the learned model.
    Three images with a boundary weight far above the default (lam=40 px/nat, 4 is the
    default): every learned candidate's held-out Dice is below the no-label result's (0.998
    vs 0.999 measured), so cross-validation keeps it. Three classes: never (the prior is
    binary), and the flag is refused for them.
    """
    from physeg.families.heat._learned import FOLLOW_DICE_ONE

    gen = np.random.default_rng(0)
    pairs = []
    for shape in ("circle", "square", "triangle"):
        img, mask = shape_image(shape, 64)
        pairs.append((np.clip(img + gen.normal(0, 0.1, img.shape), 0, 1), mask))
    one = physeg.fit("heat", [pairs[0][0]], [pairs[0][1]], rng=0, trees=8)
    assert one.info["prior_dice"] >= FOLLOW_DICE_ONE and one.params["follow_prior"]
    test = pairs[1][0]
    default = physeg.segment(test, "heat", rng=0)
    assert one.predict(test).tobytes() == default.astype(np.uint8).tobytes()
    again = physeg.load(one.save(tmp_path / "follow.json"))
    assert again.params["follow_prior"] and again.predict(test).tobytes() == \
        one.predict(test).tobytes()
    learned = one.predict(test, prior_weight=4.0)  # the forest + heat perimeter, not the prior
    assert learned.tobytes() == one.predict(test, follow_prior=False).tobytes()
    assert _dice(learned == 1, pairs[1][1]) > 0.95
    given = physeg.fit("heat", [pairs[0][0]], [pairs[0][1]], rng=0, trees=8, prior_weight=4.0)
    assert not given.params["follow_prior"]
    with pytest.raises(ValueError, match="follow_prior must be True or False"):
        one.predict(test, follow_prior="yes")

    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    stiff = physeg.fit("heat", images, masks, rng=0, trees=8, lam=40.0)
    table = stiff.info["cross_validation"]
    assert table[-1]["follow_prior"] and stiff.params["follow_prior"]
    assert table[-1]["score"] > max(r["score"] for r in table[:-1])
    assert physeg.fit("heat", images, masks, rng=0, trees=8).params["follow_prior"] is False
    img3, lab3 = three_level_image(48)
    three = physeg.fit("heat", [img3], [lab3], rng=0, trees=8)
    assert three.params["follow_prior"] is False
    with pytest.raises(ValueError, match="needs a two-class model"):
        three.predict(img3, follow_prior=True)
