"""Conserved quantities and the Beta quasi-equilibrium of the spatial operator.

With only the spatial operator Q_x active (features frozen), the feature density

    rho(t, c) = int_Omega f(x, c, t) dx                                   (21)

is conserved, and so (approximately, see below) is the P-weighted first moment

    M(t, c) = int_C P(c, c*; Delta) rho(c*) m(c*) dc*,   m = rho^-1 int x f dx     (24)

with the P-weighted mass B(t, c) = int_C P(c, c*) rho(c*) dc*. For the diffusion
D(x, c) = D_c(c) diag(sqrt(1 - x_k^2)) the zero-flux stationary state of Q_x is, per feature and
per axis, a Beta law (28)::

    (1 + x_k) / 2 ~ Beta(alpha_k, beta_k),
    alpha_k = (B + M_k) / (2 sigma^2 D_c^2),   beta_k = (B - M_k) / (2 sigma^2 D_c^2),

with mean M_k / B and variance (1 - mu_k^2) sigma^2 D_c^2 / (sigma^2 D_c^2 + B).

On the rectangle Omega = [-a_1, a_1] x [-a_2, a_2] of a non-square image (:mod:`._dsmc`),
D_k = sqrt(a_k^2 - x_k^2): the motion along axis k is the square one's under x_k = a_k z_k,
so (1 + x_k / a_k) / 2 ~ Beta with M_k replaced by M_k / a_k above (``extent`` below); the
mean is M_k / B and the variance a_k^2 times that of z_k.

The spatial binary rule (9) gives, in the quasi-invariant limit, the drift
int P (x* - x) f* = M - B x and the diffusion sigma^2 D^2 (the factor 1/2 of the Fokker-Planck
second-order term cancels the 2 of sqrt(2 eps sigma^2)); the Beta parameters above follow from
the zero-flux condition sigma^2 d_x((1 - x^2) g) = (M - B x) g.

M is exactly conserved only when P is transitive on the support of rho (e.g. Delta >= 1);
otherwise it drifts slowly (a caveat of the paper). The tests use the exactly conserved case.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "feature_bins",
    "conserved_quantities",
    "beta_parameters",
    "quasi_equilibrium_marginal",
    "quasi_equilibrium_moments",
]


def feature_bins(n_bins: int) -> tuple[np.ndarray, float]:
    """Cell centres c_j = (j - 1/2) dc and width dc = 1 / n_bins of the feature grid."""
    dc = 1.0 / n_bins
    return (np.arange(n_bins) + 0.5) * dc, dc


def interaction_matrix(centres: np.ndarray, delta: np.ndarray | float) -> np.ndarray:
    """P(c_j, c_l; Delta) = 1{|c_j - c_l| <= Delta} on the feature grid; (..., n, n) float."""
    delta = np.asarray(delta, dtype=float)[..., None, None]
    dist = np.abs(centres[:, None] - centres[None, :])
    return (dist[None] <= delta + 1e-12).astype(np.float64).reshape(delta.shape[:-2] + dist.shape)


def conserved_quantities(
    x: np.ndarray, c: np.ndarray, delta: float, n_bins: int
) -> dict[str, np.ndarray]:
    """Histogram estimates of rho, J = rho m, M and B from particles (grey).

    Parameters
    ----------
    x : ndarray (N, 2)
        Positions in Omega.
    c : ndarray (N,) or (N, 1)
        Features in [0, 1].
    delta : float
        Confidence threshold Delta of P.
    n_bins : int
        Number of feature cells N_c.

    Returns
    -------
    dict with ``centres`` (n_bins,), ``rho`` (density, integrates to 1), ``J`` (n_bins, 2),
    ``M`` (n_bins, 2) and ``B`` (n_bins,).
    """
    c = np.asarray(c, dtype=float).reshape(-1)
    n = c.size
    centres, dc = feature_bins(n_bins)
    j = np.clip((c / dc).astype(np.int64), 0, n_bins - 1)
    rho = np.bincount(j, minlength=n_bins) / (n * dc)
    J = np.stack([np.bincount(j, weights=x[:, k], minlength=n_bins) for k in (0, 1)], 1) / (n * dc)
    P = interaction_matrix(centres, delta)
    return {"centres": centres, "rho": rho, "J": J, "M": P @ J * dc, "B": P @ rho * dc}


def beta_parameters(
    B: np.ndarray, M: np.ndarray, sigma: float | np.ndarray, Dc: float | np.ndarray = 1.0,
    extent: float | np.ndarray = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """alpha_k, beta_k of the quasi-equilibrium (28); arrays of M's shape (..., 2).

    ``extent`` = (a_1, a_2), the half-sides of Omega: the law is that of (1 + x_k / a_k) / 2.
    """
    s2 = 2.0 * np.asarray(sigma, dtype=float) ** 2 * np.asarray(Dc, dtype=float) ** 2
    B = np.asarray(B, dtype=float)[..., None]
    s2 = np.asarray(s2)[..., None] if np.ndim(s2) else s2
    M = np.asarray(M, dtype=float) / np.asarray(extent, dtype=float)
    return (B + M) / s2, (B - M) / s2


def quasi_equilibrium_marginal(
    xk: np.ndarray, alpha: float, beta: float
) -> np.ndarray:
    """Density on [-1, 1] of x_k with (1 + x_k)/2 ~ Beta(alpha, beta) (the factor of (28))."""
    from scipy import stats

    return stats.beta.pdf((1.0 + np.asarray(xk, dtype=float)) / 2.0, alpha, beta) / 2.0


def quasi_equilibrium_moments(
    B: np.ndarray, M: np.ndarray, sigma: float, Dc: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean M/B and variance (1 - mu^2) s / (s + B), s = sigma^2 D_c^2, of each axis."""
    mu = M / np.asarray(B, dtype=float)[..., None]
    s = sigma**2 * Dc**2
    return mu, (1.0 - mu**2) * s / (s + np.asarray(B, dtype=float)[..., None])
