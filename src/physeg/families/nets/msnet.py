r"""MSNet: the Mumford–Shah model unrolled on a multigrid into a U-shaped network (2D and 3D).

Meng, Guo, Liu, Yang, "Interpretable Small Training Set Image Segmentation Network Originated
from Multi-Grid Variational Model", :arXiv:`2306.14097` (2023).

Model
-----
On features :math:`F = H(f)` (a head convolution of the image) the network minimises, by
alternating updates, the Mumford–Shah energy with a learnable regularity operator :math:`A`,
a threshold-dynamics length term and an entropy (the paper's eqs. (8), (6)-(7)):

.. math::

    E(v, u) = \sum_i \langle u_i, |v_i - F|^2 + \mu |A v_i|^2 \rangle
              + \lambda \sum_i \langle u_i, k_\sigma * (1 - u_i) \rangle
              + \varepsilon \sum_i \langle u_i, \ln u_i \rangle, \qquad u \in U
              \;(\textstyle\sum_i u_i = 1,\ u_i \ge 0).

The v-update is a damped-Richardson relaxation of the Euler–Lagrange equation (10), unrolled
as (13); the u-update is the exact minimiser of the linearised energy on the simplex, a
softmax (12), unrolled as (14):

.. math::

    v &\leftarrow v + \tau \odot \big[u \odot (F - v) - A^T(u \odot A v)\big],\\
    u &\leftarrow \operatorname{softmax}_c\big(-\alpha (v - F)^2 - \alpha' (A v)^2
                 + K_\theta * u + \beta\big),

with :math:`A` = conv → ReLU → conv, :math:`A^T` its weight-tied adjoint (transposed convs in
reverse order), and :math:`K_\theta` a depthwise convolution initialised to the Gaussian
:math:`k_\sigma` (the linearised threshold-dynamics term :math:`-\lambda/\varepsilon\,
k_\sigma*(1-2u)` absorbed into :math:`K_\theta` and the bias :math:`\beta`). These relaxations
are the smoother of a FAS multigrid V-cycle with J levels: restriction by stride-2
convolutions (``v̂ = R_v v``, FAS data ``F^{ℓ+1} = R_F(F - v) + v̂``), prolongation of the
coarse *error* by bilinear/trilinear interpolation (``v ← v + P(v^{ℓ+1} − v̂)``), then an
output head (conv 3 → ReLU → conv 1) and a softmax over the K classes.

The non-learned single-grid solver (Algorithm 1 with :math:`A = \nabla`, a fixed Gaussian
and fixed λ, ε, τ) is :func:`ms_threshold_dynamics`; its energy decreases monotonically
(Proposition 1), which the tests check.

Choices made where the paper left room (measurements, WBC recipe: ``docs/methods/nets.md``)
-------------------------------------------------------------------------------------------
* Phases are feature channels: u is a channel-wise softmax of the C features at each level
  (the memory-heavy alternative, one phase map per channel group, is not built).
* ``u_scale="1"``, ``tau_init=1``: the relaxation uses u itself (≤ 1), so the explicit step
  stays stable, :math:`\tau u (1 + \|A\|^2) < 2`, however peaked u becomes; ``u_scale="C"``
  (τ = 0.1) trained faster at first and then diverged in our WBC trials.
* FAS data in feature space, ``F^{ℓ+1} = R(F − v) + R v``, only: the operator variant needs a
  fixed right-hand side ``u ⊙ F``, but u changes at every relaxation.
* Elided numbers: head and A kernels 3, K_θ 5 px (Gaussian σ = 1 px), ν = 1 relaxation per
  level pre and post, J = 5, widths (32, 64, 128, 256, 512) (9.82 M parameters, RGB, 3
  classes); no normalisation layers (``norm="none"``, as the paper's conv-ReLU-conv).
* Inputs whose size is not a multiple of the stride product (2^(J−1) by default) are
  reflect-padded at the far end and the logits cropped back; 3D nets accept anisotropic
  strides such as ``"1,2,2;2;2;2"``.
* The (A v)² term of D_i(v) enters the u-update with its own weight α' (init 0.1), lagged (it
  reuses the relaxation's A v^t), which saves two convolutions per step.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._registry import Method, Param, register
from ._config import PREDICT_PARAMS, TRAIN_PARAMS

__all__ = ["build_msnet", "fit_msnet", "load_msnet", "ms_threshold_dynamics", "ms_energy",
           "softmax_u_update", "ARCH_PARAMS"]

ARCH_PARAMS: tuple[Param, ...] = (
    Param("widths", "str", "8,16,32,64,128",
          "feature channels per level (J = their count); wider = more capacity, slower "
          "(default: the shipped WBC recipe's)"),
    Param("relaxations", "int", 1, "FEM relaxations per level (pre and post); more = deeper",
          low=1, high=8),
    Param("head_kernel", "int", 3, "head convolution kernel size", low=1, high=9),
    Param("kernel", "int", 3, "kernel size of A's convolutions", low=1, high=9),
    Param("td_kernel", "int", 5, "kernel of the threshold-dynamics convolution K_theta",
          low=1, high=11),
    Param("strides", "str", None, "per-level strides, e.g. '1,2,2;2;2' (default 2 everywhere)"),
    Param("tied_adjoint", "bool", True, "A^T reuses A's weights (exact adjoint when linear)"),
    Param("u_scale", "str", "1", "scale of u in the v-relaxation", choices=("C", "1")),
    Param("tau_init", "float", 1.0, "initial relaxation step tau", low=0.0, high=10.0),
    Param("norm", "str", "none", "normalisation inside A", choices=("none", "batch", "group")),
)


def build_msnet(in_channels: int = 1, num_classes: int = 2, *, ndim: int = 2, **config: Any):
    """Build an MSNet torch module (needs torch).

    Parameters
    ----------
    in_channels : int
        Image channels (1 grey, 3 RGB).
    num_classes : int
        K output classes (≥ 2).
    ndim : {2, 3}
        Spatial dimension: 2 uses Conv2d/bilinear, 3 Conv3d/trilinear.
    **config
        ``widths`` (sequence, J = its length; default (32, 64, 128, 256, 512)),
        ``relaxations`` (ν ≥ 1), ``head_kernel``, ``kernel``, ``td_kernel``, ``strides``
        (J−1 entries, each an int or per-axis tuple of 1/2), ``tied_adjoint``, ``u_scale``
        ("1" default, or "C"), ``tau_init`` (default 1.0), ``norm`` ("none", "batch", "group"),
        ``regularity_in_u`` (bool).

    Returns
    -------
    torch.nn.Module
        ``forward(x)`` maps (B, in_channels, *spatial) to logits (B, K, *spatial).
    """
    from ._msnet_torch import MSNet

    return MSNet(in_channels, num_classes, ndim=ndim, **config)


def fit_msnet(images: Sequence[Any], masks: Sequence[Any] | None, *, progress: Any = None,
              **params: Any):
    """Train MSNet on labelled images (``physeg.fit("msnet", images, masks, **params)``).

    Parameters are the architecture parameters (:data:`ARCH_PARAMS`) and the trainer's
    (:data:`physeg.families.nets._config.TRAIN_PARAMS`: iterations, batch_size, lr, …, rng,
    channel_axis). Returns a :class:`physeg.families.nets._model.NetworkModel`.
    """
    from ._config import arch_config, progress_callback, split_fit_params
    from .train import fit_network

    report, params = progress_callback(progress, params)
    arch, train, data = split_fit_params(params, [p.name for p in ARCH_PARAMS])
    defaults = {p.name: p.default for p in ARCH_PARAMS}
    return fit_network("msnet", "msnet", images, masks, report=report,
                       arch_config=arch_config({**defaults, **arch}), **data, **train)


def load_msnet(data: dict[str, Any], path: Any = None):
    """Rebuild a trained MSNet from a checkpoint dict (used by ``physeg.load``)."""
    from ._model import load_network

    return load_network(data, path)


# ----------------------------------------------------------------------------------------------
# the non-learned solver (Algorithm 1 with A = grad): numpy, periodic boundary


def _grad(v: np.ndarray, ndim: int) -> np.ndarray:
    """Forward differences (periodic) of v (..., *spatial) → (ndim, ..., *spatial)."""
    return np.stack([np.roll(v, -1, axis=a) - v for a in range(-ndim, 0)])


def _grad_adj(g: np.ndarray, ndim: int) -> np.ndarray:
    """Exact adjoint of :func:`_grad` (= −divergence with backward differences)."""
    return sum(np.roll(g[i], 1, axis=a) - g[i] for i, a in enumerate(range(-ndim, 0)))


def _heat(u: np.ndarray, sigma: float, ndim: int) -> np.ndarray:
    """Periodic Gaussian convolution k_σ * u through the FFT (symbol exp(−σ²|ξ|²/2) > 0)."""
    spatial = u.shape[-ndim:]
    axes = tuple(range(-ndim, 0))
    freqs = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n) for n in spatial], indexing="ij",
                        sparse=True)
    sym = np.exp(-0.5 * sigma**2 * sum(f**2 for f in freqs))
    return np.real(np.fft.ifftn(np.fft.fftn(u, axes=axes) * sym, axes=axes))


def softmax_u_update(c: np.ndarray, eps: float) -> np.ndarray:
    r"""Minimiser on the simplex of the linear cost plus entropy (eq. (12)).

    Minimises :math:`\sum_i\langle u_i, c_i\rangle + \varepsilon\sum_i\langle u_i,
    \ln u_i\rangle` subject to :math:`\sum_i u_i = 1, u_i \ge 0`.

    Eq. (12): :math:`u_i = e^{-c_i/\varepsilon} / \sum_j e^{-c_j/\varepsilon}` (phases on
    axis 0), computed stably by subtracting the minimum cost.
    """
    z = -(c - c.min(axis=0, keepdims=True)) / eps
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)


def ms_energy(F: np.ndarray, v: np.ndarray, u: np.ndarray, *, mu: float, lam: float,
              eps: float, sigma: float) -> float:
    r"""The relaxed Mumford–Shah energy with threshold-dynamics length and entropy.

    :math:`E = \sum_i\langle u_i, |v_i - F|^2 + \mu|\nabla v_i|^2\rangle
    + \lambda\sum_i\langle u_i, k_\sigma*(1-u_i)\rangle
    + \varepsilon\sum_i\langle u_i,\ln u_i\rangle`
    with ``F`` (c, *spatial), ``v`` (I, c, *spatial), ``u`` (I, *spatial).
    """
    ndim = u.ndim - 1
    D = ((v - F[None]) ** 2).sum(axis=1) + mu * (_grad(v, ndim) ** 2).sum(axis=(0, 2))
    td = (u * _heat(1.0 - u, sigma, ndim)).sum()
    ent = (u * np.log(np.maximum(u, 1e-300))).sum()
    return float((u * D).sum() + lam * td + eps * ent)


def ms_threshold_dynamics(
    image: Any,
    n_phases: int = 2,
    *,
    channel_axis: int | None = None,
    mu: float = 1.0,
    lam: float = 1.0,
    eps: float = 0.05,
    sigma: float = 1.0,
    tau: float | None = None,
    iterations: int = 50,
    inner: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Algorithm 1 of the MSNet paper (single-grid, non-learned) with :math:`A = \nabla`.

    Alternates ``inner`` explicit relaxation steps (11) of the v-subproblem,
    :math:`v_i \leftarrow v_i - \tau[u_i(v_i - F) + \mu\nabla^T(u_i\nabla v_i)]`, with the
    exact softmax u-update (12) of the energy linearised at :math:`u^t`,
    :math:`u_i = \operatorname{softmax}_i(-[|v_i-F|^2 + \mu|\nabla v_i|^2 + \lambda
    k_\sigma*(1-2u_i^t)]/\varepsilon)`. Periodic boundaries (FFT Gaussian, whose symbol is
    positive, so the length term is concave and its linearisation a majoriser).

    Parameters
    ----------
    image : array_like
        2D/3D image, grey or with ``channel_axis``; mapped to [0, 1] by its dtype range.
    n_phases : int, default 2
        Number of phases I (2..16).
    mu : float, default 1.0
        Smoothness weight of v inside each phase (≥ 0); larger = smoother v.
    lam : float, default 1.0
        Boundary-length weight λ (≥ 0); larger = shorter, smoother boundaries.
    eps : float, default 0.05
        Entropy weight ε (> 0); smaller = harder (more binary) u.
    sigma : float, default 1.0
        Gaussian kernel width in pixels.
    tau : float, optional
        Relaxation step; default ``1 / (1 + 4 d μ)``, below the bound ``2 / (1 + 4 d μ)``
        that guarantees a decrease of the v-energy (so that Proposition 1 holds).
    iterations, inner : int
        Outer iterations T and relaxations L per iteration.

    Returns
    -------
    labels : ndarray of uint8
        argmax of u (phases ordered by the initial intensity quantiles).
    u : ndarray (I, *spatial)
        Soft indicators.
    energy : ndarray (iterations + 1,)
        E(v^t, u^t), t = 0..T (non-increasing).

    Examples
    --------
    >>> img = np.zeros((16, 16)); img[4:12, 4:12] = 1.0
    >>> lab, u, e = ms_threshold_dynamics(img, 2, iterations=10)
    >>> int(lab[8, 8]), int(lab[0, 0]), bool(np.all(np.diff(e) <= 1e-9))
    (1, 0, True)
    """
    from ..._validate import check_image, to_float01

    arr = check_image(image, channel_axis=channel_axis)
    if not 2 <= int(n_phases) <= 16:
        raise ValueError(f"n_phases must be in 2..16; got {n_phases}.")
    if eps <= 0 or mu < 0 or lam < 0 or sigma <= 0:
        raise ValueError(
            f"need eps > 0, mu >= 0, lam >= 0, sigma > 0; got eps={eps}, mu={mu}, "
            f"lam={lam}, sigma={sigma}."
        )
    f = to_float01(arr).astype(np.float64)
    F = f[None] if channel_axis is None else np.moveaxis(f, -1, 0)
    ndim = F.ndim - 1
    if tau is None:
        tau = 1.0 / (1.0 + 4.0 * ndim * mu)
    n_ph = int(n_phases)
    grey = F.mean(axis=0)
    centres = np.quantile(grey, (np.arange(n_ph) + 0.5) / n_ph)
    v = np.broadcast_to(centres.reshape((n_ph, 1) + (1,) * ndim), (n_ph,) + F.shape).copy()
    u = softmax_u_update((grey[None] - centres.reshape((n_ph,) + (1,) * ndim)) ** 2, eps)
    energies = [ms_energy(F, v, u, mu=mu, lam=lam, eps=eps, sigma=sigma)]
    for _ in range(int(iterations)):
        for _ in range(int(inner)):
            gv = _grad(v, ndim)  # (d, I, c, *spatial)
            r = u[:, None] * (v - F[None]) + mu * _grad_adj(u[None, :, None] * gv, ndim)
            v = v - tau * r
        D = ((v - F[None]) ** 2).sum(axis=1) + mu * (_grad(v, ndim) ** 2).sum(axis=(0, 2))
        p = _heat(1.0 - 2.0 * u, sigma, ndim)
        u = softmax_u_update(D + lam * p, eps)
        energies.append(ms_energy(F, v, u, mu=mu, lam=lam, eps=eps, sigma=sigma))
    return u.argmax(axis=0).astype(np.uint8), u, np.asarray(energies)


register(
    Method(
        name="msnet",
        func=None,
        params=PREDICT_PARAMS,
        summary="a network trained on a few labelled images (MSNet: the Mumford-Shah model "
                "unrolled on a multigrid); train it with physeg fit first",
        fit_func=fit_msnet,
        load_func=load_msnet,
        supports_3d=True,
        supports_multichannel=True,
        needs_labels=True,
        requires=("torch",),
        fit_params=ARCH_PARAMS + TRAIN_PARAMS,
    )
)
