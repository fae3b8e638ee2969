r"""Threshold dynamics with a mixture fidelity: two-phase region competition, no labels.

The piecewise-constant fidelity :math:`|f-c_k|^2` of :mod:`physeg.families.heat` is replaced by
the negative log-likelihood of the pixel's features under a Gaussian mixture per phase
(:mod:`physeg._regions`: CIELAB + texture), and the border prior adds its evidence:

.. math::

    E_\tau(u) = \sum_x \big[u\,(-\log p_1(f) - w(D-\tfrac12)) + (1-u)(-\log p_0(f))\big]
                + \frac{\lambda}{\sqrt\tau}\sum_k \int u_k\,(G_\tau*(1-u_k)),

with :math:`D` the contrast-weighted geodesic distance from the border. The mixtures are
re-estimated from the partition after every threshold-dynamics descent (region competition,
Zhu–Yuille 1996; GrabCut's loop, with the heat-kernel perimeter instead of a graph cut).

Choices, with the measurement behind them (``docs/methods/heat.md``):

- **Start from the data, not from the previous partition.** Threshold dynamics is a local
  descent: a background region whose colours the object's mixture also explains (sky inside a
  framing box) is never removed by moving fronts. Each outer round therefore restarts the
  descent from the pointwise decision ``log-odds > 0`` and lets the heat kernel smooth it;
  on 12 horses this raised Dice from 0.58 to 0.71.
- **The border prior** is what makes the result an object: it initialises the partition
  (Otsu threshold of D, no box) and, weighted by ``border_prior`` nats, breaks the ties the
  colours leave (0.71 -> 0.80 on the same horses).
- Binary only: K phases would need a prior for each; ``classes > 2`` uses the means.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..._regions import (
    MAX_FIT,
    PhaseMixtures,
    border_geodesic,
    prior_partition,
    region_features,
)
from ._mbo import heat_multiplier, heat_step

__all__ = ["run_mixtures"]

#: re-estimations of the mixtures (each followed by one threshold-dynamics descent)
OUTER_ROUNDS = 8


def run_mixtures(
    image: np.ndarray,
    channel_axis: int | None,
    spacing: Sequence[float],
    *,
    tau: float,
    lam: float,
    border_prior: float,
    components: int,
    texture: float,
    max_iter: int,
    rng: np.random.Generator,
    workers: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Two-phase mixture region competition; returns (phase-1 mask, info).

    Phase 1 starts as the object of the border prior, so it is usually the object; the
    caller applies the ``foreground`` rule. ``max_iter`` caps the threshold-dynamics steps
    of each descent; ``info`` has ``rounds``, ``iterations`` (all steps) and ``brightness``
    (mean lightness feature per phase, for the ``bright`` / ``dark`` rules).
    """
    feats = region_features(image, channel_axis, texture_sigma=texture)
    spatial = feats.shape[:-1]
    X = feats.reshape(-1, feats.shape[-1])
    if not np.ptp(X, axis=0).any():
        raise ValueError("the image is constant (every pixel has the same colour); there is no "
                         "object to find. Check that the right image or channel_axis was passed.")
    geodesic = border_geodesic(feats)
    prior = (border_prior * (geodesic - 0.5)).astype(np.float32)
    u = prior_partition(geodesic)
    mult = heat_multiplier(spatial, tau, spacing)
    beta = np.float32(2.0 * lam / math.sqrt(tau))
    mixtures = PhaseMixtures(components, MAX_FIT, rng)
    steps = rounds = 0
    while rounds < OUTER_ROUNDS:
        rounds += 1
        mixtures.fit(X, u.reshape(-1))
        odds = mixtures.log_odds(X).astype(np.float32).reshape(spatial) + prior
        v = odds > 0
        for _ in range(max_iter):
            psi = heat_step(v[None].astype(np.float32), mult, workers=workers)[0]
            new = odds + beta * (2.0 * psi - 1.0) > 0
            steps += 1
            if np.array_equal(new, v):
                break
            v = new
        if np.array_equal(v, u) or not v.any() or v.all():
            u = v
            break
        u = v
    lightness = feats[..., 0]
    brightness = np.array([lightness[~u].mean() if (~u).any() else 0.0,
                           lightness[u].mean() if u.any() else 0.0])
    return u, {"rounds": rounds, "iterations": steps, "brightness": brightness}
