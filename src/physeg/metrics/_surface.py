"""Surface distances and boundary F1 for :mod:`physeg.metrics` (which re-exports them).

Surfaces are one-voxel boundaries ``mask & ~binary_erosion(mask, cross)`` (face connectivity,
as medpy and MONAI; voxels on the image border count as surface because the erosion pads
with background). Distances come from ``scipy.ndimage.distance_transform_edt(~surface,
sampling=spacing)`` evaluated on the other surface.

Both masks are first cropped to the bounding box of ``a | b`` plus a one-voxel margin
(clipped at the image border). This is exact: the EDT value at a voxel is the Euclidean
distance to the nearest zero voxel, every zero voxel (surface voxel) of interest lies inside
the crop, and the margin (or the image border, which the erosion treats as background either
way) keeps the erosion identical to the uncropped one.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import numpy as np

from .._validate import look_up_option
from ._overlap import (
    _doc,
    binary_or_labels,
    check_average,
    check_pair,
    check_spacing,
    reduce_scores,
)


def crop_pair(a: np.ndarray, b: np.ndarray, margin: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Crop two boolean masks to the bounding box of ``a | b`` grown by ``margin`` voxels."""
    union = a | b
    slices = []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        occupied = np.flatnonzero(union.any(axis=other)) if other else np.flatnonzero(union)
        lo = max(int(occupied[0]) - margin, 0)
        hi = min(int(occupied[-1]) + margin + 1, union.shape[axis])
        slices.append(slice(lo, hi))
    sl = tuple(slices)
    return a[sl], b[sl]


def surface(mask: np.ndarray) -> np.ndarray:
    """One-voxel inner boundary of a boolean mask (face connectivity, border = background)."""
    from scipy import ndimage as ndi

    structure = ndi.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndi.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances ``d(a -> b)`` and ``d(b -> a)`` of two non-empty masks.

    Returns
    -------
    d_ab : ndarray of float64, shape (n_surface_voxels_of_a,)
        For each surface voxel of ``a``, the distance to the nearest surface voxel of ``b``.
    d_ba : ndarray of float64, shape (n_surface_voxels_of_b,)
        The same from ``b`` to ``a``.
    """
    from scipy import ndimage as ndi

    a, b = crop_pair(a, b, margin=1)
    sa = surface(a)
    sb = surface(b)
    dt_a = ndi.distance_transform_edt(~sa, sampling=spacing)
    dt_b = ndi.distance_transform_edt(~sb, sampling=spacing)
    return np.asarray(dt_b[sa], np.float64), np.asarray(dt_a[sb], np.float64)


# -------------------------------------------------------------------- surface-distance metrics


def _check_empty(empty: Any) -> Any:
    if isinstance(empty, str):
        return look_up_option(empty, ("nan", "inf"), what="empty policy")
    if isinstance(empty, numbers.Real) and not isinstance(empty, bool):
        return float(empty)
    raise TypeError(f'empty must be "nan", "inf" or a number; got {empty!r}.')


def _empty_value(both: bool, empty: Any) -> float:
    if empty == "nan":
        return float("nan")
    if both:
        return 0.0
    return float("inf") if empty == "inf" else float(empty)


def _per_label_surface(
    pred, gt, labels, average, include_background, spacing, empty,
    reducer: Callable[[np.ndarray, np.ndarray], float],
):
    p, g = check_pair(pred, gt)
    average = check_average(average)
    sp = check_spacing(spacing, p.ndim)
    empty = _check_empty(empty)
    labs, masks = binary_or_labels(p, g, labels, average, include_background)
    vals = np.empty(len(labs), np.float64)
    for k, lab in enumerate(labs):  # loop over labels only
        a, b = masks(lab)
        ea, eb = not a.any(), not b.any()
        if ea or eb:
            vals[k] = _empty_value(ea and eb, empty)
        else:
            vals[k] = reducer(*surface_distances(a, b, sp))
    return reduce_scores(vals, labs, average)


@_doc
def hausdorff(
    pred: Any,
    gt: Any,
    *,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
    empty: str | float = "nan",
) -> float | dict[int, float]:
    r"""Symmetric Hausdorff distance between the surfaces of ``pred`` and ``gt``.

    .. math::

        HD = \max\big(\max_{x\in\partial P} d(x, \partial G),\
                      \max_{y\in\partial G} d(y, \partial P)\big)

    Parameters
    ----------
    {common}
    {dist}

    Returns
    -------
    float or dict
        In ``spacing`` units (pixels by default); 0 = identical surfaces.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((8, 8), int); a[2:5, 2:5] = 1
    >>> hausdorff(a, np.roll(a, 3, axis=1))
    3.0
    """
    return _per_label_surface(
        pred, gt, labels, average, include_background, spacing, empty,
        lambda d1, d2: float(max(d1.max(), d2.max())),
    )


@_doc
def hausdorff95(
    pred: Any,
    gt: Any,
    *,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
    empty: str | float = "nan",
    method: str = "max",
) -> float | dict[int, float]:
    r"""95th-percentile Hausdorff distance (robust to a few outlier voxels).

    Parameters
    ----------
    {common}
    {dist}
    method : {"max", "pooled"}, default "max"
        ``"max"``: :math:`\max(P_{95}\,d(\partial P\to\partial G),\
        P_{95}\,d(\partial G\to\partial P))` (MONAI). ``"pooled"``: :math:`P_{95}` of both
        directed distance sets pooled together (medpy ``hd95``); it usually lies between the
        two directed percentiles, so it is usually the smaller number.

    Returns
    -------
    float or dict
        In ``spacing`` units; at most :func:`hausdorff`.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((8, 8), int); a[2:5, 2:5] = 1
    >>> hausdorff95(a, np.roll(a, 3, axis=1))
    3.0
    """
    method = look_up_option(method, ("max", "pooled"), what="hausdorff95 method")
    if method == "max":
        def red(d1: np.ndarray, d2: np.ndarray) -> float:
            return float(max(np.percentile(d1, 95), np.percentile(d2, 95)))
    else:
        def red(d1: np.ndarray, d2: np.ndarray) -> float:
            return float(np.percentile(np.concatenate([d1, d2]), 95))
    return _per_label_surface(pred, gt, labels, average, include_background, spacing, empty, red)


@_doc
def average_surface_distance(
    pred: Any,
    gt: Any,
    *,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
    empty: str | float = "nan",
    method: str = "pooled",
) -> float | dict[int, float]:
    r"""Average symmetric surface distance (ASSD).

    Parameters
    ----------
    {common}
    {dist}
    method : {"pooled", "mean"}, default "pooled"
        ``"pooled"``: :math:`\frac{\sum_{x\in\partial P} d(x,\partial G) + \sum_{y\in\partial G}
        d(y,\partial P)}{|\partial P| + |\partial G|}` (MONAI ``symmetric=True``, medpy 0.5.2);
        ``"mean"``: mean of the two directed mean distances.
        They differ only when the two surfaces have different voxel counts.

    Returns
    -------
    float or dict
        In ``spacing`` units.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((8, 8), int); a[2:5, 2:5] = 1
    >>> average_surface_distance(a, a)
    0.0
    """
    method = look_up_option(method, ("pooled", "mean"), what="ASSD method")
    if method == "pooled":
        def red(d1: np.ndarray, d2: np.ndarray) -> float:
            return float((d1.sum() + d2.sum()) / (d1.size + d2.size))
    else:
        def red(d1: np.ndarray, d2: np.ndarray) -> float:
            return float(0.5 * (d1.mean() + d2.mean()))
    return _per_label_surface(pred, gt, labels, average, include_background, spacing, empty, red)


@_doc
def boundary_f1(
    pred: Any,
    gt: Any,
    *,
    tolerance: float = 2.0,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
) -> float | dict[int, float]:
    r"""Boundary F1: harmonic mean of boundary precision and recall within a tolerance.

    :math:`P_b = |\{x\in\partial P: d(x,\partial G)\le\tau\}| / |\partial P|`,
    :math:`R_b = |\{y\in\partial G: d(y,\partial P)\le\tau\}| / |\partial G|`,
    :math:`F = 2 P_b R_b / (P_b + R_b)` (0 when both are 0).

    Parameters
    ----------
    {common}
    tolerance : float, default 2.0
        Matching distance :math:`\tau` in ``spacing`` units (pixels by default), >= 0.
        Raising it forgives larger boundary offsets; 0 demands exact boundary voxels.

    Returns
    -------
    float or dict
        In [0, 1]. Both empty -> 1; one empty -> 0.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((12, 12), int); a[2:8, 2:8] = 1
    >>> boundary_f1(a, np.roll(a, 1, axis=0), tolerance=1), boundary_f1(a, np.roll(a, 3, axis=0))
    (1.0, 0.7)
    """
    tol = float(tolerance)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(
            f"tolerance must be a finite number >= 0 (in spacing units); got {tolerance!r}."
        )
    eps = 1e-9 * max(tol, 1.0)

    def red(d1: np.ndarray, d2: np.ndarray) -> float:
        pb = float(np.count_nonzero(d1 <= tol + eps) / d1.size)
        rb = float(np.count_nonzero(d2 <= tol + eps) / d2.size)
        return 0.0 if pb + rb == 0 else 2 * pb * rb / (pb + rb)

    p, g = check_pair(pred, gt)
    average = check_average(average)
    sp = check_spacing(spacing, p.ndim)
    labs, masks = binary_or_labels(p, g, labels, average, include_background)
    vals = np.empty(len(labs), np.float64)
    for k, lab in enumerate(labs):
        a, b = masks(lab)
        ea, eb = not a.any(), not b.any()
        if ea or eb:
            vals[k] = 1.0 if (ea and eb) else 0.0
        else:
            vals[k] = red(*surface_distances(a, b, sp))
    return reduce_scores(vals, labs, average)
