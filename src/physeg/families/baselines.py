"""Classical baselines: multi-Otsu thresholding and Chan–Vese (thin wrappers over scikit-image).

They are registered as ``otsu`` and ``chan-vese`` so that the whole pipeline (CLI, batch,
evaluation, report) runs before and beside the model methods, and serve as anchors in every
benchmark.

Colour images are reduced to one channel by the mean over channels (equal weights: no
assumption that the channels are sRGB), then each method works on grey values.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._validate import to_float01, to_grey
from ._registry import Method, Param, defaults_from, register

__all__ = ["segment_otsu", "segment_chan_vese", "OTSU_PARAMS", "CHAN_VESE_PARAMS"]


OTSU_PARAMS = (
    Param("classes", "int", 2, "number of classes K; K-1 thresholds", low=2, high=8),
    Param("invert", "bool", False, "label the darkest class 1 instead of the brightest"),
)
CHAN_VESE_PARAMS = (
    Param("mu", "float", 0.25, "edge-length weight; higher = smoother", low=0.0, high=10.0),
    Param("max_iter", "int", 500, "iteration cap", low=1, high=100000),
    Param("tol", "float", 1e-3, "stopping tolerance", low=0.0, high=1.0),
)


@defaults_from(OTSU_PARAMS)
def segment_otsu(
    image: np.ndarray,
    *,
    classes: int,
    invert: bool,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: Any = None,
) -> np.ndarray:
    """Segment by (multi-)Otsu thresholds of the intensity histogram.

    Parameters
    ----------
    image : ndarray
        2D or 3D image, grey or with ``channel_axis`` (channels averaged).
    classes : int, default 2
        Number of classes K (2..8); K - 1 thresholds maximise the between-class variance.
    invert : bool, default False
        If True, label 1 is the darkest class instead of the brightest.
    channel_axis, spacing, rng
        Accepted for the common contract; Otsu is deterministic and ignores spacing.

    Returns
    -------
    labels : ndarray of uint8
        0..K-1 ordered by intensity (0 darkest unless ``invert``).

    Raises
    ------
    ValueError
        A constant image (no threshold exists).
    """
    from skimage.filters import threshold_multiotsu

    grey = to_grey(np.asarray(image), channel_axis)
    if float(grey.max()) == float(grey.min()):
        raise ValueError(
            "the image is constant (every pixel equals "
            f"{float(grey.min()):g}); there is nothing to threshold."
        )
    if classes == 2:
        from skimage.filters import threshold_otsu

        labels = (grey > threshold_otsu(grey)).astype(np.uint8)
    else:
        try:
            thresholds = threshold_multiotsu(grey, classes=classes)
        except ValueError as exc:
            raise ValueError(
                f"multi-Otsu with {classes} classes failed on this image ({exc}); "
                "it has too few distinct grey levels. Lower `classes`."
            ) from None
        labels = np.digitize(grey, bins=thresholds).astype(np.uint8)
    if invert:
        labels = (classes - 1 - labels).astype(np.uint8)
    return labels


@defaults_from(CHAN_VESE_PARAMS)
def segment_chan_vese(
    image: np.ndarray,
    *,
    mu: float,
    max_iter: int,
    tol: float,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: Any = None,
) -> np.ndarray:
    """Two-phase Chan–Vese by scikit-image's ``chan_vese`` (2D grey).

    Minimises ``mu·Length(C) + ∫_in (f − c1)² + ∫_out (f − c2)²`` by level-set gradient
    descent from a checkerboard initialisation. The image is mapped to [0, 1] by its dtype
    range (see :func:`physeg._validate.to_float01`). The brighter region is labelled 1.

    Parameters
    ----------
    mu : float, default 0.25
        Edge-length weight (0..10); higher gives smoother, rounder regions.
    max_iter : int, default 500
        Iteration cap (1..100000).
    tol : float, default 1e-3
        Level-set change tolerance for stopping.
    """
    from skimage.segmentation import chan_vese

    grey = to_grey(to_float01(np.asarray(image)), channel_axis)
    if float(grey.max()) == float(grey.min()):
        raise ValueError("the image is constant; Chan–Vese needs at least two intensities.")
    mask = chan_vese(grey, mu=mu, max_num_iter=max_iter, tol=tol)
    mask = np.asarray(mask, dtype=bool)
    # Chan–Vese's phase sign is arbitrary: call the brighter region foreground.
    if mask.any() and (~mask).any() and grey[mask].mean() < grey[~mask].mean():
        mask = ~mask
    return mask.astype(np.uint8)


register(
    Method(
        name="otsu",
        func=segment_otsu,
        params=OTSU_PARAMS,
        summary="multi-Otsu thresholding (scikit-image); classical baseline",
        supports_3d=True,
        supports_multichannel=True,
    )
)

register(
    Method(
        name="chan-vese",
        func=segment_chan_vese,
        params=CHAN_VESE_PARAMS,
        summary="two-phase Chan-Vese level set (scikit-image); classical baseline",
        supports_3d=False,
        supports_multichannel=True,
    )
)
