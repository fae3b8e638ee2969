"""Tests for the pde-unet method: registration, schedules, determinism, warm start, I/O."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import physeg

pytestmark = pytest.mark.torch

TINY = {"widths": "4,8", "batch_size": 2, "patch": 32, "val_fraction": 0.0, "threads": 1}


def _disks(n=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, masks = [], []
    for _ in range(n):
        c = rng.integers(10, size - 10, 2)
        r = rng.integers(5, 9)
        m = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r * r).astype(np.uint8)
        img = 0.2 + 0.6 * m + 0.1 * rng.standard_normal(m.shape)
        imgs.append(img.clip(0, 1).astype(np.float32))
        masks.append(m)
    return imgs, masks


def test_module_imports_without_torch_and_registers():
    code = (
        "import sys, physeg.families.nets.pde_unet as m; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "import physeg; meth = physeg.get_method('pde-unet'); "
        "names = {p.name for p in meth.fit_params}; "
        "assert {'lambda_rd', 'lambda_pf', 'D', 'a', 'eps', 'schedule', 'stage2_lr_factor', "
        "'widths', 'iterations'} <= names, names; "
        "assert meth.param('loss').default == 'dice_ce'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "torch" in physeg.get_method("pde-unet").requires


def test_resolve_prior_presets_and_overrides():
    from physeg.families.nets.pde_unet import resolve_prior

    p = resolve_prior("poudel2026")
    assert p == {"lambda_rd": 1e-4, "lambda_pf": 1e-4, "D": 5.0, "a": 0.5, "eps": 0.05}
    q = resolve_prior("allen-cahn", lambda_rd=0.0, eps=None)
    assert q["lambda_rd"] == 0.0 and q["eps"] == 1.5
    with pytest.raises(ValueError, match="Did you mean 'poudel2026'"):
        resolve_prior("poudel")
    with pytest.raises(ValueError, match="unknown prior constant 'sigma'"):
        resolve_prior("allen-cahn", sigma=1.0)


def test_two_stage_history_terms_and_lr():
    pytest.importorskip("torch")
    imgs, masks = _disks()
    m = physeg.fit("pde-unet", imgs, masks, iterations=6, lr=1e-3, stage2_lr_factor=0.1,
                   lambda_rd=0.5, lambda_pf=0.2, rng=3, **TINY)
    hist = m.info["history"]
    assert m.info["stage_iterations"] == [3, 3]
    assert hist["stage1"]["terms"] == {}  # stage I: data term only
    assert set(hist["stage2"]["terms"]) == {"rd", "pf"}
    assert len(hist["stage2"]["terms"]["rd"]) == 3
    assert all(v >= 0 for v in hist["stage2"]["terms"]["pf"])
    assert hist["stage1"]["lr"][0] == pytest.approx(1e-3)
    assert hist["stage2"]["lr"][0] == pytest.approx(1e-4)  # fresh optimiser, lr * factor
    assert m.info["prior"]["lambda_rd"] == 0.5 and m.info["prior"]["D"] == 0.5625
    labels = m.predict(imgs[0])
    assert labels.shape == imgs[0].shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1}


def test_single_schedule_and_zero_weights():
    pytest.importorskip("torch")
    imgs, masks = _disks()
    m = physeg.fit("pde-unet", imgs, masks, iterations=4, schedule="single", rng=0, **TINY)
    assert m.info["stage_iterations"] == [0, 4]
    assert "stage1" not in m.info["history"]
    assert set(m.info["history"]["stage2"]["terms"]) == {"rd", "pf"}
    z = physeg.fit("pde-unet", imgs, masks, iterations=4, lambda_rd=0, lambda_pf=0, rng=0,
                   **TINY)
    assert z.info["history"]["stage2"]["terms"] == {}


def test_deterministic_under_seed_and_prior_changes_weights():
    torch = pytest.importorskip("torch")
    imgs, masks = _disks()
    kw = dict(iterations=6, lambda_rd=1.0, lambda_pf=1.0, **TINY)
    a = physeg.fit("pde-unet", imgs, masks, rng=5, **kw)
    b = physeg.fit("pde-unet", imgs, masks, rng=5, **kw)
    c = physeg.fit("pde-unet", imgs, masks, rng=6, **kw)
    sa, sb, sc = (x.net.state_dict() for x in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    np.testing.assert_array_equal(a.predict(imgs[1]), b.predict(imgs[1]))
    # the same seed without priors shares stage I exactly but ends elsewhere
    base = physeg.fit("pde-unet", imgs, masks, rng=5, **{**kw, "lambda_rd": 0.0,
                                                        "lambda_pf": 0.0})
    sbase = base.net.state_dict()
    assert not all(torch.equal(sa[k], sbase[k]) for k in sa)
    s1a = physeg.fit("pde-unet", imgs, masks, rng=5, stage1_fraction=1.0, **kw)
    s1b = physeg.fit("pde-unet", imgs, masks, rng=5, stage1_fraction=1.0,
                     **{**kw, "lambda_rd": 0.0})
    assert all(torch.equal(v, s1b.net.state_dict()[k]) for k, v in s1a.net.state_dict().items())


def test_warm_start_equals_full_two_stage():
    torch = pytest.importorskip("torch")
    from physeg.families.nets.pde_unet import fit_pde_unet

    imgs, masks = _disks()
    full = fit_pde_unet(imgs, masks, iterations=8, rng=2, **TINY)
    stage1 = fit_pde_unet(imgs, masks, iterations=4, stage1_fraction=1.0, rng=2, **TINY)
    before = {k: v.clone() for k, v in stage1.net.state_dict().items()}
    warm = fit_pde_unet(imgs, masks, init=stage1, iterations=8, rng=2, **TINY)
    assert warm.info["warm_start"] and warm.info["stage_iterations"] == [0, 4]
    sf, sw = full.net.state_dict(), warm.net.state_dict()
    assert all(torch.equal(sf[k], sw[k]) for k in sf)
    # the init model is left untouched
    assert all(torch.equal(before[k], v) for k, v in stage1.net.state_dict().items())


def test_save_load_round_trip(tmp_path):
    pytest.importorskip("torch")
    imgs, masks = _disks()
    m = physeg.fit("pde-unet", imgs, masks, iterations=4, rng=1, **TINY)
    path = m.save(tmp_path / "pde.pt")
    back = physeg.load(path)
    assert back.method == "pde-unet"
    np.testing.assert_array_equal(back.predict(imgs[2]), m.predict(imgs[2]))


def test_multiclass_3d_prior_terms():
    torch = pytest.importorskip("torch")
    from physeg.families.nets.pde_unet import make_prior_terms

    terms = make_prior_terms(lambda_rd=1.0, lambda_pf=1.0, D=0.5, a=0.5, eps=1.0)
    logits = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    valid = torch.ones(2, 4, 5, 6)
    total = terms["rd"](logits, None, None, valid) + terms["pf"](logits, None, None, valid)
    total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert make_prior_terms(lambda_rd=0.0, lambda_pf=0.0, D=1, a=0.5, eps=1) == {}


def test_errors_are_explained():
    pytest.importorskip("torch")
    from physeg.families.nets.pde_unet import fit_pde_unet

    imgs, masks = _disks(n=2)
    with pytest.raises(ValueError, match="out of range"):
        physeg.fit("pde-unet", imgs, masks, lambda_pf=-1.0)
    with pytest.raises(ValueError, match="Did you mean 'two-stage'"):
        physeg.fit("pde-unet", imgs, masks, schedule="two_stag")
    s1 = fit_pde_unet(imgs, masks, iterations=2, stage1_fraction=1.0, rng=0, **TINY)
    with pytest.raises(ValueError, match="replaces stage I"):
        fit_pde_unet(imgs, masks, init=s1, schedule="single", iterations=2, **TINY)
    with pytest.raises(ValueError, match="must be a trained 'unet'"):
        fit_pde_unet(imgs, masks, init=object(), iterations=2, **TINY)
    with pytest.raises(ValueError, match="needs training"):
        physeg.segment(imgs[0], method="pde-unet")


def test_fit_3d_volume():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:12, :16, :16]
    vols, masks = [], []
    for _ in range(2):
        c = rng.integers(5, 10, 3)
        m = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < 16).astype(np.uint8)
        vols.append((0.2 + 0.6 * m + 0.05 * rng.standard_normal(m.shape)).astype(np.float32))
        masks.append(m)
    model = physeg.fit("pde-unet", vols, masks, iterations=2, widths="4,8", batch_size=1,
                       patch=8, val_fraction=0.0, threads=1, rng=0)
    assert set(model.info["history"]["stage2"]["terms"]) == {"rd", "pf"}
    labels = model.predict(vols[0])
    assert labels.shape == vols[0].shape
