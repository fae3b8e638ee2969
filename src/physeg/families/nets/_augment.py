r"""Training batches: a fixed-size patch per drawn image, with random augmentation (numpy).

Each of ``batch_size`` images, drawn with replacement, goes through

1. ``zoom > 0``: a random isotropic rescaling by :math:`f = e^{U(-\ln(1+z), \ln(1+z))}`
   (image linear, mask nearest) *before* the crop, since cell sizes vary by type;
2. a random crop where the image is larger than the patch, zero padding (the training mean)
   where it is smaller; padded pixels get ``valid = 0`` and stay out of the loss;
3. with ``augment``: a flip along each spatial axis (p = 1/2 each), a k·90° turn in the
   (row, col) plane when the patch is square there, :math:`x \leftarrow a x + b` per channel with
   :math:`a \in [1-s, 1+s]`, :math:`b \in [-s, s]` (standardised units, ``s = intensity``), and
   (``colour > 0``) a channel mixing :math:`x \leftarrow M x`, :math:`M = I + c\,N(0, 1)`, a
   cheap linear model of stain changes;
4. ``rotate`` / ``elastic``: resampling through a rotation by a uniform angle and a smooth
   elastic displacement (Gaussian-filtered noise, ~8 px correlation, as in the U-Net paper);
   pixels that come from outside the patch get ``valid = 0``.

The draws are made in this order by one numpy generator, and options at 0 draw nothing, so a
run with an option off reproduces a run made before the option existed.
Loops run over batch items only; the pixel work is vectorised.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["patch_shape", "random_cut", "random_zoom", "random_flips_and_intensity",
           "random_warp", "draw_batch"]


def patch_shape(shapes: Sequence[tuple[int, ...]], divisor: Sequence[int], ndim: int,
                patch: int | None) -> tuple[int, ...]:
    """Training patch: ``patch`` per axis, or the largest image size capped at 256 (2D) /
    96 (3D) per axis, either rounded up to a multiple of the network's ``divisor``."""
    cap = 256 if ndim == 2 else 96
    if patch is not None:
        return tuple(int(-(-patch // d) * d) for d in divisor)
    big = np.max(np.asarray(shapes), axis=0)
    return tuple(int(-(-min(int(b), cap) // d) * d) for b, d in zip(big, divisor, strict=True))


def random_cut(x: np.ndarray, y: np.ndarray, patch: tuple[int, ...], gen: np.random.Generator):
    """Random crop / zero pad of one (C, *spatial) image and its mask to ``patch``.

    Returns the image, the mask and the valid map (1 inside the image, 0 on padding).
    """
    spatial = x.shape[1:]
    xo = np.zeros((x.shape[0],) + patch, np.float32)
    yo = np.zeros(patch, np.int64)
    vo = np.zeros(patch, np.float32)
    src, dst = [], []
    for n, p in zip(spatial, patch, strict=True):
        if n >= p:
            s = int(gen.integers(0, n - p + 1))
            src.append(slice(s, s + p))
            dst.append(slice(0, p))
        else:
            o = int(gen.integers(0, p - n + 1))
            src.append(slice(0, n))
            dst.append(slice(o, o + n))
    xo[(slice(None),) + tuple(dst)] = x[(slice(None),) + tuple(src)]
    yo[tuple(dst)] = y[tuple(src)]
    vo[tuple(dst)] = 1.0
    return xo, yo, vo


def random_zoom(x: np.ndarray, y: np.ndarray, gen: np.random.Generator, zoom: float):
    """Random isotropic rescaling of one (C, *spatial) image (linear) and its mask (nearest)."""
    from scipy import ndimage as ndi

    f = float(np.exp(gen.uniform(-np.log1p(zoom), np.log1p(zoom))))
    shape = tuple(max(1, int(round(n * f))) for n in y.shape)
    fac = [m / n for m, n in zip(shape, y.shape, strict=True)]
    xz = np.stack([ndi.zoom(c, fac, order=1, mode="nearest", grid_mode=True) for c in x])
    yz = ndi.zoom(y, fac, order=0, mode="nearest", grid_mode=True)
    return xz.astype(np.float32), yz.astype(y.dtype)


def random_flips_and_intensity(x, y, v, gen: np.random.Generator, intensity: float,
                               colour: float = 0.0):
    """Flips on every spatial axis, k·90° turn in the last two axes, a x + b per channel,
    then (``colour > 0``) a random channel mixing ``x <- M x`` with ``M = I + colour * N``."""
    ndim = y.ndim
    for ax in range(ndim):
        if gen.random() < 0.5:
            x, y, v = np.flip(x, ax + 1), np.flip(y, ax), np.flip(v, ax)
    if y.shape[-1] == y.shape[-2]:
        k = int(gen.integers(0, 4))
        x = np.rot90(x, k, axes=(-2, -1))
        y = np.rot90(y, k, axes=(-2, -1))
        v = np.rot90(v, k, axes=(-2, -1))
    if intensity > 0:
        c = x.shape[0]
        a = gen.uniform(1 - intensity, 1 + intensity, size=(c,) + (1,) * ndim)
        b = gen.uniform(-intensity, intensity, size=(c,) + (1,) * ndim)
        x = (a * x + b).astype(np.float32)
    if colour > 0 and x.shape[0] > 1:
        c = x.shape[0]
        mix = np.eye(c) + colour * gen.standard_normal((c, c))
        x = np.tensordot(mix, x, axes=(1, 0)).astype(np.float32)
    return np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(v)


def random_warp(x, y, v, gen: np.random.Generator, rotate: bool, elastic: float,
                smooth: float = 8.0):
    """Resample a (C, *spatial) patch, its mask and valid map through one random map.

    The map is a rotation by a uniform angle about the patch centre in the last two axes
    (``rotate``) composed with a displacement field ``d = elastic * g / std(g)``, ``g`` white
    noise filtered by a Gaussian of ``smooth`` px per axis. Image: linear interpolation,
    zero (= the training mean) outside; mask and valid map: nearest, and pixels mapped from
    outside the patch get ``valid = 0``, so they do not enter the loss.
    """
    from scipy import ndimage as ndi

    shape = y.shape
    ndim = y.ndim
    grid = np.indices(shape, dtype=np.float64)
    coords = grid.copy()
    if rotate and ndim >= 2:
        theta = gen.uniform(0.0, 2.0 * np.pi)
        c, s = np.cos(theta), np.sin(theta)
        r0, c0 = (shape[-2] - 1) / 2.0, (shape[-1] - 1) / 2.0
        dr, dc = grid[-2] - r0, grid[-1] - c0
        coords[-2] = r0 + c * dr - s * dc
        coords[-1] = c0 + s * dr + c * dc
    if elastic > 0:
        for ax in range(ndim):
            g = ndi.gaussian_filter(gen.standard_normal(shape), smooth, mode="wrap")
            coords[ax] += elastic * g / max(float(g.std()), 1e-12)
    xw = np.stack([ndi.map_coordinates(ch, coords, order=1, mode="constant", cval=0.0)
                   for ch in x]).astype(np.float32)
    yw = ndi.map_coordinates(y, coords, order=0, mode="constant", cval=0).astype(y.dtype)
    vw = ndi.map_coordinates(v.astype(np.float32), coords, order=0, mode="constant",
                             cval=0.0).astype(v.dtype)
    return xw, yw, vw


def draw_batch(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], patch: tuple[int, ...],
               cfg: Any, gen: np.random.Generator):
    """One mini-batch: (images (B, C, *patch), masks (B, *patch), valid maps (B, *patch)).

    ``cfg`` is the :class:`~physeg.families.nets._config.TrainConfig` (batch size and the
    augmentation options).
    """
    idx = gen.integers(0, len(xs), size=cfg.batch_size)
    bx, by, bv = [], [], []
    for i in idx:
        x, y = xs[i], ys[i]
        if cfg.augment and cfg.zoom > 0:
            x, y = random_zoom(x, y, gen, cfg.zoom)
        x, y, v = random_cut(x, y, patch, gen)
        if cfg.augment:
            x, y, v = random_flips_and_intensity(x, y, v, gen, cfg.intensity, cfg.colour)
            if cfg.rotate or cfg.elastic > 0:
                x, y, v = random_warp(x, y, v, gen, cfg.rotate, cfg.elastic)
        bx.append(x)
        by.append(y)
        bv.append(v)
    return np.stack(bx), np.stack(by), np.stack(bv)
