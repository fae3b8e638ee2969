r"""Segmentation metrics: overlap, surface distances, boundary F1 and unsupervised scores.

numpy/scipy only. Every function takes ``(pred, gt)`` label images of the same shape (2D or
3D; bool, {0, 1} or integer labels with 0 = background) first and positional, and
everything else keyword-only. The supervised metrics share **one signature**::

    metric(pred, gt, *, labels=None, average="mean", include_background=False,
           spacing=None, ...)

``labels``
    Labels to score. ``None``: the union of the labels present in ``pred`` or ``gt``
    (label 0 left out unless ``include_background=True``).
``average``
    ``"mean"`` -> float, the mean over the scored labels (NaN entries ignored);
    ``"none"`` -> ``{label: float}``; ``"binary"`` -> float for foreground (``> 0``) against
    foreground, whatever the label values. Binary masks give the same number with
    ``"mean"`` and ``"binary"``.
``spacing``
    Voxel size per axis (plane, row, col); ``None`` = unit voxels. Changes the surface
    distances and the boundary-F1 tolerance; overlap ratios do not depend on it (all voxels
    have the same volume), it is accepted there so that all metrics share one signature.

Empty-mask policy (per scored label; "empty" = the label has no pixel)
-----------------------------------------------------------------------
=====================================  =============  ==============  ==============
metric                                 both empty     only gt empty   only pred empty
=====================================  =============  ==============  ==============
dice, iou, boundary_f1                 1              0               0
precision  (TP / (TP + FP))            1              0               0 (undefined)
recall, per-class pixel accuracy       1              0 (undefined)   0
hausdorff, hausdorff95, ASSD           ``empty`` policy: ``"nan"`` (default) -> NaN;
                                       ``"inf"`` -> 0 if both empty else +inf; a number
                                       ``x`` -> 0 if both empty else ``x``
=====================================  =============  ==============  ==============

Both-empty means perfect agreement, so overlap scores are 1 (as MONAI's ``DiceMetric`` with
``ignore_empty=False``); this keeps a correctly empty prediction (no lesion in a lesion-free
image) from being scored as a failure. A one-sided empty precision/recall is 0/0
mathematically; we return 0 (scikit-learn's ``zero_division=0``) so that a missed object never
scores as perfect.
Distances have no meaningful value when a surface is missing, so the default is NaN and the
class ``"mean"`` skips NaN entries (MONAI ``get_not_nans`` behaviour): **a class missed
entirely then does not raise the mean distance**; use ``empty="inf"`` or a number (e.g. the
image diagonal) when that matters. With no label to score at all (both images entirely
background), the foreground masks are scored, so the table above applies (reported as label 1
for ``average="none"``).

Surface distances, boundary F1 and the unsupervised protocols
-------------------------------------------------------------
Exact definitions (which surface, which percentile, which matching): ``docs/metrics.md``.

* overlap (:mod:`._overlap`): ``dice``, ``iou``, ``precision``, ``recall``, ``pixel_accuracy``;
* surfaces (:mod:`._surface`): ``hausdorff``, ``hausdorff95`` (max of directed 95th
  percentiles, MONAI; ``method="pooled"`` = medpy), ``average_surface_distance`` (pooled ASSD),
  ``boundary_f1(tolerance=2)``; distances in ``spacing`` units, computed exactly on the masks
  cropped to their bounding box;
* unsupervised labels (:mod:`._matching`): ``hungarian_match`` / ``matched_miou`` /
  ``matched_accuracy`` (one-to-one assignment maximising matched pixels), ``best_match_iou``
  (many-to-one), ``bsds_protocols`` (BSD500 All / Fine / Coarse / Mean), and pooled
  accumulators for dataset-level scores.

:func:`evaluate` runs several metrics by name (the ``physeg evaluate`` command) and
:data:`METRICS` maps each name to its function.

Validation: shapes must match (the error gives both shapes and asks whether the mask belongs
to this image); labels must be non-negative whole numbers (floats holding whole numbers are
accepted, NaN is rejected). Inputs are never modified.

References
----------
.. [1] Taha & Hanbury, "Metrics for evaluating 3D medical image segmentation", BMC Medical
   Imaging 15:29 (2015), :DOI:`10.1186/s12880-015-0068-x`.
.. [2] Csurka, Larlus & Perronnin, "What is a good evaluation measure for semantic
   segmentation?", BMVC 2013, :DOI:`10.5244/C.27.32`.
.. [3] Cho et al., "PiCIE: Unsupervised semantic segmentation using invariance and
   equivariance in clustering", CVPR 2021, :arXiv:`2103.17070`.
.. [4] Guermazi et al., "DynaSeg: A deep dynamic fusion method for unsupervised image
   segmentation incorporating feature similarity and spatial continuity", :arXiv:`2405.05477`.

Examples
--------
>>> import numpy as np
>>> from physeg import metrics
>>> a = np.zeros((10, 10), bool); a[2:6, 2:6] = True     # 16 pixels
>>> b = np.zeros((10, 10), bool); b[4:8, 2:6] = True     # 16 pixels, 8 shared
>>> metrics.dice(a, b), metrics.iou(a, b)
(0.5, 0.3333333333333333)
>>> metrics.hausdorff(a, b)
2.0
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from .._validate import look_up_option
from ._matching import (
    BSDSAccumulator,
    MatchedScores,
    best_match_iou,
    bsds_protocols,
    hungarian_match,
    matched_accuracy,
    matched_miou,
    matched_scores,
    pooled_bsds_protocols,
    pooled_matched_scores,
)
from ._overlap import check_pair, check_spacing, dice, iou, pixel_accuracy, precision, recall
from ._surface import average_surface_distance, boundary_f1, hausdorff, hausdorff95

__all__ = [
    "METRICS",
    "DEFAULT_METRICS",
    "BSDSAccumulator",
    "MatchedScores",
    "average_surface_distance",
    "best_match_iou",
    "boundary_f1",
    "bsds_protocols",
    "dice",
    "evaluate",
    "hausdorff",
    "hausdorff95",
    "hungarian_match",
    "iou",
    "matched_accuracy",
    "matched_miou",
    "matched_scores",
    "pixel_accuracy",
    "pooled_bsds_protocols",
    "pooled_matched_scores",
    "precision",
    "recall",
    "ALIASES",
    "resolve_metric",
]

# ------------------------------------------------------------------------ registry, evaluate

METRICS: dict[str, Callable[..., Any]] = {
    "dice": dice,
    "iou": iou,
    "pixel_accuracy": pixel_accuracy,
    "precision": precision,
    "recall": recall,
    "boundary_f1": boundary_f1,
    "hausdorff": hausdorff,
    "hausdorff95": hausdorff95,
    "average_surface_distance": average_surface_distance,
    "matched_miou": matched_miou,
    "matched_accuracy": matched_accuracy,
    "best_match_iou": best_match_iou,
}
"""Metric name -> function; every function takes ``(pred, gt)`` first."""

ALIASES: dict[str, str] = {
    "jaccard": "iou",
    "accuracy": "pixel_accuracy",
    "pacc": "pixel_accuracy",
    "hd": "hausdorff",
    "hd95": "hausdorff95",
    "assd": "average_surface_distance",
    "asd": "average_surface_distance",
    "bf1": "boundary_f1",
    "miou": "matched_miou",
}
"""Short names accepted by :func:`evaluate` and the CLI."""


DEFAULT_METRICS = (
    "dice",
    "iou",
    "pixel_accuracy",
    "precision",
    "recall",
    "boundary_f1",
    "hausdorff95",
    "average_surface_distance",
)
"""Metrics :func:`evaluate` computes when none are named."""


def resolve_metric(name: str) -> str:
    """Canonical metric name for ``name`` (aliases allowed; "did you mean" on typos)."""
    if not isinstance(name, str):
        raise TypeError(f"metric names must be strings; got {name!r}.")
    key = name.strip().lower().replace("-", "_")
    if key in ALIASES:
        return ALIASES[key]
    return look_up_option(key, list(METRICS) + list(ALIASES), what="metric")


def evaluate(
    pred: Any,
    gt: Any,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    *,
    spacing: Any = None,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Compute several metrics of one (pred, gt) pair by name.

    Parameters
    ----------
    pred, gt : array_like of int or bool
        Predicted and gt label images of the same shape.
    metrics : str or sequence of str, default :data:`DEFAULT_METRICS`
        Names from :data:`METRICS` or :data:`ALIASES`; a string may list several separated
        by commas (``"dice,hd95"``).
    spacing : float or sequence of float, optional
        Voxel size per axis, passed to the metrics that use it.
    labels, average, include_background
        Passed to every metric that accepts them (see the module docstring).
    **options
        Extra keywords (e.g. ``tolerance=1``, ``empty="inf"``, ``ignore_index=255``) passed
        to each metric whose signature has them; a keyword no selected metric accepts is an
        error.

    Returns
    -------
    dict
        ``{metric name: float}`` (or ``{metric name: {label: float}}`` with
        ``average="none"``), keys in the requested order, under their canonical names.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((10, 10), int); a[2:6, 2:6] = 1
    >>> evaluate(a, a, metrics="dice,hd95")
    {'dice': 1.0, 'hausdorff95': 0.0}
    """
    if isinstance(metrics, str):
        names = [m for m in (s.strip() for s in metrics.split(",")) if m]
    else:
        names = list(metrics)
    if not names:
        raise ValueError(f"no metric named; choose from {sorted(METRICS)}.")
    canon = list(dict.fromkeys(resolve_metric(n) for n in names))
    p, g = check_pair(pred, gt)  # validate once up front for a clear error
    check_spacing(spacing, p.ndim)
    common = {
        "spacing": spacing,
        "labels": labels,
        "average": average,
        "include_background": include_background,
    }
    used: set[str] = set()
    out: dict[str, Any] = {}
    for name in canon:
        func = METRICS[name]
        params = inspect.signature(func).parameters
        kwargs = {k: v for k, v in common.items() if k in params}
        if "average" in kwargs and name == "best_match_iou" and average not in ("mean", "none"):
            kwargs.pop("average")
        for k, v in options.items():
            if k in params:
                kwargs[k] = v
                used.add(k)
        out[name] = func(p, g, **kwargs)
    unused = set(options) - used
    if unused:
        raise TypeError(
            f"option(s) {sorted(unused)} are not accepted by any of the metrics {canon}."
        )
    return out
