"""Tests for physeg.families.nets.priors: stencils, the RD residual and the phase-field energy.

Every expected value is computed by hand (see the comments) or from a closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from physeg.families.nets import priors as P  # noqa: E402

pytestmark = pytest.mark.torch


def _grid2(n=7, m=9, h=(1.0, 1.0)):
    y, x = torch.meshgrid(
        torch.arange(n, dtype=torch.float64) * h[0],
        torch.arange(m, dtype=torch.float64) * h[1],
        indexing="ij",
    )
    return y, x


# ----------------------------------------------------------------------------- stencils


@pytest.mark.parametrize("h", [(1.0, 1.0), (0.5, 2.0)])
def test_laplacian_of_quadratic_is_exact_2d(h):
    y, x = _grid2(h=h)
    u = (3 * x**2 + y**2)[None, None]
    lap = P.laplacian(u, spacing=h)
    # Δ(3x² + y²) = 8, exact for the 3-point second difference, away from the edges
    assert torch.allclose(lap[0, 0, 1:-1, 1:-1], torch.full_like(lap[0, 0, 1:-1, 1:-1], 8.0))
    assert lap.dtype == torch.float64 and lap.shape == u.shape


def test_laplacian_of_quadratic_is_exact_3d_anisotropic():
    h = (2.0, 1.0, 0.5)
    z, y, x = torch.meshgrid(*(torch.arange(6, dtype=torch.float64) * s for s in h), indexing="ij")
    u = (x**2 + y**2 + z**2)[None, None]
    lap = P.laplacian(u, spacing=h)
    assert torch.allclose(lap[0, 0, 1:-1, 1:-1, 1:-1], torch.tensor(6.0, dtype=torch.float64))


def test_laplacian_boundaries_by_hand():
    u = torch.tensor([[[[1.0, 2.0, 4.0, 8.0]]]])  # one row, 4 columns; rows axis of size 1
    u = u.expand(1, 1, 2, 4).contiguous()  # 2 identical rows: no contribution along rows
    # reflect: ghost u_-1 = u_1 -> Δu_0 = 2(u_1 - u_0) = 2; Δu_3 = 2(u_2 - u_3) = -8
    assert P.laplacian(u, boundary="reflect")[0, 0, 0].tolist() == [2.0, 1.0, 2.0, -8.0]
    # replicate: ghost u_-1 = u_0 -> Δu_0 = u_1 - u_0 = 1; Δu_3 = u_2 - u_3 = -4
    assert P.laplacian(u, boundary="replicate")[0, 0, 0].tolist() == [1.0, 1.0, 2.0, -4.0]
    # periodic: Δu_0 = u_1 - 2u_0 + u_3 = 8; Δu_3 = u_0 - 2u_3 + u_2 = -11
    assert P.laplacian(u, boundary="periodic")[0, 0, 0].tolist() == [8.0, 1.0, 2.0, -11.0]


@pytest.mark.parametrize("boundary", ["reflect", "replicate", "periodic"])
def test_laplacian_and_gradient_of_constant_vanish(boundary):
    u = torch.full((2, 3, 5, 6), 0.37)
    assert torch.count_nonzero(P.laplacian(u, boundary=boundary)) == 0
    for scheme in ("central", "forward"):
        for g in P.gradient(u, scheme=scheme, boundary=boundary):
            assert torch.count_nonzero(g) == 0


def test_gradient_of_linear_ramp():
    y, x = _grid2(h=(0.5, 0.25))
    u = (2 * x - 3 * y)[None, None]
    for scheme in ("central", "forward"):
        gy, gx = P.gradient(u, spacing=(0.5, 0.25), scheme=scheme)
        assert torch.allclose(gx[0, 0, 1:-1, 1:-1], torch.tensor(2.0, dtype=torch.float64))
        assert torch.allclose(gy[0, 0, 1:-1, 1:-1], torch.tensor(-3.0, dtype=torch.float64))


# ----------------------------------------------------------------------------- RD residual


@pytest.mark.parametrize("c", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("dims", [(6, 7), (4, 5, 6)])
def test_rd_residual_of_constant_map_zero(c, dims):
    # a constant map has zero diffusion; with a = c it is a zero of the reaction as well
    u = torch.full((1, 1, *dims), c, dtype=torch.float64)
    r = P.reaction_diffusion_residual(u, D=5.0, a=0.3)
    assert float(r.abs().max()) == 0.0
    assert float(P.reaction_diffusion_loss(u, D=5.0, a=0.3)) == 0.0


def test_rd_loss_of_other_constant_is_reaction_squared():
    c, a = 0.8, 0.5
    u = torch.full((2, 1, 5, 5), c, dtype=torch.float64)
    expected = (c * (1 - c) * (c - a)) ** 2  # 0.0144 * 0.09 ... = (0.048)^2
    assert math.isclose(float(P.reaction_diffusion_loss(u, D=3.0, a=a)), expected, rel_tol=1e-12)
    assert math.isclose(expected, 0.048**2, rel_tol=1e-12)


def test_rd_residual_single_spike_by_hand():
    u = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    u[0, 0, 2, 2] = 1.0
    r = P.reaction_diffusion_residual(u, D=2.0, a=0.5)
    # f(0) = f(1) = 0: r = D Δu; Δu = -4 at the spike, +1 at its 4 neighbours
    assert float(r[0, 0, 2, 2]) == -8.0
    assert float(r[0, 0, 1, 2]) == 2.0 and float(r[0, 0, 2, 3]) == 2.0
    # mean r² = (64 + 4*4) / 25
    assert math.isclose(float(P.reaction_diffusion_loss(u, D=2.0)), 80 / 25, rel_tol=1e-12)


def test_rd_gradient_matches_hand_formula_periodic():
    # L = mean r², r = DΔu + f(u); Δ is symmetric for periodic ghosts, so
    # dL/du = (2/N) (D Δ r + f'(u) r),  f'(u) = (1-2u)(u-a) + u(1-u)
    g = torch.Generator().manual_seed(0)
    u = torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    D, a = 0.7, 0.4
    loss = P.reaction_diffusion_loss(u, D=D, a=a, boundary="periodic")
    (grad,) = torch.autograd.grad(loss, u)
    with torch.no_grad():
        r = D * P.laplacian(u, boundary="periodic") + u * (1 - u) * (u - a)
        fp = (1 - 2 * u) * (u - a) + u * (1 - u)
        expected = 2.0 / u.numel() * (D * P.laplacian(r, boundary="periodic") + fp * r)
    assert torch.allclose(grad, expected, atol=1e-13)


def test_rd_descent_flattens_a_spike():
    # one gradient step on the RD loss lowers a bump and raises its neighbours (diffusion)
    u0 = torch.full((1, 1, 9, 9), 0.5, dtype=torch.float64)
    u0[0, 0, 4, 4] = 0.8
    u = u0.clone().requires_grad_(True)
    loss = P.reaction_diffusion_loss(u, D=1.0, a=0.5)
    (grad,) = torch.autograd.grad(loss, u)
    assert grad[0, 0, 4, 4] > 0  # descent lowers the spike
    assert grad[0, 0, 3, 4] < 0  # ... and raises its neighbours
    u1 = (u0 - 1.0 * grad).detach()
    assert float(P.reaction_diffusion_loss(u1, D=1.0, a=0.5)) < float(loss.detach())
    assert u1[0, 0, 4, 4] < 0.8


# ----------------------------------------------------------------------------- phase field


def test_phase_field_sharp_step_central_and_forward():
    n, m, eps = 8, 10, 0.3
    u = torch.zeros(1, 1, n, m, dtype=torch.float64)
    u[..., 5:] = 1.0
    # central: |∇u| = 1/2 on the 2 columns beside the jump -> sum (ε/2)(1/4)(2n) = εn/4
    central = P.phase_field_energy(u, eps=eps, reduction="none")
    assert math.isclose(float(central.sum()), eps * n / 4, rel_tol=1e-12)
    assert math.isclose(float(P.phase_field_energy(u, eps=eps)), eps * n / 4 / (n * m))
    # forward: |∇u| = 1 on one column -> εn/2; W(0) = W(1) = 0 adds nothing
    fwd = P.phase_field_energy(u, eps=eps, scheme="forward", reduction="integral")
    assert math.isclose(float(fwd), eps * n / 2, rel_tol=1e-12)


def test_phase_field_step_integral_is_spacing_invariant():
    # the integral of (ε/2)|∇u|² over a sharp step does not depend on the pixel size h
    u = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    u[..., 3:] = 1.0
    vals = [float(P.phase_field_energy(u, eps=0.2, spacing=h, reduction="integral"))
            for h in (1.0, 0.25)]
    assert math.isclose(vals[0], vals[1], rel_tol=1e-12)
    assert math.isclose(vals[0], 0.2 * 6 / 4, rel_tol=1e-12)


def test_phase_field_3d_plane_interface():
    u = torch.zeros(1, 1, 4, 5, 6, dtype=torch.float64)
    u[:, :, 2:] = 1.0  # a plane between planes 1 and 2, area 5 * 6 = 30 pixels
    e = P.phase_field_energy(u, eps=1.0, reduction="integral")
    assert math.isclose(float(e), 1.0 * 30 / 4, rel_tol=1e-12)


def test_phase_field_optimal_profile_gives_modica_mortola_constant():
    # u = 1 / (1 + exp(-√2 x / ε)) is the 1D minimiser; energy per unit length -> c_W = √2/6
    h, eps = 0.02, 0.2
    x = torch.arange(-150, 151, dtype=torch.float64) * h
    prof = 1.0 / (1.0 + torch.exp(-math.sqrt(2.0) * x / eps))
    rows = 4
    u = prof.expand(rows, -1)[None, None].contiguous()
    e = P.phase_field_energy(u, eps=eps, spacing=h, reduction="integral")
    per_length = float(e) / (rows * h)
    assert abs(per_length - P.C_W) / P.C_W < 1e-3
    # a blurred (non-optimal) profile of the same interface costs more
    prof2 = 1.0 / (1.0 + torch.exp(-math.sqrt(2.0) * x / (3 * eps)))
    e2 = P.phase_field_energy(prof2.expand(rows, -1)[None, None].contiguous(), eps=eps,
                              spacing=h, reduction="integral")
    assert float(e2) / (rows * h) > 1.2 * P.C_W


def test_phase_field_gradient_points_to_the_nearest_well():
    n = 25
    for c, sign in ((0.3, 1.0), (0.7, -1.0)):
        u = torch.full((1, 1, 5, 5), c, dtype=torch.float64, requires_grad=True)
        eps = 0.5
        (grad,) = torch.autograd.grad(P.phase_field_energy(u, eps=eps), u)
        wp = 2 * c * (1 - c) * (1 - 2 * c)  # W'(c)
        assert torch.allclose(grad, torch.full_like(grad, wp / (eps * n)))
        assert sign * float(grad[0, 0, 0, 0]) > 0  # descent moves 0.3 -> 0 and 0.7 -> 1


def test_phase_field_gradient_matches_hand_formula_forward_periodic():
    # forward differences with periodic ghosts: ∇ᵀ∇ = -Δ, so
    # dE/du = (1/N)(-ε Δu + W'(u)/ε)
    g = torch.Generator().manual_seed(1)
    u = torch.rand(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    eps = 0.8
    e = P.phase_field_energy(u, eps=eps, scheme="forward", boundary="periodic")
    (grad,) = torch.autograd.grad(e, u)
    with torch.no_grad():
        wp = 2 * u * (1 - u) * (1 - 2 * u)
        expected = (-eps * P.laplacian(u, boundary="periodic") + wp / eps) / u.numel()
    assert torch.allclose(grad, expected, atol=1e-13)


def test_allen_cahn_link_rd_equals_scaled_first_variation():
    # with a = 1/2 and D = ε²/4: r = -(ε/4) (-εΔu + W'(u)/ε)
    g = torch.Generator().manual_seed(2)
    u = torch.rand(1, 1, 6, 6, generator=g, dtype=torch.float64)
    eps = 1.5
    r = P.reaction_diffusion_residual(u, D=eps**2 / 4, a=0.5)
    wp = 2 * u * (1 - u) * (1 - 2 * u)
    first_var = -eps * P.laplacian(u) + wp / eps
    assert torch.allclose(r, -(eps / 4) * first_var, atol=1e-14)


# ----------------------------------------------------------------------------- combined


def test_pde_prior_loss_is_weighted_sum_and_zero_weights_skip():
    g = torch.Generator().manual_seed(3)
    u = torch.rand(2, 1, 8, 8, generator=g)
    total, parts = P.pde_prior_loss(u, lambda_rd=0.1, lambda_pf=0.3, D=1.0, eps=1.0)
    rd = P.reaction_diffusion_loss(u, D=1.0)
    pf = P.phase_field_energy(u, eps=1.0)
    assert torch.allclose(total, 0.1 * rd + 0.3 * pf)
    assert math.isclose(parts["rd"], float(rd), rel_tol=1e-6)
    zero, parts0 = P.pde_prior_loss(u, lambda_rd=0.0, lambda_pf=0.0)
    assert float(zero) == 0.0 and math.isnan(parts0["rd"]) and math.isnan(parts0["pf"])


def test_valid_mask_excludes_pixels():
    u = torch.full((1, 1, 4, 4), 0.25, dtype=torch.float64)
    u[..., 2:] = 1.0  # right half at a well: W = 0 there, but there is a jump
    valid = torch.zeros(1, 4, 4)
    valid[:, :, 0] = 1  # only the first column counts: W(0.25)/eps, no gradient there
    e = P.phase_field_energy(u, eps=1.0, valid=valid)
    assert math.isclose(float(e), (0.25 * 0.75) ** 2, rel_tol=1e-12)


def test_presets_and_input_not_modified():
    assert set(P.PRESETS) == {"poudel2026", "allen-cahn"}
    ac = P.PRESETS["allen-cahn"]
    assert math.isclose(ac["D"], ac["eps"] ** 2 / 4)
    u = torch.rand(1, 1, 5, 5)
    before = u.clone()
    P.pde_prior_loss(u, **P.PRESETS["poudel2026"])
    assert torch.equal(u, before)


# ----------------------------------------------------------------------------- errors


def test_errors_say_what_to_do():
    with pytest.raises(TypeError, match="torch.Tensor"):
        P.laplacian(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"u\[None, None\]"):
        P.laplacian(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="at least 2 pixels"):
        P.laplacian(torch.zeros(1, 1, 1, 4))
    with pytest.raises(TypeError, match="floating"):
        P.laplacian(torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="spacing must be one positive"):
        P.laplacian(torch.zeros(1, 1, 4, 4), spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match="Did you mean 'reflect'"):
        P.laplacian(torch.zeros(1, 1, 4, 4), boundary="reflct")
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        P.phase_field_energy(torch.zeros(1, 1, 4, 4), eps=0.0)
    with pytest.raises(ValueError, match="a must lie in"):
        P.reaction_diffusion_loss(torch.zeros(1, 1, 4, 4), a=1.5)
    with pytest.raises(ValueError, match="lambda_rd must be"):
        P.pde_prior_loss(torch.zeros(1, 1, 4, 4), lambda_rd=-1.0)
    with pytest.raises(ValueError, match="valid mask shape"):
        P.phase_field_energy(torch.zeros(1, 1, 4, 4), valid=torch.ones(1, 3, 3))
