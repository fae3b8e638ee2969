r"""Threshold dynamics with a mixture fidelity: two-phase region competition, no labels.

The piecewise-constant fidelity :math:`|f-c_k|^2` of :mod:`physeg.families.heat` is replaced by
the negative log-likelihood of the pixel's features under a Gaussian mixture per phase
(:mod:`physeg._regions`: CIELAB, optionally a texture channel), and the border prior adds
its evidence:

.. math::

    E_\tau(u) = \sum_x \big[u\,(-\log p_1(f) - w(D-\tfrac12)) + (1-u)(-\log p_0(f))\big]
                + \frac{\lambda}{\sqrt\tau}\sum_k \int u_k\,(G_\tau*(1-u_k)),

with :math:`D` the contrast-weighted geodesic distance from the 5 % border strip. The mixtures are
re-estimated from the partition after every threshold-dynamics descent (region competition,
Zhu–Yuille 1996; GrabCut's loop, with the heat-kernel perimeter instead of a graph cut).

Choices, with the measurement behind them (``docs/methods/heat.md``):

- **Start from the data, not from the previous partition.** Threshold dynamics is a local
  descent: a background region whose colours the object's mixture also explains (sky inside a
  framing box) is never removed by moving fronts. Each outer round therefore restarts the
  descent from the pointwise decision ``log-odds > 0`` and lets the heat kernel smooth it;
  on 12 horses this raised Dice from 0.58 to 0.71.
- **The border prior** is what makes the result an object: the first partition is the image
  minus a 5 % border strip (GrabCut's rectangle without the box, not clamped), and the
  geodesic term, weighted by ``border_prior`` nats, breaks the ties the colours leave.
- **Working resolution.** The rounds run on the image resampled to at most
  :data:`physeg._regions.WORK_PIXELS` pixels; the last round's score
  :math:`s = \text{odds} + \beta(2G_\tau*u - 1)` is interpolated back and thresholded at
  0, so the boundary is smooth at full resolution. ``tau`` and ``lam`` are therefore in
  working-resolution pixels on this path: the same regularisation, relative to the image, for
  a 150² photograph and a 600² dermoscopy image.
- **Small kernels by convolution** (:func:`._mbo.heat_smoother`). At the default τ = 1 the heat
  kernel is a Gaussian of standard deviation √2 px: a truncated (4σ) Gaussian filter with
  reflecting borders (the Neumann condition of the DCT) is 5x cheaper than the DCT and agrees
  with it to 3e-5; kernels narrower than √2 px (aliasing) or wider than 3 px use the DCT.
- Binary only: K phases would need a prior for each; ``classes > 2`` uses the means.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..._regions import (
    FLAT_PHASES,
    MAX_FIT,
    PhaseMixtures,
    initial_partition,
    object_prior,
    region_features,
    to_full_resolution,
    to_working_resolution,
)
from ._mbo import heat_smoother

__all__ = ["run_mixtures", "segment_colour_auto", "segment_mixtures", "working_features"]

#: re-estimations of the mixtures (each followed by one threshold-dynamics descent)
OUTER_ROUNDS = 6


def working_features(image: np.ndarray, channel_axis: int | None,
                     texture: float) -> np.ndarray:
    """The region features (:func:`physeg._regions.region_features`) of the image at the
    working resolution: what the rounds run on."""
    return region_features(to_working_resolution(image, channel_axis), channel_axis,
                           texture_sigma=texture)


def segment_colour_auto(arr, spacing, *, run_means, probe_pixels, tau, lam, border_prior,
                        components, texture, max_iter, gen, foreground, objects, workers,
                        return_energy):
    """``fidelity="auto"`` for a binary colour image: the mixtures, unless the image is many
    separate objects (stained nuclei), where the region means win (``docs/methods/heat.md``).

    "Many" is decided by the region means' partition of a probe (the image at up to
    ``probe_pixels``, :func:`physeg._regions.many_objects`), in two ways:

    - the means alone: 8 or more objects, the largest under 35 % of the foreground, or 12
      or more compact ones (:func:`physeg._regions.many_compact_objects`: nuclei beside a
      clump), or 8 or more objects whatever their sizes when the means' two phases explain
      at least :data:`FLAT_PHASES` (72 %) of the probe's CIELAB variance
      (:func:`physeg._regions.explained_variance`: flat stain on a flat background, where
      clumps hold 42 % of the foreground; photographs' partitions explain 26-68 %); the
      probe runs only where the cheap :func:`physeg._regions.may_be_many_objects` allows it;
    - both models: the mixtures' own label 1 is 4 or more objects, the largest under 80 %
      of it (a one-object prior that still returns several objects), and the means' probe
      has 4 or more, the largest under 50 %. On the colour tuning images (every third
      development image from the second and third on, seed 0) the mixtures returned at most
      3 objects on all 54 horses and 33 PH2 lesions, 4 on 3 of the 50 WBC images (the
      largest holding 93-97 %), and 4 or more on 16 of the 17 stained nuclei images, 14 of
      them with the largest under 80 %, including the 2 the first rule misses.

    ``run_means(image, full_resolution, return_energy)`` runs the means on ``image``.
    """
    from ..._regions import (explained_variance, many_compact_objects, many_objects,
                             may_be_many_objects, to_working_resolution)

    features = working_features(arr, -1, texture)

    def probe_means(energy):
        # the means on the image at up to probe_pixels (called at most once: the second
        # rule reuses the first's labels); resampled only when a rule needs it
        probe = to_working_resolution(arr, -1, probe_pixels)
        same = probe.shape == arr.shape
        return run_means(probe, same, energy and same), same, probe

    def flat_and_many(probe, labels):
        return (many_objects(labels, largest=1.0) and explained_variance(
            region_features(probe, -1, texture_sigma=0.0), labels) >= FLAT_PHASES)

    probe_labels = None
    if may_be_many_objects(features):
        result, same, probe = probe_means(return_energy)
        probe_labels = result[0] if return_energy and same else result
        if (many_objects(probe_labels) or many_compact_objects(probe_labels)
                or flat_and_many(probe, probe_labels)):
            return result if same else run_means(arr, True, return_energy)
    # the mixtures with every object kept: the second rule counts them
    mix_labels, info = segment_mixtures(
        arr, True, spacing, classes=2, init="auto", init_labels=None, tau=tau, lam=lam,
        border_prior=border_prior, components=components, texture=texture, max_iter=max_iter,
        gen=gen, foreground=foreground, objects="all", workers=workers, return_energy=True,
        features=features)
    if many_objects(mix_labels, count=4, largest=0.8):
        if probe_labels is None:
            probe_labels = probe_means(False)[0]
        if many_objects(probe_labels, count=4, largest=0.5):
            return run_means(arr, True, return_energy)
    return _finish(mix_labels, info, objects, return_energy)


def segment_mixtures(arr, has_channels, spacing, *, classes, init, init_labels, tau, lam,
                     border_prior, components, texture, max_iter, gen, foreground, objects,
                     workers, return_energy, features=None):
    """The ``fidelity="mixtures"`` path of :func:`physeg.families.heat.segment_heat`: checks
    its arguments, runs :func:`run_mixtures`, applies the foreground and objects rules."""
    from ..._foreground import foreground_order

    if classes != 2:
        raise ValueError(
            f"fidelity='mixtures' segments two phases (got classes={classes}); use "
            "fidelity='means' for K > 2 phases."
        )
    if init != "auto" or init_labels is not None:
        raise ValueError(
            "fidelity='mixtures' starts from the border prior; init and init_labels are for "
            "fidelity='means'. Drop them or pass fidelity='means'."
        )
    mask, info = run_mixtures(arr, -1 if has_channels else None, spacing, tau=tau, lam=lam,
                              border_prior=border_prior, components=components,
                              texture=texture, max_iter=max_iter, rng=gen, workers=workers,
                              features=features)
    phases = mask.astype(np.uint8)
    order = foreground_order(phases, info["brightness"], foreground)
    out = (phases if order[1] == 1 else 1 - phases).astype(np.uint8)
    return _finish(out, {**info, "init": "border prior"}, objects, return_energy)


def _finish(labels, info, objects, return_energy):
    """The ``objects`` rule on binary labels; with ``return_energy`` also the info, with the
    label counts of the result."""
    from ..._foreground import keep_one_object

    out = keep_one_object(labels) if objects == "one" else labels
    if not return_energy:
        return out
    return out, {**info, "counts": np.bincount(out.ravel(), minlength=2).astype(np.int64)}


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
    features: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Two-phase mixture region competition; returns (phase-1 mask, info).

    Phase 1 starts as the object of the border prior, so it is usually the object; the
    caller applies the ``foreground`` rule. ``max_iter`` caps the threshold-dynamics steps
    of each descent; ``info`` has ``rounds``, ``iterations`` (all steps) and ``brightness``
    (mean lightness feature per phase, for the ``bright`` / ``dark`` rules). ``features``:
    :func:`working_features` of the image when the caller has them already.
    """
    arr = np.asarray(image)
    full_shape = arr.shape[:-1] if channel_axis is not None else arr.shape
    feats = (working_features(arr, channel_axis, texture) if features is None
             else features)
    spatial = feats.shape[:-1]
    X = feats.reshape(-1, feats.shape[-1])
    u = initial_partition(feats)  # raises on a constant image
    prior = object_prior(feats, border_prior)
    beta = np.float32(2.0 * lam / math.sqrt(tau))
    mixtures = PhaseMixtures(components, MAX_FIT, rng)
    smooth = heat_smoother(spatial, tau, spacing, workers=workers)
    steps = rounds = 0
    score = np.zeros(spatial, np.float32)
    while rounds < OUTER_ROUNDS:
        rounds += 1
        mixtures.fit(X, u.reshape(-1))
        odds = mixtures.log_odds(X).reshape(spatial) + prior
        v = odds > 0
        for _ in range(max_iter):
            psi = smooth(v.astype(np.float32))
            score = odds + beta * (2.0 * psi - 1.0)
            new = score > 0
            steps += 1
            if np.array_equal(new, v):
                break
            v = new
        if np.array_equal(v, u) or not v.any() or v.all():
            u = v
            break
        u = v
    # phase brightness (for foreground="bright"/"dark") from the working resolution
    lightness = feats[..., 0]
    brightness = np.array([lightness[~u].mean() if (~u).any() else 0.0,
                           lightness[u].mean() if u.any() else 0.0])
    if spatial != full_shape:
        # the last descent's score, interpolated: a smooth boundary at full resolution
        u = to_full_resolution(score, full_shape) > 0
    return u, {"rounds": rounds, "iterations": steps, "brightness": brightness,
               "working_shape": spatial}
