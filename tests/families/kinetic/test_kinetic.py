"""Kinetic consensus segmentation: particle model, quasi-equilibrium, macroscopic model."""

from __future__ import annotations

import numpy as np
import pytest

import physeg
from physeg.families.kinetic import _dsmc, _equilibrium, _macro, _multiwell


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _square(n=48, noise=0.2, seed=0):
    m = np.zeros((n, n), bool)
    m[n // 4 : n - n // 4, n // 4 : n - n // 4] = True
    img = m + np.random.default_rng(seed).normal(0, noise, m.shape)
    return np.clip(img, 0, 1), m


# ---------------------------------------------------------------- potentials


def test_double_well_matches_paper_formula():
    c = np.linspace(0, 1, 101)[:, None]
    for cbar in (0.3, 0.5, 0.62):
        K = 12.0 / (cbar**3 * (2 - cbar))
        g = _multiwell.grad_potential(c, np.array([[cbar]]), 2)
        np.testing.assert_allclose(g[:, 0], K * c[:, 0] * (c[:, 0] - cbar) * (c[:, 0] - 1))
        # V(cbar) = 1 with V(0) = 0 (normalisation): integrate V' numerically
        cc = np.linspace(0, cbar, 2001)
        V = np.trapezoid(K * cc * (cc - cbar) * (cc - 1), cc)
        assert V == pytest.approx(1.0, rel=1e-5)


def test_multiwell_zero_at_targets_and_barriers():
    bars = np.array([[0.2, 0.8]])
    pts = np.array([0.0, 0.2, 0.5, 0.8, 1.0])[:, None]
    np.testing.assert_allclose(_multiwell.grad_potential(pts, bars, 3)[:, 0], 0.0, atol=1e-12)
    # flow direction: towards the nearest target on each side of a barrier
    g = _multiwell.grad_potential(np.array([[0.1], [0.3], [0.6], [0.9]]), bars, 3)[:, 0]
    assert g[0] > 0 and g[1] < 0 and g[2] > 0 and g[3] < 0


def test_binarisation_step_admissible_at_lipschitz_bound():
    bars = np.array([[0.35]])
    L = _multiwell.lipschitz(bars, 2)
    c = np.linspace(0, 1, 10001)[:, None]
    out = c - (1.0 / L) * _multiwell.grad_potential(c, bars, 2)
    assert out.min() >= -1e-12 and out.max() <= 1 + 1e-12


# ---------------------------------------------------------------- particle model


def test_local_average_equals_brute_force_disk_mean():
    rng = np.random.default_rng(3)
    n = 400
    h = 2.0 / 40
    x = rng.uniform(-1, 1, (n, 2))
    c = rng.random((n, 2))
    r = 0.23
    avg = _dsmc.LocalAverager(h, r)
    got = avg(x, c)
    # reference: the same quantities computed pairwise on cell centres (O(N^2))
    cells = avg.cells(x)
    g = avg.g
    centre = np.stack([-1 + (cells % g + 0.5) * avg.h, 1 - (cells // g + 0.5) * avg.h], 1)
    dist = np.linalg.norm(centre[:, None] - centre[None], axis=-1)
    w = (dist <= r + 1e-9).astype(float)
    ref = (w @ c) / w.sum(1, keepdims=True)
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_admissibility_features_and_positions_stay_in_domain():
    img, _ = _square(32, 0.3)
    feats = _dsmc.image_features(img, None)
    for update in ("mean", "nanbu"):
        p = _dsmc.make_particles(feats)
        prm = _dsmc.KineticParams(space_rate=5.0, sigma=0.8, eps=0.05, t_final=1.0,
                                  feature_update=update, transport_rate=20.0)
        seen: list = []

        def record(t, q, seen=seen):
            seen.append((q.x.copy(), q.c.copy()))

        _dsmc.simulate(p, prm, np.array([[0.5]]), np.random.default_rng(0), callback=record)
        for x, c in seen:
            assert np.all(np.abs(x) <= 1.0)
            assert c.min() >= 0.0 and c.max() <= 1.0
        assert not np.allclose(seen[-1][0], seen[0][0])  # positions did move


def test_nanbu_pairs_follow_sround():
    p = _dsmc.make_particles(np.random.default_rng(0).random((10, 10, 1)))
    rng = np.random.default_rng(1)
    counts = [_dsmc.space_step(p, delta=1.0, sigma=0.1, eps=0.1, prob=0.33, rng=rng)
              for _ in range(2000)]
    # E[n_p] = prob * N / 2 = 16.5, and n_p is 16 or 17 (stochastic rounding)
    assert set(counts) == {16, 17}
    assert np.mean(counts) == pytest.approx(16.5, abs=0.05)


def test_pair_update_formula_exact():
    """The binary rule (9) with the noise injected: x' = x + eps P (x* - x) + amp D eta."""
    p = _dsmc.Particles(x=np.array([[0.1, 0.2], [-0.3, 0.4]]), c=np.array([[0.5], [0.6]]),
                        shape=(1, 2), h=1.0, x0=np.zeros((2, 2)))
    x0 = p.x.copy()

    class FixedRng:
        def random(self):
            return 0.0

        def permutation(self, n):
            return np.array([0, 1])

        def standard_normal(self, shape):
            return np.ones(shape) * 0.5

    eps, sigma = 0.2, 0.3
    _dsmc.space_step(p, delta=0.15, sigma=sigma, eps=eps, prob=1.0, rng=FixedRng())
    amp = np.sqrt(2 * eps) * sigma
    exp0 = x0[0] + eps * (x0[1] - x0[0]) + amp * np.sqrt(1 - x0[0] ** 2) * 0.5
    exp1 = x0[1] + eps * (x0[0] - x0[1]) + amp * np.sqrt(1 - x0[1] ** 2) * 0.5
    np.testing.assert_allclose(p.x, np.stack([exp0, exp1]))


def test_dsmc_marginals_match_beta_quasi_equilibrium_for_small_eps():
    """Test 1: features frozen, two feature clusters (P transitive); Beta law (28)."""
    from scipy import stats

    rng = np.random.default_rng(0)
    n = 6000
    c = np.where(rng.random(n) < 0.4, 0.2, 0.8) + rng.normal(0, 0.03, n)
    x = np.stack([np.where(c < 0.5, rng.uniform(-0.8, 0, n), rng.uniform(0.1, 0.7, n)),
                  rng.uniform(-0.5, 0.6, n)], 1)
    sigma, delta = 0.3, 0.3
    ks = {}
    for eps in (0.5, 0.02):
        p = _dsmc.Particles(x=x.copy(), c=c[:, None].copy(), shape=(1, n), h=0.02, x0=x)
        r = np.random.default_rng(1)
        for _ in range(int(round(6.0 / eps))):  # T = 6, dt = eps: every particle once a step
            _dsmc.space_step(p, delta=delta, sigma=sigma, eps=eps, prob=1.0, rng=r)
        ks[eps] = []
        for sel in (c < 0.5, c >= 0.5):
            B = sel.mean()
            M = p.x[sel].mean(0) * B  # conserved in expectation; its MC walk is not tested
            a, b = _equilibrium.beta_parameters(B, M, sigma)
            for k in (0, 1):
                stat = stats.kstest((1 + p.x[sel, k]) / 2, "beta", args=(a[k], b[k])).statistic
                ks[eps].append(stat * np.sqrt(sel.sum()))
    # small eps: within Monte Carlo error (KS 99% critical value 1.63/sqrt(n))
    assert max(ks[0.02]) < 1.63
    # large eps: visibly off the quasi-invariant limit
    assert max(ks[0.5]) > 2 * max(ks[0.02])


def test_conserved_quantities_and_moments():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (5000, 2))
    c = rng.random(5000)
    q = _equilibrium.conserved_quantities(x, c, delta=2.0, n_bins=20)
    assert q["rho"].sum() / 20 == pytest.approx(1.0)
    # Delta >= 1: P == 1, so B == 1 and M == the global mean position for every feature
    np.testing.assert_allclose(q["B"], 1.0)
    np.testing.assert_allclose(q["M"], np.broadcast_to(x.mean(0), (20, 2)), atol=1e-12)
    mu, var = _equilibrium.quasi_equilibrium_moments(q["B"], q["M"], sigma=0.4)
    a, b = _equilibrium.beta_parameters(q["B"], q["M"], 0.4)
    m_beta = 2 * a / (a + b) - 1
    v_beta = 4 * a * b / ((a + b) ** 2 * (a + b + 1))
    np.testing.assert_allclose(mu, m_beta)
    np.testing.assert_allclose(var, v_beta)


def test_determinism_under_seed():
    img, _ = _square(40, 0.3)
    kw = dict(method="kinetic", space_rate=2.0, sigma=0.5)
    a = physeg.segment(img, rng=5, **kw)
    b = physeg.segment(img, rng=5, **kw)
    np.testing.assert_array_equal(a, b)
    feats = _dsmc.image_features(img, None)
    states = []
    for seed in (5, 5, 6):
        p = _dsmc.make_particles(feats)
        _dsmc.simulate(p, _dsmc.KineticParams(space_rate=2.0, sigma=0.5, t_final=0.5),
                       np.array([[0.5]]), np.random.default_rng(seed))
        states.append(p.x.copy())
    np.testing.assert_array_equal(states[0], states[1])
    assert not np.array_equal(states[0], states[2])


def test_input_not_modified_and_dtypes():
    img, m = _square(32, 0.2)
    for arr in (img.astype(np.float32), (img * 255).astype(np.uint8), img * 1000.0):
        before = arr.copy()
        lab = physeg.segment(arr, method="kinetic", rng=0)
        np.testing.assert_array_equal(arr, before)
        assert lab.dtype == np.uint8 and lab.shape == arr.shape
        assert _dice(lab, m) > 0.95


# ---------------------------------------------------------------- quality (fast)


@pytest.mark.parametrize("kind", ["gaussian", "uniform", "speckle", "poisson"])
def test_default_segments_noisy_square(kind):
    from physeg.data.noise import noisy_shape

    img, m = noisy_shape("square", 64, kind, 2, rng=1)
    lab = physeg.segment(img, method="kinetic", rng=0)
    assert _dice(lab, m) >= 0.95


def test_three_classes_on_three_level_image():
    from physeg.data.synthetic import three_level_image

    img, lab = three_level_image(64)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 0.15, img.shape), 0, 1)
    pred = physeg.segment(noisy, method="kinetic", classes=3, rng=0)
    assert set(np.unique(pred)) <= {0, 1, 2}
    for k in (1, 2):  # measured 0.946 and 0.964 (multi-Otsu: 0.79 and 0.89)
        assert _dice(pred == k, lab == k) > 0.92
    assert np.mean(pred == lab) > 0.97  # measured 0.983


def test_rgb_square_with_averaged_runs():
    from physeg.data.noise import noisy_shape

    img, m = noisy_shape("square", 48, "gaussian", 2, rng=3, channels=3)
    lab = physeg.segment(img, method="kinetic", channel_axis=-1, runs=2, rng=0)
    assert lab.shape == m.shape
    assert _dice(lab, m) >= 0.95


# ---------------------------------------------------------------- macroscopic model


def _macro_case(A=3, nb=40):
    img, m = _square(32, 0.2)
    st = _macro.macro_setup(_dsmc.image_features(img, None), n_bins=nb, n_space=16)
    rng = np.random.default_rng(0)
    kw = dict(delta=rng.uniform(0.1, 1, A), sigma=rng.uniform(0.1, 0.8, A),
              radius=rng.uniform(0.05, 0.3, A), barriers=rng.uniform(0.4, 0.6, (A, 1, 1)))
    return st, kw, m


def test_macro_mass_conservation_positivity_and_cfl():
    st, kw, _ = _macro_case()
    out = _macro.macro_solve(st, t_final=1.0, record=(0.25, 0.5), **kw)
    np.testing.assert_allclose(out["mass"], 1.0, atol=1e-12)  # round-off only
    for rho in list(out["history"]) + [out["rho"]]:
        np.testing.assert_allclose(rho.sum(-1) / st.n_bins, 1.0, atol=1e-12)
        assert rho.min() >= -1e-12
    assert 0 < out["max_cfl"] <= 0.9 + 1e-12
    np.testing.assert_allclose(out["t"], 1.0)


def test_macro_cfl_number_is_respected_for_any_choice():
    st, kw, _ = _macro_case(A=2)
    out = _macro.macro_solve(st, t_final=0.3, cfl=0.5, **kw)
    assert out["max_cfl"] <= 0.5 + 1e-12
    many = _macro.macro_solve(st, t_final=0.3, cfl=0.25, **kw)
    assert np.all(many["steps"] >= out["steps"])


def test_macro_vectorised_equals_single_agent_runs():
    st, kw, _ = _macro_case(A=3)
    full = _macro.macro_solve(st, t_final=0.5, **kw)
    for a in range(3):
        one = _macro.macro_solve(st, t_final=0.5, **{k: v[a : a + 1] for k, v in kw.items()})
        # the agents wait for each other at refresh times, so steps differ slightly
        np.testing.assert_allclose(one["rho"][0], full["rho"][a], atol=0.05 * one["rho"].max())


def test_macro_fixed_refresh_counts_every_interval():
    st, kw, _ = _macro_case(A=3)
    out = _macro.macro_solve(st, t_final=1.0, refresh=0.05, refresh_tol=0.0, **kw)
    np.testing.assert_array_equal(out["refreshes"], 20)  # T / refresh, no skipping


def test_macro_adaptive_refresh_matches_fixed_with_fewer_refreshes():
    """The adaptive refresh skips U/W recomputations only while they are (nearly) stationary:
    the final densities equal the fixed-interval ones to far below the scheme's own time error
    (fixed 0.05 against 0.025), with fewer refreshes."""
    st, kw, _ = _macro_case(A=4)
    fixed = _macro.macro_solve(st, t_final=4.0, refresh_tol=0.0, **kw)
    finer = _macro.macro_solve(st, t_final=4.0, refresh=0.025, refresh_tol=0.0, **kw)
    adapt = _macro.macro_solve(st, t_final=4.0, **kw)  # default tolerance
    l1 = lambda a, b: np.abs(a - b).sum(-1).max() / st.n_bins  # noqa: E731
    time_error = l1(fixed["rho"], finer["rho"])
    assert l1(adapt["rho"], fixed["rho"]) < 0.05 * time_error
    assert adapt["refreshes"].sum() < 0.8 * fixed["refreshes"].sum()
    np.testing.assert_allclose(adapt["mass"], 1.0, atol=1e-12)
    assert adapt["max_cfl"] <= 0.9 + 1e-12
    # a loose tolerance refreshes less, down to one refresh per refresh_max
    loose = _macro.macro_solve(st, t_final=4.0, refresh_tol=10.0, refresh_max=0.8, **kw)
    assert loose["refreshes"].max() <= 1 + 5 + 4  # 0.05, 0.1, 0.2, 0.4, then every 0.8


def test_macro_records_are_taken_at_the_requested_times():
    """With adaptive refresh intervals the agents still land on every record time: the stored
    density equals a run that stops there."""
    st, kw, _ = _macro_case(A=3)
    times = (0.3, 1.7, 3.0)
    long = _macro.macro_solve(st, t_final=4.0, record=times, **kw)
    for i, T in enumerate(times):
        short = _macro.macro_solve(st, t_final=T, **kw)
        np.testing.assert_allclose(long["history"][i], short["rho"], atol=1e-12)


def test_macro_binarises_towards_gt_distribution():
    st, kw, m = _macro_case(A=1)
    out = _macro.macro_solve(st, delta=[0.3], sigma=[0.1], radius=[0.1], barriers=[[[0.5]]],
                             t_final=4.0)
    gt = _macro.gt_distribution([1 - m.mean(), m.mean()], st.n_bins)
    init = _macro.histogram_loss(st.rho0[0], gt, st.n_bins)
    final = _macro.histogram_loss(out["rho"][0, 0], gt, st.n_bins)
    assert final < 0.1 * init
    assert final < 0.03


def test_macro_approaches_dsmc_as_delta_decreases():
    """Test 2: space weighted by 1/delta; DSMC feature law -> macroscopic rho as delta -> 0."""
    n, nb = 40, 50
    rng = np.random.default_rng(0)
    col = np.tile(np.arange(n), (n, 1))
    f = np.clip(0.25 + 0.5 * col / (n - 1) + rng.normal(0, 0.05, (n, n)), 0, 1)[..., None]
    kw = dict(delta=1.0, sigma=0.3, radius=0.3)  # Delta >= 1: M exactly conserved (spec §7)
    st = _macro.macro_setup(f, n_bins=nb)
    out = _macro.macro_solve(st, delta=[1.0], sigma=[0.3], radius=[0.3], barriers=[[[0.5]]],
                             transport_rate=1.0, binarise_rate=0.0, t_final=1.0)
    cdf_macro = np.cumsum(out["rho"][0, 0] / nb)
    dist = []
    for d in (10.0, 1.0, 0.1):
        p = _dsmc.make_particles(f)
        prm = _dsmc.KineticParams(space_rate=1 / d, transport_rate=1.0, binarise_rate=0.0,
                                  t_final=1.0, eps=0.05, **kw)
        _dsmc.simulate(p, prm, np.array([[0.5]]), np.random.default_rng(1))
        h = np.bincount(np.clip((p.c[:, 0] * nb).astype(int), 0, nb - 1), minlength=nb)
        dist.append(np.abs(np.cumsum(h) / h.sum() - cdf_macro).sum() / nb)  # W1
    assert dist[0] > dist[1] > dist[2]
    assert dist[2] < 0.3 * dist[0]


# ---------------------------------------------------------------- errors


def test_errors_are_helpful():
    img, m = _square(16, 0.1)
    with pytest.raises(ValueError, match="strictly inside their gaps"):
        physeg.segment(img, method="kinetic", barriers="1.2")
    with pytest.raises(ValueError, match="expected 1 .* or 3"):
        physeg.segment(np.dstack([img] * 3), method="kinetic", channel_axis=-1,
                       barriers="0.4,0.5")
    with pytest.raises(ValueError, match="comma-separated"):
        physeg.segment(img, method="kinetic", barriers="abc")
    with pytest.raises(ValueError, match="2D"):
        physeg.segment(np.zeros((4, 8, 8)), method="kinetic")
    with pytest.raises(ValueError, match="out of range"):
        physeg.segment(img, method="kinetic", radius=-1.0)
    with pytest.raises(ValueError, match="admissibility"):
        physeg.segment(img, method="kinetic", feature_update="nanbu", eps=0.9)


def test_macro_disk_filter_equals_direct_zero_padded_convolution():
    # the FFT period is only n + R (not n + 2R): the kept outputs must still be alias-free
    from scipy.signal import convolve2d

    rng = np.random.default_rng(3)
    n, h = 16, 2.0 / 16
    radius = np.array([0.05, 0.2, 0.5, 1.3])  # R up to n - 1 (disks wider than the grid)
    kf, nfft, R = _macro._disk_kernels_fft(radius, h, n)
    assert nfft < n + 2 * R
    fields = rng.random((radius.size, 1, 2, n, n))
    got = _macro._disk_filter(fields, kf, nfft, R)
    off = np.arange(-R, R + 1)
    d2 = off[:, None] ** 2 + off[None, :] ** 2
    for a, r in enumerate(radius):
        disk = (d2 <= (r / h) ** 2 + 1e-9).astype(float)
        for j in range(2):
            want = convolve2d(fields[a, 0, j], disk, mode="same")
            np.testing.assert_allclose(got[a, 0, j], want, rtol=1e-5, atol=1e-5 * want.max())


# ---------------------------------------------------------------- cost on elongated images


def _disk_sums_reference(avg, x, c):
    """chat on the cells, pair by pair with the disk's own integer test (O(N^2))."""
    cells = avg.cells(x)
    rc, cc = np.divmod(cells, avg.g)
    d2 = (rc[:, None] - rc[None]) ** 2 + (cc[:, None] - cc[None]) ** 2
    w = (d2 <= (avg._rc2)).astype(float)
    return (w @ c) / w.sum(1, keepdims=True)


@pytest.mark.parametrize("where, route", [
    ("square", "fft"),          # the whole grid, as before
    ("band", "fft"),            # a 2 x 256 image at its pixels: the FFT over its box
    ("spread", "pairs"),        # few particles spread over Omega: the occupied-cell pairs
])
def test_local_average_routes_equal_the_disk_sums(where, route):
    rng = np.random.default_rng(5)
    if where == "square":
        p = _dsmc.make_particles(rng.random((24, 24, 1)))
        x, r = p.x, 0.2
    elif where == "band":
        p = _dsmc.make_particles(rng.random((2, 256, 1)))
        x, r = p.x, 0.06
    else:
        p = _dsmc.make_particles(rng.random((2, 256, 1)))
        x, r = p.x[:300] * [1.0, 0.0] + rng.uniform(-0.5, 0.5, (300, 2)) * [0.0, 1.0], 0.05
    c = rng.random((len(x), 2))
    avg = _dsmc.LocalAverager(p.h, r)
    got = avg(x, c)
    assert avg.routes[route] == 1
    np.testing.assert_allclose(got, _disk_sums_reference(avg, x, c), atol=1e-9)


def test_thin_image_local_average_grid_follows_the_pixel_count(monkeypatch):
    """Issue 14 item 9: the disk sums of a 2 x 2048 image used an FFT over the whole
    2048 x 2048 grid of Omega (1000x its pixel count); now over the pixels' box."""
    from scipy import fft as sfft

    sizes = []
    real = sfft.rfft2

    def recording(a, s=None, *args, **kwargs):
        sizes.append(int(np.prod(s if s is not None else np.shape(a)[-2:])))
        return real(a, s, *args, **kwargs)

    for shape in ((64, 64), (2, 2048), (4, 1024)):
        p = _dsmc.make_particles(np.random.default_rng(0).random((*shape, 1)))
        avg = _dsmc.LocalAverager(p.h, 0.06)
        sizes.clear()
        monkeypatch.setattr(sfft, "rfft2", recording)
        avg(p.x, p.c)
        monkeypatch.setattr(sfft, "rfft2", real)
        assert max(sizes) <= 8 * shape[0] * shape[1], (shape, max(sizes))
