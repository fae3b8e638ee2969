"""Macroscopic first-order model, vectorised over many parameter sets.

State per parameter set ("agent") a and feature channel: the feature density rho(t, c) and the
P-weighted first moment M(t, c) on N_c feature cells. With fast spatial relaxation the kinetic
density is closed by the Beta quasi-equilibrium f ~ rho(c) g(x; c) of
:mod:`._equilibrium`, and (30)-(31)::

    d_t rho + d_c (rho V) = 0,
    V(t, c) = lambda_T H(c) (U(t, c) - c) - lambda_B V'(c),
    U(t, c) = int chat_inf(t, x) g(x; c) dx,       chat_inf = (disk_r * c-field) / (disk_r * mass)
    d_t M(t, c) + int P(c, c*) d_c* G(t, c*) dc* = 0,
    G = rho [lambda_T H (W - c mu) - lambda_B V' mu],  W = int x chat_inf g dx,  mu = M / B.

Discretisation: explicit Euler, Rusanov flux with the speed taken at the
interfaces c_{j+1/2} (so a binarised state keeps all its mass in the boundary cells), zero flux
at c = 0 and c = 1 (mass conserved to round-off), CFL step
``dt <= cfl * dc / max |V_{j+1/2}|`` per agent, each agent with its own step (agents that have
reached T stop). The spatial cell masses of g are the Beta log-densities at the cell centres,
normalised per feature cell by log-sum-exp (the paper suggests CDF differences;
``scipy.special.betainc`` cost about 3.5 us per value here, 100x the rest of a refresh, and
the normalised centre rule stays finite for alpha or beta < 1 and for laws narrower than a
cell); the disk filter is an FFT convolution with one kernel per agent.

Choices where the paper left room (and why):

- U, W (the expensive quadratures over the spatial grid), B and mu = M/B are refreshed
  at most every ``refresh`` time units (default 0.05, the DSMC step), not every CFL step;
  between refreshes V and mu are fixed fields, the Rusanov update costs O(N_c) per agent, and
  the M-increments P dJ are summed and applied at the next refresh (exact for frozen mu, since
  P is linear). The refreshes are most of the cost of a loss evaluation.
- Adaptive refresh (``refresh_tol``, default 1e-4): each agent keeps its own interval
  h_a = refresh * 2^k <= ``refresh_max``. After a refresh, if U and W changed by at most
  refresh_tol / 2 since the agent's previous refresh (max over the feature cells carrying
  mass > 1e-6; cells without mass move nothing), h_a doubles; a change above refresh_tol
  resets it to ``refresh``. Why: most agents reach a stationary consensus long before T (the
  median change of U per 0.05 falls from 2e-2 at t = 0 to 3e-7 at t = 2, 64 random agents on
  a 64^2 square), and refreshing them is wasted work. Measured in
  ``benchmarks/kinetic_speed.py``: half the refreshes, the final loss equal to the fixed-0.05
  one within 6e-7, while the fixed-0.05 scheme's own error against a 0.0125 reference is 8e-3
  (a uniform 0.1 instead moves the loss by 1e-2, which is why the base interval stays 0.05).
  Agents land on the next time any agent is due, so the CFL sub-steps are shared.
- Cost of a refresh (the quadratures and the FFT run in float32, the state rho, M and the
  velocities in float64; against a float64 refresh the final loss moves by < 1e-7): the
  Beta weights are laid out (agent, channel, N_x, N_c) per axis so every product is a
  contiguous BLAS matmul; the log-densities are one matmul per axis with [log(1+z),
  log(1-z)]; the per-cell normalisations are folded into the cell masses and the quadratures
  instead of dividing the weights; the mass and c-mass fields are one matmul,
  and U, W_x, W_y two; the disk filter is done axis by axis with FFT period N_x + R (not
  N_x + 2R: the N_x outputs kept are alias-free once the period is >= N_x + R), rows that
  are all zero are not transformed and only the kept rows are inverse-transformed.
- Between refreshes each CFL step is 5 array operations on the agents still moving: the
  speeds are pre-scaled by each agent's dt/dc, the counts of moving agents are tabulated once
  per interval, every agent's shortened last step is one vectorised step at the end, and
  the upwind sums for the J-fluxes are taken once per interval.
- RGB: each channel's marginal (57) evolves by its own 1-D system (channel distance in P, that
  channel's local average and barrier). This is exact when the channels are independent and
  avoids an N_c^3 grid; the loss is the sum of the marginal losses.
- Initial data from the image histogram (§8.3); positions are the pixel centres of
  :func:`._dsmc.make_particles`, in the same Omega: the image's rectangle
  [-a_1, a_1] x [-a_2, a_2] (long side 2). Along axis k the Beta law is that of
  z = x_k / a_k with mean M_k / (a_k B) (:mod:`._equilibrium`); the spatial grid has
  ``n_space`` cells along the long side and ``max(1, round(n_space a_k))`` along the other,
  so the cells are square up to rounding (the disk filter takes each axis's cell side).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _multiwell
from ._equilibrium import feature_bins, interaction_matrix

__all__ = ["MacroSetup", "macro_setup", "macro_solve", "histogram_loss", "gt_distribution"]


@dataclasses.dataclass
class MacroSetup:
    """Initial data of the macroscopic model for one image: rho0 (d, N_c), J0 (d, N_c, 2).

    ``extent`` = (a_1, a_2): Omega = [-a_1, a_1] x [-a_2, a_2], the image's rectangle of
    :func:`._dsmc.make_particles` (default the square [-1, 1]^2).
    """

    rho0: np.ndarray
    J0: np.ndarray
    n_bins: int
    n_space: int
    extent: tuple[float, float] = (1.0, 1.0)


def macro_setup(features: np.ndarray, n_bins: int = 50, n_space: int = 32) -> MacroSetup:
    """Histogram initial data from a feature image (rows, cols, d) in [0, 1].

    ``n_space`` is the number of spatial cells along the image's long side; the short side
    gets as many cells of (nearly) the same size, at least one (see :func:`macro_solve`).
    """
    from ._dsmc import make_particles

    p = make_particles(features)
    n = p.x.shape[0]
    _, dc = feature_bins(n_bins)
    d = p.c.shape[1]
    rho0 = np.empty((d, n_bins))
    J0 = np.empty((d, n_bins, 2))
    for k in range(d):
        j = np.clip((p.c[:, k] / dc).astype(np.int64), 0, n_bins - 1)
        rho0[k] = np.bincount(j, minlength=n_bins) / (n * dc)
        for ax in (0, 1):
            J0[k, :, ax] = np.bincount(j, weights=p.x[:, ax], minlength=n_bins) / (n * dc)
    return MacroSetup(rho0=rho0, J0=J0, n_bins=n_bins, n_space=n_space, extent=p.extent)


def gt_distribution(fractions: np.ndarray, n_bins: int) -> np.ndarray:
    """Target density: class fractions as point masses in the cells of the K targets.

    For K = 2, (1 - p) delta_0 + p delta_1, i.e. (1 - p)/dc in the first cell and
    p/dc in the last.
    """
    fractions = np.asarray(fractions, dtype=float)
    K = fractions.size
    _, dc = feature_bins(n_bins)
    t = _multiwell.targets(K)
    out = np.zeros(n_bins)
    idx = np.clip((t / dc).astype(np.int64), 0, n_bins - 1)
    np.add.at(out, idx, fractions / dc)
    return out


def histogram_loss(rho: np.ndarray, rho_gt: np.ndarray, n_bins: int) -> np.ndarray:
    """L2 loss (54) on bin masses: sqrt(sum_j (rho_j dc - rho_gt_j dc)^2), over the last axis."""
    dc = 1.0 / n_bins
    return np.sqrt(np.sum(((rho - rho_gt) * dc) ** 2, axis=-1))


def _disk_kernels_fft(radius: np.ndarray, h: tuple[float, float], n: tuple[int, int]):
    """FFTs of the disk kernels (one per agent) for a linear convolution on an n_0 x n_1 grid.

    ``h`` = (h_0, h_1) are the cell sides along the two axes; the disk holds the offsets
    (i h_0, j h_1) of length <= r. Returns (kernel FFTs (A, nfft_0, nfft_1//2 + 1), nfft, R)
    with R = (R_0, R_1) the largest disk radius in cells along each axis (at most n_k - 1:
    larger offsets leave the grid); the kernel support is (2 R_0 + 1) x (2 R_1 + 1). Only the
    outputs R_k .. R_k + n_k - 1 of the full linear convolution (length n_k + 2 R_k) are
    kept, and the circular one of period nfft_k aliases output i with i +- nfft_k, which
    stays outside [0, n_k + 2 R_k) for those i once nfft_k >= n_k + R_k: so nfft_k is the
    smallest 7-smooth size >= n_k + R_k (40 instead of 45 for n = 32, R = 5).
    """
    from scipy import fft as sfft

    radius = np.asarray(radius, dtype=float)
    r_max = np.max(radius)
    R = tuple(int(min(nk - 1, np.ceil(r_max / hk + 1e-9))) for hk, nk in zip(h, n, strict=True))
    off0 = np.arange(-R[0], R[0] + 1) * (h[0] / h[1])  # in units of h_1
    off1 = np.arange(-R[1], R[1] + 1)
    d2 = off0[:, None] ** 2 + off1[None, :] ** 2
    rc = (radius[:, None, None] / h[1]) ** 2
    disk = (d2[None] <= rc + 1e-9).astype(np.float64)
    nfft = []
    for nk, rk in zip(n, R, strict=True):
        m = nk + rk
        while not _smooth(m):
            m += 1
        nfft.append(m)
    kern = np.zeros((radius.size, *nfft), dtype=np.float32)
    kern[:, : 2 * R[0] + 1, : 2 * R[1] + 1] = disk
    return sfft.rfft2(kern), tuple(nfft), R


def _disk_filter(fields: np.ndarray, kf: np.ndarray, nfft: tuple[int, int],
                 R: tuple[int, int]) -> np.ndarray:
    """Zero-padded linear convolution of fields (A, ..., n_0, n_1) with the agents' disks.

    ``kf``, ``nfft``, ``R`` from :func:`_disk_kernels_fft`. Axis by axis: the forward pass
    along the last axis only over the n_0 non-zero rows, the inverse pass along it only over
    the n_0 rows kept.
    """
    from scipy import fft as sfft

    n0, n1 = fields.shape[-2:]
    spec = sfft.fft(sfft.rfft(fields, n=nfft[1], axis=-1), n=nfft[0], axis=-2)
    spec *= kf.reshape(kf.shape[:1] + (1,) * (fields.ndim - 3) + kf.shape[1:])
    spec = sfft.ifft(spec, axis=-2)[..., R[0] : R[0] + n0, :]
    return sfft.irfft(spec, n=nfft[1], axis=-1)[..., R[1] : R[1] + n1]


def _smooth(n: int) -> bool:
    """True when n has no prime factor other than 2, 3, 5, 7 (fast FFT sizes)."""
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


def _grad_v_agents(c: np.ndarray, barriers: np.ndarray, classes: int) -> np.ndarray:
    """V'(c) at points c (n,) for per-agent barriers (A, K-1); returns (A, n)."""
    t = _multiwell.targets(classes)
    h = np.diff(t)
    k = np.clip(np.searchsorted(t, c, side="right") - 1, 0, classes - 2)
    s = (c - t[k]) / h[k]
    sb = (barriers[:, k] - t[k]) / h[k]  # (A, n)
    return h[k] * _multiwell.normalisation(sb) * s * (s - sb) * (s - 1.0)


def macro_solve(
    setup: MacroSetup,
    *,
    delta: np.ndarray,
    sigma: np.ndarray,
    radius: np.ndarray,
    barriers: np.ndarray,
    classes: int = 2,
    transport_rate: float = 20.0,
    binarise_rate: float = 0.5,
    t_final: float = 4.0,
    cfl: float = 0.9,
    refresh: float = 0.05,
    refresh_tol: float = 1e-4,
    refresh_max: float = 0.8,
    record: tuple[float, ...] = (),
    max_steps: int = 200_000,
) -> dict[str, np.ndarray]:
    """Evolve rho and M to ``t_final`` for A parameter sets at once.

    Parameters
    ----------
    setup : MacroSetup
        Initial data from :func:`macro_setup`.
    delta, sigma, radius : ndarray (A,)
        Delta, sigma and r of each agent.
    barriers : ndarray (A, d, K-1)
        Barriers of each agent per channel.
    classes : int
        Number of wells K.
    transport_rate, binarise_rate : float
        lambda_T and lambda_B (the spatial rate is infinite: quasi-equilibrium closure).
    t_final : float
        Final time T.
    cfl : float
        CFL number C <= 1 (positivity of the Rusanov scheme needs C <= 1).
    refresh : float
        Time between recomputations of U and W (the base interval; with the adaptive refresh
        an agent's interval is this times a power of 2).
    refresh_tol : float, default 1e-4
        Adaptive refresh: when > 0, an agent whose U and W (on the feature cells with mass)
        changed by at most ``refresh_tol / 2`` since its previous refresh doubles its own
        interval, up to ``refresh_max``; a change above ``refresh_tol`` resets it to
        ``refresh``. 0 refreshes every agent every ``refresh``.
    refresh_max : float, default 0.8
        Longest interval of the adaptive refresh (rounded down to refresh times a power of 2).
    record : tuple of float
        Times at which rho is stored (returned as ``history``, shape (len, A, d, N_c)).

    Returns
    -------
    dict with ``rho`` (A, d, N_c), ``M`` (A, d, N_c, 2), ``steps`` (A,) CFL steps taken,
    ``refreshes`` (A,) U/W recomputations,
    ``max_cfl`` the largest dt * max|V| / dc used, ``mass`` (A, d) final masses and
    ``history``.
    """
    delta = np.atleast_1d(np.asarray(delta, dtype=float))
    sigma = np.atleast_1d(np.asarray(sigma, dtype=float))
    radius = np.atleast_1d(np.asarray(radius, dtype=float))
    A = delta.size
    d, nc = setup.rho0.shape
    barriers = np.broadcast_to(np.asarray(barriers, dtype=float), (A, d, classes - 1))
    centres, dc = feature_bins(nc)
    faces = np.arange(1, nc) * dc  # interior interfaces c_{j+1/2}
    # spatial cells: n_space along the long side, as many of (nearly) the same size along the
    # short one; axis 0 = x (columns), axis 1 = y (rows, y up), Omega = [-a_k, a_k] per axis
    ext = np.asarray(setup.extent, dtype=np.float64)
    n_ax, h_ax, xc, log_x = [], [], [], []
    for a in ext:
        n_k = max(1, int(round(setup.n_space * a)))
        h_k = 2.0 * a / n_k
        x_k = -a + h_k * np.arange(n_k) + h_k / 2.0  # cell centres
        n_ax.append(n_k)
        h_ax.append(h_k)
        xc.append(x_k)
        # the Beta law of axis k is that of z = x_k / a_k on [-1, 1]: log(1 + z), log(1 - z)
        log_x.append(np.stack([np.log1p(x_k / a), np.log1p(-x_k / a)], -1))
    one_x = np.stack([np.ones(n_ax[0]), xc[0]])  # sums over x of f and of x f
    # the refresh quadratures run in float32 (see the module docstring)
    log_x32 = [v.astype(np.float32) for v in log_x]
    one_x32 = one_x.astype(np.float32)
    yc32, centres32 = xc[1].astype(np.float32), centres.astype(np.float32)

    kf, nfft, R = _disk_kernels_fft(radius, h_ax, n_ax)  # (A, nfft_x, nfft_y//2+1)
    P = interaction_matrix(centres, delta)  # (A, nc, nc)
    H_face = _multiwell.modulation(faces, classes)
    gradV = np.stack([_grad_v_agents(faces, barriers[:, k], classes) for k in range(d)], 1)
    rho = np.broadcast_to(setup.rho0, (A, d, nc)).copy()
    J0 = np.broadcast_to(setup.J0, (A, d, nc, 2))
    P4 = P[:, None]  # (A, 1, nc, nc)
    M = (P4 @ J0) * dc  # (A, d, nc, 2), updated in place by flush
    s2 = 2.0 * sigma**2  # (A,)
    t = np.zeros(A)
    steps = np.zeros(A, dtype=np.int64)
    max_cfl = 0.0
    rec_times = sorted(record)
    history = []
    rec_i = 0
    # adaptive refresh (refresh_tol > 0): agent a recomputes U, W only every h_a = refresh * 2^k
    # time units, doubling h_a while U and W change by <= refresh_tol / 2 between its refreshes
    h_max = refresh * 2 ** max(0, int(np.floor(np.log2(max(refresh_max / refresh, 1.0)) + 1e-9)))
    h_agent = np.full(A, refresh)
    due = np.zeros(A)  # time of each agent's next refresh
    U_prev = np.full((A, d, nc), np.nan)
    W_prev = np.zeros((A, d, nc, 2))
    refreshes = np.zeros(A, dtype=np.int64)
    vel = np.zeros((A, d, nc - 1))
    acc = np.zeros((A, d, nc - 1))  # sum over steps of (dt/dc) rho_up since the last refresh
    gcoef = np.zeros((A, d, nc - 1, 2))
    pos = np.zeros((A, d, nc - 1), dtype=bool)
    vmax = np.zeros(A)
    dt_cfl = np.full(A, np.inf)

    def flush(M: np.ndarray, ia: np.ndarray) -> None:
        """M += P dJ with dJ_j = -(G_{j+1/2} - G_{j-1/2}) summed since the last refresh."""
        G = acc[ia, ..., None] * gcoef[ia]
        dJ = np.zeros((ia.size, d, nc, 2))
        dJ[..., :-1, :] -= G
        dJ[..., 1:, :] += G
        acc[ia] = 0.0
        M[ia] += (P4[ia] @ dJ) * dc

    Wbar = np.zeros((A, d, nc, 2))
    total = 0
    while np.any(t < t_final - 1e-12) and total < max_steps:
        while rec_i < len(rec_times) and np.all(t >= rec_times[rec_i] - 1e-12):
            history.append(rho.copy())
            rec_i += 1
        active = t < t_final - 1e-12
        ia = np.nonzero(active & (t >= due - 1e-12))[0]
        if ia.size:
            # M += P (sum of the J increments since the last refresh): P is linear, so this
            # equals applying P every step while mu is frozen
            flush(M, ia)
            B = (rho[ia, :, None, :] @ P4[ia])[:, :, 0, :] * dc  # (a, d, nc); P symmetric
            # mean position M / B per axis in z = x_k / a_k (the Beta law's variable)
            mu_z = np.clip(M[ia] / (np.maximum(B, 1e-300)[..., None] * ext), -1 + 1e-6,
                           1 - 1e-6)
            mu = mu_z * ext
            # Beta quasi-equilibrium masses per spatial cell and axis, laid out (a, d, 2, n,
            # nc) so that every matmul below has BLAS-friendly contiguous operands:
            # log-density at the cell centres (one matmul per axis with [log(1+z),
            # log(1-z)]), normalised per feature cell (log-sum-exp); the normalisations Z are
            # folded into the feature-cell masses and the quadratures instead of dividing w
            Bn = np.maximum(B, 1e-12)[..., None]
            al = np.maximum(Bn * (1 + mu_z) / s2[ia, None, None, None], 1e-8)
            be = np.maximum(Bn * (1 - mu_z) / s2[ia, None, None, None], 1e-8)
            coef = np.stack([np.moveaxis(al, -1, -2) - 1.0, np.moveaxis(be, -1, -2) - 1.0], -2)
            coef32 = coef.astype(np.float32)
            w_ax = []
            for k in (0, 1):  # (n_k, 2) @ (a, d, 2, nc) -> (a, d, n_k, nc)
                logw = log_x32[k] @ coef32[:, :, k]
                logw -= logw.max(-2, keepdims=True)
                w_ax.append(np.exp(logw, out=logw))
            wxT, wyT = w_ax  # x-axis (columns), y-axis (rows, y up)
            zxy = wxT.sum(-2, dtype=np.float64) * wyT.sum(-2, dtype=np.float64)  # (a, d, nc)
            a_n = ia.size
            mass = (rho[ia] * dc / zxy).astype(np.float32)[..., None, :]
            # transposed mass and c-mass fields (x, y) in one matmul: (a, d, 2 n_x, n_y);
            # the disk kernels are built for this (x, y) layout and its cell sides
            mw = mass * wxT
            fieldsT = np.concatenate([mw, mw * centres32], -2) @ (
                np.ascontiguousarray(np.swapaxes(wyT, -1, -2)))
            # the zero-padded transform is done axis by axis: the first pass only over the n_x
            # non-zero rows, the last inverse pass only over the n_x rows kept
            both = fieldsT.reshape(a_n, d, 2, n_ax[0], n_ax[1])
            conv = _disk_filter(both, kf if a_n == A else kf[ia], nfft, R)
            c0 = conv[:, :, 0]
            chatT = np.divide(conv[:, :, 1], c0, out=np.full_like(c0, 0.5), where=c0 > 1e-12)
            np.clip(chatT, 0.0, 1.0, out=chatT)  # (a, d, n_x, n_y)
            # U = sum wx chat wy, Wx = sum x wx chat wy, Wy = sum wx chat y wy per feature
            # cell: Q = chat^T [wy, y wy], then the x-sums with weights wx, x wx as a matmul
            Q = chatT @ np.concatenate([wyT, wyT * yc32[:, None]], -1)  # (a, d, n_x, 2 nc)
            Q *= np.concatenate([wxT, wxT], -1)
            S = (one_x32 @ Q).astype(np.float64)  # (a, d, 2, 2 nc): rows sum_x, sum_x x
            U = S[..., 0, :nc] / zxy
            W_new = np.stack([S[..., 1, :nc], S[..., 0, nc:]], -1) / zxy[..., None]
            Wbar[ia] = W_new
            refreshes[ia] += 1
            if refresh_tol > 0:
                # step-size control: the largest change of U or W since the agent's last
                # refresh, over the feature cells that carry mass (elsewhere V moves nothing)
                change = np.maximum(np.abs(U - U_prev[ia]),
                                    np.abs(W_new - W_prev[ia]).max(-1))
                change = np.where(rho[ia] * dc > 1e-6, change, 0.0).max(axis=(1, 2))
                change = np.where(np.isnan(change), np.inf, change)  # first refresh
                h_new = np.where(change <= 0.5 * refresh_tol,
                                 np.minimum(2.0 * h_agent[ia], h_max), h_agent[ia])
                h_agent[ia] = np.where(change > refresh_tol, refresh, h_new)
                U_prev[ia], W_prev[ia] = U, W_new
            due[ia] = t[ia] + h_agent[ia]
            Uf = 0.5 * (U[..., 1:] + U[..., :-1])
            vel[ia] = (transport_rate * H_face * (Uf - faces)
                       - binarise_rate * gradV[ia])
            # constant between refreshes: CFL step, upwind side and the J-flux coefficient
            # G_{j+1/2} = rho_up * [lambda_T H (W_bar - c mu_up) - lambda_B V' mu_up]
            vmax[ia] = np.abs(vel[ia]).max(axis=(1, 2))
            dt_cfl[ia] = np.where(vmax[ia] > 0, cfl * dc / np.maximum(vmax[ia], 1e-300), np.inf)
            pos[ia] = vel[ia] > 0
            mu_up = np.where(pos[ia, ..., None], mu[..., :-1, :], mu[..., 1:, :])
            Wf = 0.5 * (W_new[..., 1:, :] + W_new[..., :-1, :])
            gcoef[ia] = (transport_rate * H_face[:, None] * (Wf - faces[:, None] * mu_up)
                         - binarise_rate * gradV[ia, ..., None] * mu_up)
        # all agents land on the next time some agent is due, or on the next record time
        next_refresh = float(np.min(due[active]))
        if rec_i < len(rec_times) and rec_times[rec_i] > float(np.min(t[active])) + 1e-12:
            next_refresh = min(next_refresh, rec_times[rec_i])
        # One refresh interval: agent a takes n_a steps of its CFL step, the last one shortened
        # so that every agent lands on the next refresh time (or T). Agents are ordered by n_a,
        # so those still moving at step k form a prefix (array views, no per-step gather).
        h = np.where(active, np.minimum(next_refresh, t_final) - t, 0.0)
        dt_fin = np.where(np.isfinite(dt_cfl), dt_cfl, 0.0)
        n_a = np.where(h > 0, np.ceil(h / np.where(dt_fin > 0, dt_fin, np.inf) - 1e-9), 0)
        n_a = np.maximum(n_a.astype(np.int64), (h > 0).astype(np.int64))
        last = h - (n_a - 1).clip(0) * dt_fin
        order = np.argsort(-n_a, kind="stable")
        n_sorted = n_a[order]
        rho_p = rho[order]
        nmax = int(n_sorted[0]) if A else 0
        # the n_a - 1 full steps of lambda = dt / dc with the speeds pre-scaled by lambda (the
        # agents still taking full steps at step k form a prefix of n_full[k]), then every
        # agent's shortened last step at once
        n_full = np.searchsorted(-(n_sorted - 1), -np.arange(max(nmax - 1, 0)), side="left")
        lam = (dt_fin[order] / dc)[:, None, None]
        lam_last = np.where(n_sorted > 0, last[order] / dc, 0.0)[:, None, None]
        pos_p = pos[order]
        v_left = np.where(pos_p, vel[order], 0.0)  # speed applied to the left / right cell
        v_right = np.where(pos_p, 0.0, vel[order])
        vl_full, vr_full = lam * v_left, lam * v_right
        r_sum = np.zeros_like(rho_p)  # sum over the full steps of rho
        for L in n_full:
            r = rho_p[:L]
            r_sum[:L] += r
            # Rusanov flux with the interface speed = upwind flux; zero flux at c = 0, 1
            flux = vl_full[:L] * r[..., :-1]
            flux += vr_full[:L] * r[..., 1:]
            r[..., :-1] -= flux
            r[..., 1:] += flux
        lr = lam_last * rho_p
        lr_sum = lam * r_sum + lr  # sum over all steps of lambda * rho
        flux = v_left * lr[..., :-1]
        flux += v_right * lr[..., 1:]
        rho_p[..., :-1] -= flux
        rho_p[..., 1:] += flux
        rho[order] = rho_p
        # J-fluxes are rho_up * gcoef: the upwind sums are applied at the next refresh
        acc[order] += np.where(pos_p, lr_sum[..., :-1], lr_sum[..., 1:])
        big = np.where(n_a > 1, dt_fin, last)
        max_cfl = max(max_cfl, float(np.max(big * vmax, initial=0.0)) / dc)
        steps += n_a
        t = np.where(active, np.minimum(next_refresh, t_final), t)
        total += nmax
    flush(M, np.arange(A))
    while rec_i < len(rec_times):
        history.append(rho.copy())
        rec_i += 1
    return {
        "rho": rho,
        "M": M,
        "steps": steps,
        "refreshes": refreshes,
        "max_cfl": max_cfl,
        "mass": rho.sum(-1) * dc,
        "history": np.array(history) if history else np.zeros((0,) + rho.shape),
        "t": t,
    }
