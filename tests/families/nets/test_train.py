"""The shared trainer: preprocessing, hold-out split, augmentation, schedule, stopping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from physeg.families.nets._augment import (
    random_cut,
    random_flips_and_intensity,
    random_warp,
    random_zoom,
)
from physeg.families.nets._config import (
    DATA_PARAMS,
    TRAIN_PARAMS,
    TrainConfig,
    parse_ints,
    parse_strides,
)
from physeg.families.nets._model import Preprocessing
from physeg.families.nets.train import holdout_split

# ------------------------------------------------------------------ numpy-only parts


def test_holdout_split_is_seeded_and_keeps_a_training_image():
    tr, va = holdout_split(10, 0.2, 0)
    assert (len(tr), len(va)) == (8, 2) and sorted(tr + va) == list(range(10))
    assert holdout_split(10, 0.2, 0) == (tr, va)
    assert holdout_split(2, 0.1, 0)[1] != []  # at least one held out when positive
    assert holdout_split(1, 0.5, 0) == ([0], [])  # a single image is never held out
    assert holdout_split(5, 0.0, 0) == (list(range(5)), [])
    with pytest.raises(ValueError, match="leaves none to train on"):
        holdout_split(2, 0.9, 0)


def test_preprocessing_classes_round_trip():
    pre = Preprocessing(ndim=2, in_channels=3, classes=[0, 128, 255], mean=[0.5] * 3,
                        std=[0.25] * 3)
    mask = np.array([[0, 128], [255, 0]], np.uint8)
    idx = pre.mask(mask, (2, 2))
    np.testing.assert_array_equal(idx, [[0, 1], [2, 0]])
    np.testing.assert_array_equal(pre.labels(idx), mask)
    assert pre.labels(idx).dtype == np.uint8
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        pre.mask(np.array([[0, 7], [0, 0]]), (2, 2))
    img = np.full((2, 2, 3), 255, np.uint8)
    x = pre.image(img)  # channels-last recognised for a colour model
    assert x.shape == (3, 2, 2) and np.allclose(x, 2.0)  # (1 - 0.5) / 0.25
    before = img.copy()
    pre.image(img, -1)
    np.testing.assert_array_equal(img, before)  # caller's array untouched
    with pytest.raises(ValueError, match="expects 2-D images with 3 channel"):
        pre.image(np.zeros((4, 4)))


def test_cut_pads_with_valid_mask_and_crops():
    gen = np.random.default_rng(0)
    x = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    y = (x[0] % 3).astype(np.int64)
    xo, yo, vo = random_cut(x, y, (8, 4), gen)
    assert xo.shape == (2, 8, 4) and yo.shape == (8, 4)
    assert vo.sum() == 5 * 4  # 5 real rows (padded to 8), 4 of 7 columns (cropped)
    rows = np.flatnonzero(vo[:, 0])
    assert len(rows) == 5
    np.testing.assert_array_equal(yo[vo > 0], (xo[0][vo > 0] % 3).astype(np.int64))
    assert np.all(xo[:, vo == 0] == 0)


@pytest.mark.parametrize("shape", [(6, 6), (4, 5, 5), (5, 7)])
def test_augmentation_keeps_image_and_mask_aligned(shape):
    gen = np.random.default_rng(3)
    y = gen.integers(0, 4, size=shape)
    x = np.stack([y.astype(np.float32), -y.astype(np.float32)])
    v = np.ones(shape, np.float32)
    seen = set()
    for _ in range(20):
        xa, ya, va = random_flips_and_intensity(x, y, v, gen, intensity=0.0)
        np.testing.assert_array_equal(xa[0], ya)
        np.testing.assert_array_equal(xa[1], -ya)
        assert va.shape == ya.shape
        seen.add(ya.tobytes())
    assert len(seen) > 2  # it does transform
    xa, ya, _ = random_flips_and_intensity(x, y, v, gen, intensity=0.5)
    # one (a, b) per channel: channel 0 = a * y + b exactly, a in [0.5, 1.5], b in [-0.5, 0.5]
    design = np.stack([ya.ravel(), np.ones(ya.size)], 1).astype(np.float64)
    coef = np.linalg.lstsq(design, xa[0].ravel(), rcond=None)[0]
    np.testing.assert_allclose(design @ coef, xa[0].ravel(), atol=1e-5)
    assert 0.5 <= coef[0] <= 1.5 and -0.5 <= coef[1] <= 0.5 and not np.isclose(coef[0], 1.0)


def test_colour_augmentation_mixes_channels_linearly():
    gen = np.random.default_rng(5)
    y = gen.integers(0, 3, size=(6, 6))
    x = np.stack([y, y**2, np.ones_like(y)]).astype(np.float32)
    v = np.ones(y.shape, np.float32)
    xa, ya, _ = random_flips_and_intensity(x, y, v, gen, intensity=0.0, colour=0.2)
    # every output channel is sum_j M_ij x_j of the (flipped / turned) input channels
    basis = np.stack([ya.ravel(), ya.ravel() ** 2, np.ones(ya.size)], 1).astype(np.float64)
    for c in range(3):
        coef = np.linalg.lstsq(basis, xa[c].ravel(), rcond=None)[0]
        np.testing.assert_allclose(basis @ coef, xa[c].ravel(), atol=1e-5)
        assert abs(coef[c] - 1.0) < 1.0  # near the identity
    assert not np.allclose(xa[0], ya)  # it did mix
    # grey images and colour = 0 are left alone (and draw nothing extra from the generator)
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    a = random_flips_and_intensity(x[:1], y, v, g1, intensity=0.1, colour=0.5)
    b = random_flips_and_intensity(x[:1], y, v, g2, intensity=0.1)
    np.testing.assert_array_equal(a[0], b[0])


def test_zoom_augmentation_keeps_labels_aligned():
    y = np.zeros((40, 40), np.int64)
    y[10:30, 10:30] = 1
    y[15:25, 15:25] = 2
    x = y[None].astype(np.float32)
    sizes = set()
    for seed in range(6):
        xz, yz = random_zoom(x, y, np.random.default_rng(seed), 0.3)
        assert xz.shape == (1,) + yz.shape and set(np.unique(yz)) <= {0, 1, 2}
        f = yz.shape[0] / 40
        assert 1 / 1.3 - 0.03 <= f <= 1.3 + 0.03
        # the square's area scales with f^2, and labels sit where the image has that value
        assert abs((yz >= 1).sum() / (f * f * 400) - 1) < 0.15
        assert np.mean(np.abs(xz[0] - yz) < 0.5) > 0.9
        sizes.add(yz.shape)
    assert len(sizes) > 2


def test_image_normalisation_per_image():
    pre = Preprocessing(ndim=2, in_channels=3, classes=[0, 1], mean=[0.5] * 3, std=[0.25] * 3,
                        norm="image")
    gen = np.random.default_rng(0)
    img = gen.integers(0, 256, size=(8, 9, 3)).astype(np.uint8)
    x = pre.image(img, -1)
    np.testing.assert_allclose(x.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(1, 2)), 1, atol=1e-4)
    # a brighter copy (stain offset) maps to the same input
    brighter = (img.astype(np.int64) // 2 + 60).astype(np.uint8)
    ref = pre.image((img.astype(np.int64) // 2).astype(np.uint8), -1)
    np.testing.assert_allclose(pre.image(brighter, -1), ref, atol=1e-5)


def test_parse_helpers():
    assert parse_ints("16, 32,64", "w") == (16, 32, 64)
    assert parse_ints((4, 8), "w") == (4, 8)
    with pytest.raises(ValueError, match="comma-separated integers"):
        parse_ints("a,b", "widths")
    assert parse_strides("1,2,2;2") == [(1, 2, 2), 2]
    assert parse_strides(None) is None


def test_config_is_the_schema():
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    schema = {p.name: p.default for p in TRAIN_PARAMS if p.name not in DATA_PARAMS}
    assert fields == schema
    assert TrainConfig(lr="0.01", iterations="3").lr == 0.01  # converted by the Param
    with pytest.raises(ValueError, match="out of range"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="Unknown value for 'loss'"):
        TrainConfig(loss="mse")


# ------------------------------------------------------------------ torch parts


def _squares(n=4, size=12, seed=0):
    gen = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        m = np.zeros((size, size), np.uint8)
        r, c = gen.integers(1, size // 2, 2)
        m[r:r + 5, c:c + 5] = 1
        images.append((m * 200 + gen.integers(0, 40, m.shape)).astype(np.uint8))
        masks.append(m)
    return images, masks


@pytest.mark.torch
def test_schedule_early_stopping_time_limit_and_extra_terms():
    torch = pytest.importorskip("torch")
    from physeg.families.nets._arch import build_network
    from physeg.families.nets.train import train_network

    images, masks = _squares()
    xs = [(im[None] / 255.0).astype(np.float32) for im in images]
    ys = [m.astype(np.int64) for m in masks]
    torch.manual_seed(0)
    net = build_network("unet", in_channels=1, num_classes=2, widths=(2, 4))
    cfg = TrainConfig(iterations=5, batch_size=2, lr=0.1, step_size=2, gamma=0.5,
                      augment=False, threads=1)
    calls = []

    def const(logits, x, y, v):
        calls.append(1)
        return torch.tensor(10.0)

    h = train_network(net, xs, ys, config=cfg, rng=0, extra_terms={"const": const})
    assert torch.get_num_threads() >= 1
    np.testing.assert_allclose(h["lr"], [0.1, 0.05, 0.05, 0.025, 0.025])  # StepLR per iteration
    assert len(calls) == 5 and h["terms"]["const"] == [10.0] * 5
    assert all(v >= 10.0 for v in h["loss"]) and h["stop_reason"] == "iterations"

    # no improvement possible at lr ~ 0: stops after `patience` validations without a gain
    cfg = TrainConfig(iterations=50, batch_size=1, lr=1e-7, val_every=2, patience=2,
                      augment=False, threads=1)
    h = train_network(net, xs[:2], ys[:2], config=cfg, val_xs=xs[2:], val_ys=ys[2:], rng=0)
    assert h["stop_reason"] == "early_stopping" and h["iterations_run"] == 6
    assert h["best_iteration"] == 2 and len(h["val"]) == 3

    cfg = TrainConfig(iterations=10_000, batch_size=1, max_time=1.0, augment=False, threads=1)
    h = train_network(net, xs, ys, config=cfg, rng=0)
    assert h["stop_reason"] == "time_limit" and h["iterations_run"] < 10_000
    cfg = TrainConfig(iterations=10_000, batch_size=1, max_cpu_time=1.0, augment=False,
                      threads=1)
    h = train_network(net, xs, ys, config=cfg, rng=0)
    assert h["stop_reason"] == "time_limit" and h["iterations_run"] < 10_000
    assert 1.0 < h["train_cpu_seconds"] < 30.0


@pytest.mark.torch
def test_tta_is_exact_for_an_equivariant_net_and_shapes_round_trip():
    torch = pytest.importorskip("torch")
    from physeg.families.nets._model import predict_index

    torch.manual_seed(0)
    pointwise = torch.nn.Conv2d(3, 4, 1)  # commutes with flips and 90-degree turns
    x = np.random.default_rng(0).normal(size=(3, 7, 10)).astype(np.float32)
    plain = predict_index(pointwise, x)
    np.testing.assert_array_equal(predict_index(pointwise, x, tta=True), plain)
    # a net that looks at the position (not equivariant): TTA changes the answer, keeps shape
    class Ramp(torch.nn.Module):
        def forward(self, t):
            r = torch.linspace(0, 1, t.shape[-1]).expand(t.shape[0], 1, *t.shape[-2:])
            return torch.cat([r, 1 - r, torch.full_like(r, 0.45)], 1)

    a, b = predict_index(Ramp(), x), predict_index(Ramp(), x, tta=True)
    assert a.shape == b.shape == (7, 10)
    assert set(np.unique(a)) == {0, 1} and not np.array_equal(a, b)


@pytest.mark.torch
def test_fit_input_errors():
    pytest.importorskip("torch")
    import physeg

    rgb = [np.zeros((16, 16, 3), np.uint8)] * 2
    masks = [np.eye(16, dtype=np.uint8)] * 2
    model = physeg.fit("unet", rgb, masks, iterations=1, widths="2,4", threads=1)
    assert model.preprocessing.in_channels == 3 and model.preprocessing.ndim == 2  # auto RGB
    assert model.predict(rgb[0], rng=5).shape == (16, 16)  # rng accepted (CLI contract)
    with pytest.raises(ValueError, match="spatial_dims=3 but the images have 2"):
        physeg.fit("unet", [np.zeros((16, 16))], [np.eye(16, dtype=np.uint8)], iterations=1,
                   spatial_dims=3)
    with pytest.raises(ValueError, match="same number of spatial axes"):
        physeg.fit("unet", [np.zeros((16, 16)), np.zeros((5, 16, 16))],
                   [np.eye(16, dtype=np.uint8), np.zeros((5, 16, 16), np.uint8)],
                   iterations=1, threads=1)
    with pytest.raises(ValueError, match="single label value"):
        physeg.fit("unet", [np.zeros((16, 16))] * 2, [np.zeros((16, 16), np.uint8)] * 2,
                   iterations=1)
    with pytest.raises(ValueError, match="does not match the image's spatial shape"):
        physeg.fit("unet", [np.zeros((16, 16))], [np.zeros((8, 8), np.uint8)], iterations=1)
    with pytest.raises(ValueError, match="has no parameter 'iteration'"):
        physeg.fit("msnet", [np.zeros((16, 16))], [np.eye(16, dtype=np.uint8)], iteration=1)
    # prediction parameters belong to predict, not to fit
    with pytest.raises(ValueError, match="has no parameter 'tta'"):
        physeg.fit("unet", [np.zeros((16, 16))], [np.eye(16, dtype=np.uint8)], tta=True)


@pytest.mark.torch
def test_progress_bar_and_device_choice():
    torch = pytest.importorskip("torch")
    from physeg.families.nets._arch import build_network
    from physeg.families.nets.train import train_network

    images, masks = _squares(n=2)
    xs = [(im[None] / 255.0).astype(np.float32) for im in images]
    ys = [m.astype(np.int64) for m in masks]
    net = build_network("unet", in_channels=1, num_classes=2, widths=(2, 4))
    h = train_network(net, xs, ys, rng=0, config=TrainConfig(
        iterations=2, batch_size=1, progress=True, threads=1, device="auto"))
    assert h["iterations_run"] == 2
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
            train_network(net, xs, ys, config=TrainConfig(iterations=1, device="cuda"))


def test_keep_largest_object_known_answer():
    from physeg.families.nets._model import keep_largest_object

    lab = np.zeros((12, 12), np.uint8)
    lab[1:9, 1:9] = 1            # the cell (cytoplasm) ...
    lab[3:7, 3:7] = 2            # ... with a nucleus
    lab[4, 4] = 0                # a hole in the nucleus -> nucleus
    lab[1, 4] = 0                # a notch open to the outside stays background
    lab[10:12, 10:12] = 2        # a stray blob, smaller than the cell
    before = lab.copy()
    out = keep_largest_object(lab)
    np.testing.assert_array_equal(lab, before)  # the input is not modified
    assert out.dtype == lab.dtype
    assert out[4, 4] == 2 and out[1, 4] == 0
    assert not out[10:, 10:].any()
    assert (out == 2).sum() == 16 and (out == 1).sum() == 64 - 16 - 1
    # nothing to keep: returned unchanged; 3D works the same way
    np.testing.assert_array_equal(keep_largest_object(np.zeros((4, 4), int)), 0)
    vol = np.zeros((6, 6, 6), int)
    vol[1:5, 1:5, 1:5] = 1
    vol[2, 2, 2] = 0
    vol[0, 0, 0] = 1
    out3 = keep_largest_object(vol)
    assert out3[2, 2, 2] == 1 and out3[0, 0, 0] == 0 and out3.sum() == 64


@pytest.mark.torch
def test_ema_weights_are_the_running_average_and_training_is_deterministic():
    torch = pytest.importorskip("torch")
    from physeg.families.nets._arch import build_network
    from physeg.families.nets.train import train_network

    images, masks = _squares()
    xs = [(im[None] / 255.0).astype(np.float32) for im in images]
    ys = [m.astype(np.int64) for m in masks]

    def run(ema, iterations=4):
        torch.manual_seed(0)
        net = build_network("unet", in_channels=1, num_classes=2, widths=(2, 4))
        init = {k: v.clone() for k, v in net.state_dict().items()}
        cfg = TrainConfig(iterations=iterations, batch_size=2, lr=0.05, augment=False,
                          threads=1, ema=ema)
        train_network(net, xs, ys, config=cfg, rng=0)
        return init, net.state_dict()

    init, plain = run(0.0)
    # with the warm-up, the decays of steps 1..4 are 2/11, 3/12, 4/13, 5/14 (all < 0.9),
    # so w_ema = sum of the iterates weighted by the products of those decays
    decays = [min(0.9, (1 + t) / (10 + t)) for t in range(1, 5)]
    iterates = [run(0.0, iterations=t)[1] for t in range(1, 5)]
    _, averaged = run(0.9)
    for key, w0 in init.items():
        if not torch.is_floating_point(w0):
            continue
        expect = w0.clone()
        for d, w in zip(decays, iterates, strict=True):
            expect = d * expect + (1 - d) * w[key]
        torch.testing.assert_close(averaged[key], expect, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(averaged[k], plain[k]) for k in plain
               if torch.is_floating_point(plain[k]))
    # same seed, same weights (channels-last layout and denormal flushing included)
    _, again = run(0.9)
    for k in averaged:
        assert torch.equal(averaged[k], again[k])
    # denormal flushing is switched off again after training (1e-40 survives a product)
    assert float(torch.tensor([1e-40]) * torch.tensor([1.0])) > 0
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)


def test_rotation_and_elastic_warp_keep_image_and_mask_aligned():
    # the image is its own mask (two channels carrying the label), so any misalignment
    # between the linear image warp and the nearest mask warp shows up as disagreement
    y = np.zeros((40, 40), np.int64)
    y[8:30, 12:26] = 1
    y[14:20, 16:22] = 2
    x = np.stack([y.astype(np.float32), (y == 2).astype(np.float32)])
    v = np.ones_like(y, dtype=np.uint8)
    gen = np.random.default_rng(3)
    for rotate, elastic in ((True, 0.0), (False, 3.0), (True, 4.0)):
        xw, yw, vw = random_warp(x, y, v, gen, rotate, elastic)
        assert xw.shape == x.shape and yw.shape == y.shape and vw.shape == v.shape
        assert xw.dtype == np.float32 and yw.dtype == y.dtype
        inside = vw.astype(bool)
        agree = np.round(xw[0]).astype(int)[inside] == yw[inside]
        assert agree.mean() > 0.97  # only pixels next to a label edge may round differently
        assert not np.array_equal(yw, y)
        assert abs(int((yw > 0).sum()) - int((y > 0).sum())) < 0.25 * (y > 0).sum()
    # a pure rotation keeps areas (up to resampling at the edges) and the object's centre
    _, yr, _ = random_warp(x, y, v, np.random.default_rng(0), True, 0.0)
    assert abs(int((yr > 0).sum()) - int((y > 0).sum())) < 0.05 * (y > 0).sum()
    c0 = np.argwhere(y > 0).mean(axis=0) - 19.5
    c1 = np.argwhere(yr > 0).mean(axis=0) - 19.5
    assert abs(np.hypot(*c0) - np.hypot(*c1)) < 0.5  # same distance from the patch centre
    # corners rotated in from outside the patch are invalid; the centre stays valid
    _, _, vr = random_warp(x, y, v, np.random.default_rng(1), True, 0.0)
    assert vr[20, 20] == 1 and vr.sum() < v.sum()
    # same generator state, same warp
    a = random_warp(x, y, v, np.random.default_rng(7), True, 2.0)
    b = random_warp(x, y, v, np.random.default_rng(7), True, 2.0)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)


def test_fit_defaults_are_the_shipped_checkpoints_recipe(monkeypatch):
    """`physeg fit --method msnet|unet` with no --param trains as models/msnet_wbc_s30.pt was
    trained: every stored training parameter and the widths equal the defaults, except
    those the defaults leave automatic (patch, channel_axis: found from the images) and the
    wall-clock limit (the recipe's budget is CPU time)."""
    from pathlib import Path

    from typer.testing import CliRunner

    import physeg
    from physeg.cli import app

    shipped = physeg.load(Path(__file__).parents[3] / "models" / "msnet_wbc_s30.pt")
    for name in ("msnet", "unet"):
        m = physeg.get_method(name)
        defaults = {p.name: p.default for p in m.fit_params}
        differ = {k for k, v in shipped.params.items() if k in defaults and defaults[k] != v}
        assert differ == {"patch", "max_time", "channel_axis"}, (name, differ)
        assert shipped.params["patch"] == 128  # what patch=auto gives for WBC's <= 128 px
        assert defaults["widths"] == ",".join(map(str, shipped.config["widths"]))
    monkeypatch.setenv("COLUMNS", "300")
    out = CliRunner().invoke(app, ["methods", "msnet"]).output
    for name, shown in (("loss", "'dice_ce'"), ("input_norm", "'image'"), ("clip_grad", "1.0"),
                        ("max_cpu_time", "1150.0"), ("widths", "'8,16,32,64,128'"),
                        ("iterations", "3000"), ("threads", "1")):
        row = next(s for s in out.splitlines() if s.startswith(f"│ {name} (fit) "))
        assert f"│ {shown} " in row, row
