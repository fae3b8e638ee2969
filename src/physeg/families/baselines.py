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

from .._foreground import FOREGROUND_RULES, OBJECT_RULES, apply_rules
from .._validate import to_float01, to_grey
from ._registry import Method, Param, defaults_from, register

__all__ = ["segment_otsu", "segment_chan_vese", "OTSU_PARAMS", "CHAN_VESE_PARAMS"]


OTSU_PARAMS = (
    Param("classes", "int", 2, "number of classes K; K-1 thresholds", low=2, high=8),
    Param("foreground", "str", "auto", "which class is label 1: auto (the one holding less of "
          "the image border), bright or dark; K > 2: label 0 = background",
          choices=FOREGROUND_RULES),
    Param("objects", "str", "all", "all objects, or one: the largest connected object with its "
          "holes filled (binary)", choices=OBJECT_RULES),
)
CHAN_VESE_PARAMS = (
    Param("mu", "float", 0.25, "edge-length weight; higher = smoother", low=0.0, high=10.0),
    Param("max_iter", "int", 500, "iteration cap", low=1, high=100000),
    Param("tol", "float", 1e-3, "stopping tolerance", low=0.0, high=1.0),
    Param("foreground", "str", "auto", "which region is label 1: auto (the one holding less of "
          "the image border), bright or dark", choices=FOREGROUND_RULES),
    Param("objects", "str", "all", "all objects, or one: the largest connected object with its "
          "holes filled", choices=OBJECT_RULES),
)


@defaults_from(OTSU_PARAMS)
def segment_otsu(
    image: np.ndarray,
    *,
    classes: int,
    foreground: str,
    objects: str,
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
    foreground : {"auto", "bright", "dark"}, default "auto"
        Which class is the object (:mod:`physeg._foreground`): ``"auto"`` = the one holding
        less of the image border (K > 2: label 0 = the class holding most of it), ``"bright"``
        = the brightest (the classical Otsu output), ``"dark"`` = the darkest.
    objects : {"all", "one"}, default "all"
        ``"one"`` keeps the largest connected object, holes filled (binary only).
    channel_axis, spacing, rng
        Accepted for the common contract; Otsu is deterministic and ignores spacing.

    Returns
    -------
    labels : ndarray of uint8
        0..K-1: by the ``foreground`` rule, the others by intensity.

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
    # thresholds order the classes by intensity, so class k's brightness is k
    return apply_rules(labels, np.arange(classes), foreground, objects)


@defaults_from(CHAN_VESE_PARAMS)
def segment_chan_vese(
    image: np.ndarray,
    *,
    mu: float,
    max_iter: int,
    tol: float,
    foreground: str,
    objects: str,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: Any = None,
) -> np.ndarray:
    """Two-phase Chan–Vese by scikit-image's ``chan_vese`` (2D grey).

    Minimises ``mu·Length(C) + ∫_in (f − c1)² + ∫_out (f − c2)²`` by level-set gradient
    descent from a checkerboard initialisation. The image is mapped to [0, 1] by its dtype
    range (see :func:`physeg._validate.to_float01`).

    Parameters
    ----------
    mu : float, default 0.25
        Edge-length weight (0..10); higher gives smoother, rounder regions.
    max_iter : int, default 500
        Iteration cap (1..100000).
    tol : float, default 1e-3
        Level-set change tolerance for stopping.
    foreground, objects
        As for :func:`segment_otsu`: which region is label 1, and single-object output.
    """
    from skimage.segmentation import chan_vese

    grey = to_grey(to_float01(np.asarray(image)), channel_axis)
    if float(grey.max()) == float(grey.min()):
        raise ValueError("the image is constant; Chan–Vese needs at least two intensities.")
    mask = chan_vese(grey, mu=mu, max_num_iter=max_iter, tol=tol)
    mask = np.asarray(mask, dtype=bool)
    # Chan–Vese's phase sign is arbitrary; the foreground rule decides which region is 1
    labels = mask.astype(np.uint8)
    brightness = [grey[~mask].mean() if (~mask).any() else 0.0,
                  grey[mask].mean() if mask.any() else 0.0]
    return apply_rules(labels, brightness, foreground, objects)


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
