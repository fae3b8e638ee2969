"""Synthetic test images with exact ground truth (seed 000, Tests 3 and 4).

Every image here is piecewise constant and is *generated from* its mask, so the mask is the
exact answer a segmentation method should return on the clean image: ``image == shape_value``
exactly where ``mask`` is True.

Geometry
--------
Pixel (row ``p``, column ``q``) of an ``n1 x n2`` image has the centre

.. math:: x = -1 + (2q + 1)/n_2, \\qquad y = 1 - (2p + 1)/n_1,

i.e. the image covers the square :math:`\\Omega = [-1, 1]^2` with ``y`` pointing up (the map of
seed 000). A pixel belongs to a shape when its centre does. The shapes (all
centred; the seed's figures show centred shapes but their sizes were lost, so these are our
choices, each covering a sizeable but not dominant part of the image, 16–29 %):

=========  ===============================================  ============================
name       set                                              area fraction of the image
=========  ===============================================  ============================
square     :math:`|x| \\le 0.5,\\ |y| \\le 0.5`               0.25
circle     :math:`x^2 + y^2 \\le 0.55^2`                      :math:`\\pi 0.55^2/4 \\approx 0.238`
triangle   :math:`-0.5 \\le y \\le 0.6,\\ |x| \\le 0.6 (0.6 - y)/1.1`  0.165 (isosceles, apex up)
rhombus    :math:`|x|/0.45 + |y|/0.7 \\le 1`                  0.1575
ellipse    :math:`(x/0.7)^2 + (y/0.4)^2 \\le 1`               :math:`0.28\\pi/4 \\approx 0.220`
=========  ===============================================  ============================

The ellipse is the fifth shape (the heat benchmark's "five shapes"); it is elongated so that a
method with an isotropic bias is seen to fail on it. Non-square images stretch the shapes with
the image (the geometry lives on :math:`[-1, 1]^2`).

Choices made where the paper left room: base grey levels are
shape 1 and background 0; image sizes are free (the paper's size was
lost; 128 is the default); images are float32 unless asked otherwise.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from .._validate import as_rng, look_up_option

__all__ = [
    "SHAPES",
    "shape_mask",
    "shape_image",
    "three_level_image",
    "ellipsoids_volume",
]

SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "rhombus", "ellipse")


def _check_size(
    size: Any, *, ndim: int = 2, min_size: int = 4, name: str = "size"
) -> tuple[int, ...]:
    if isinstance(size, (numbers.Integral, np.integer)) and not isinstance(size, bool):
        dims = (int(size),) * ndim
    else:
        try:
            dims = tuple(size)
        except TypeError:
            raise TypeError(
                f"{name} must be an int or a tuple of {ndim} ints; got {size!r}."
            ) from None
        if len(dims) != ndim or not all(
            isinstance(d, (numbers.Integral, np.integer)) and not isinstance(d, bool) for d in dims
        ):
            raise TypeError(f"{name} must be an int or a tuple of {ndim} ints; got {size!r}.")
        dims = tuple(int(d) for d in dims)
    if min(dims) < min_size:
        raise ValueError(
            f"{name} {dims} is too small; every axis needs at least {min_size} pixels "
            "for the shapes to be drawn."
        )
    return dims


def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates on [-1, 1]^2 (x right, y up), broadcastable (rows, cols)."""
    x = -1.0 + (2.0 * np.arange(cols) + 1.0) / cols
    y = 1.0 - (2.0 * np.arange(rows) + 1.0) / rows
    return x[None, :], y[:, None]


def shape_mask(shape: str, size: int | tuple[int, int] = 128) -> np.ndarray:
    """Return the exact boolean mask of one of :data:`SHAPES`.

    Parameters
    ----------
    shape : {"square", "circle", "triangle", "rhombus", "ellipse"}
        Which shape (see the module docstring for the sets).
    size : int or (rows, cols), default 128
        Image size; at least 4 pixels per axis.

    Returns
    -------
    mask : numpy.ndarray of bool, shape (rows, cols)
        True where the pixel centre lies in the shape.

    Examples
    --------
    >>> m = shape_mask("square", 8)
    >>> int(m.sum())
    16
    """
    shape = look_up_option(shape, SHAPES, what="shape")
    rows, cols = _check_size(size)
    x, y = _grid(rows, cols)
    if shape == "square":
        m = (np.abs(x) <= 0.5) & (np.abs(y) <= 0.5)
    elif shape == "circle":
        m = x * x + y * y <= 0.55**2
    elif shape == "triangle":
        m = (y >= -0.5) & (y <= 0.6) & (np.abs(x) <= 0.6 * (0.6 - y) / 1.1)
    elif shape == "rhombus":
        m = np.abs(x) / 0.45 + np.abs(y) / 0.7 <= 1.0
    else:  # ellipse
        m = (x / 0.7) ** 2 + (y / 0.4) ** 2 <= 1.0
    return np.broadcast_to(m, (rows, cols)).copy()


def _channel_values(value: Any, channels: int | None, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if channels is None:
        if arr.ndim != 0:
            raise ValueError(
                f"{name} must be a single number for a grey image; got {value!r}. "
                "Pass channels=3 for per-channel (RGB) values."
            )
    elif arr.ndim == 0:
        arr = np.full(channels, float(arr))
    elif arr.shape != (channels,):
        raise ValueError(
            f"{name} must be a number or a sequence of {channels} numbers (one per channel); "
            f"got {value!r}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    return arr


def _paint(mask_or_labels: np.ndarray, values: Sequence[np.ndarray], channels: int | None,
           dtype: Any) -> np.ndarray:
    """Image whose pixels with label k get values[k] (per channel when channels is set)."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"dtype must be a floating type (float32, float64); got {dtype}. "
            "Integer images would silently quantise the grey levels."
        )
    table = np.stack([np.atleast_1d(v) for v in values])  # (K, C or 1)
    img = table[mask_or_labels.astype(np.intp)]  # (..., C or 1)
    if channels is None:
        img = img[..., 0]
    return img.astype(dtype)


def shape_image(
    shape: str,
    size: int | tuple[int, int] = 128,
    *,
    shape_value: float | Sequence[float] = 1.0,
    background_value: float | Sequence[float] = 0.0,
    channels: int | None = None,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Clean piecewise-constant image of a centred shape, with its exact mask.

    The image is :math:`I = v_S\\,\\chi_S + v_B\\,\\chi_B` (seed 000, the clean part of eq. 44),
    per channel for colour images (eq. 58).

    Parameters
    ----------
    shape : {"square", "circle", "triangle", "rhombus", "ellipse"}
        The shape (:data:`SHAPES`).
    size : int or (rows, cols), default 128
        Image size; at least 4 pixels per axis.
    shape_value, background_value : float or sequence of float
        Grey level inside / outside the shape (defaults 1 and 0). With ``channels`` set, a
        number applies to every channel and a sequence gives one value per channel. Any finite
        value is allowed; noise models assume [0, 1].
    channels : int or None, default None
        None gives a grey (rows, cols) image; an int C >= 1 gives (rows, cols, C)
        (channels last, ``channel_axis=-1``).
    dtype : floating dtype, default float32
        Output dtype of the image.

    Returns
    -------
    image : numpy.ndarray, shape (rows, cols) or (rows, cols, C), dtype ``dtype``
    mask : numpy.ndarray of bool, shape (rows, cols)
        Exactly the pixels that carry ``shape_value``.

    Examples
    --------
    >>> img, mask = shape_image("circle", 64, channels=3, shape_value=(0.9, 0.2, 0.1))
    >>> img.shape, mask.dtype.name
    ((64, 64, 3), 'bool')
    >>> bool(np.all(img[mask] == np.float32([0.9, 0.2, 0.1])))
    True
    """
    if channels is not None:
        if isinstance(channels, bool) or not isinstance(channels, (numbers.Integral, np.integer)) \
                or channels < 1:
            raise ValueError(f"channels must be None (grey) or a positive int; got {channels!r}.")
        channels = int(channels)
    vs = _channel_values(shape_value, channels, "shape_value")
    vb = _channel_values(background_value, channels, "background_value")
    mask = shape_mask(shape, size)
    return _paint(mask, [vb, vs], channels, dtype), mask


def three_level_image(
    size: int | tuple[int, int] = 96,
    *,
    values: Sequence[float] = (0.0, 0.5, 1.0),
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Grey image with K = 3 classes and its exact label image.

    Background (label 0, ``values[0]``); a square on the left half (label 1, ``values[1]``):
    :math:`|x + 0.5| \\le 0.3,\\ |y| \\le 0.5`; a disk on the right half (label 2,
    ``values[2]``): :math:`(x - 0.5)^2 + y^2 \\le 0.35^2`. The two objects do not touch, so the
    labels are exact and with increasing ``values`` the label equals the intensity rank.

    Parameters
    ----------
    size : int or (rows, cols), default 96
        Image size; at least 8 pixels per axis.
    values : sequence of 3 floats, default (0, 0.5, 1)
        Grey levels of labels 0, 1, 2. They must be distinct.
    dtype : floating dtype, default float32

    Returns
    -------
    image : numpy.ndarray, shape (rows, cols), dtype ``dtype``
    labels : numpy.ndarray of uint8, shape (rows, cols), values in {0, 1, 2}

    Examples
    --------
    >>> img, lab = three_level_image(32)
    >>> sorted(np.unique(lab).tolist())
    [0, 1, 2]
    """
    rows, cols = _check_size(size, min_size=8)
    vals = np.asarray(values, dtype=np.float64)
    if vals.shape != (3,) or not np.all(np.isfinite(vals)) or len(set(vals.tolist())) != 3:
        raise ValueError(f"values must be 3 distinct finite grey levels; got {values!r}.")
    x, y = _grid(rows, cols)
    labels = np.zeros((rows, cols), dtype=np.uint8)
    labels[(np.abs(x + 0.5) <= 0.3) & (np.abs(y) <= 0.5)] = 1
    labels[(x - 0.5) ** 2 + y**2 <= 0.35**2] = 2
    return _paint(labels, [vals[0:1], vals[1:2], vals[2:3]], None, dtype), labels


def ellipsoids_volume(
    shape: tuple[int, int, int] = (32, 64, 64),
    *,
    n: int = 3,
    rng: None | int | np.random.Generator = None,
    foreground: float = 1.0,
    background: float = 0.0,
    instance: bool = False,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """3D volume of ``n`` random, non-touching ellipsoids with exact labels.

    Coordinates are voxel centres mapped to :math:`[-1, 1]^3` per axis (plane, row, col). Each
    ellipsoid has semi-axes drawn uniformly in [0.15, 0.3] (in those units) and a centre drawn
    uniformly so that it lies inside the volume; centres are redrawn (rejection sampling, at
    most 1000 tries) until the bounding spheres of all ellipsoids are at least 0.05 apart, so
    the objects never touch and the labels are exact.

    Parameters
    ----------
    shape : (planes, rows, cols), default (32, 64, 64)
        Volume size; at least 16 voxels per axis (so that every ellipsoid, whose semi-axes are
        at least 0.15, contains voxel centres and every label is present).
    n : int, default 3
        Number of ellipsoids (1..8); more may not fit without touching.
    rng : None, int or numpy.random.Generator
        Seed for sizes and positions; the same seed gives the same volume.
    foreground, background : float
        Grey levels inside / outside the ellipsoids.
    instance : bool, default False
        False: binary labels (1 = any ellipsoid). True: ellipsoid k gets label k (1..n).
    dtype : floating dtype, default float32

    Returns
    -------
    volume : numpy.ndarray, shape ``shape``, dtype ``dtype``
    labels : numpy.ndarray of uint8, shape ``shape``

    Examples
    --------
    >>> vol, lab = ellipsoids_volume((16, 32, 32), n=2, rng=0, instance=True)
    >>> vol.shape, sorted(np.unique(lab).tolist())
    ((16, 32, 32), [0, 1, 2])
    """
    dims = _check_size(shape, ndim=3, min_size=16, name="shape")
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)) or not 1 <= n <= 8:
        raise ValueError(f"n must be an int in 1..8 (number of ellipsoids); got {n!r}.")
    gen = as_rng(rng)
    gap = 0.05
    for _ in range(1000):
        semi = gen.uniform(0.15, 0.3, size=(n, 3))
        radius = semi.max(axis=1)
        centre = gen.uniform(-1.0 + semi, 1.0 - semi)
        dist = np.linalg.norm(centre[:, None, :] - centre[None, :, :], axis=-1)
        need = radius[:, None] + radius[None, :] + gap
        np.fill_diagonal(dist, np.inf)
        if np.all(dist >= need):
            break
    else:  # pragma: no cover - 8 small ellipsoids always fit in practice
        raise RuntimeError(f"could not place {n} non-touching ellipsoids; lower n.")
    coords = [(-1.0 + (2.0 * np.arange(d) + 1.0) / d) for d in dims]
    z = coords[0][:, None, None]
    y = coords[1][None, :, None]
    x = coords[2][None, None, :]
    labels = np.zeros(dims, dtype=np.uint8)
    for k in range(n):  # loop over objects (n <= 8), vectorised over voxels
        inside = (
            ((z - centre[k, 0]) / semi[k, 0]) ** 2
            + ((y - centre[k, 1]) / semi[k, 1]) ** 2
            + ((x - centre[k, 2]) / semi[k, 2]) ** 2
        ) <= 1.0
        labels[inside] = k + 1 if instance else 1
    fg = _channel_values(foreground, None, "foreground")
    bg = _channel_values(background, None, "background")
    table = [bg[None], fg[None]] if not instance else [bg[None]] + [fg[None]] * n
    return _paint(labels, table, None, dtype), labels
