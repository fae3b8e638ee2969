"""Private surface-distance machinery for :mod:`physeg.metrics`.

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

import numpy as np


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
