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

:func:`evaluate` runs several metrics by name and :data:`METRICS` maps each name to its
function. :func:`score_labels` is **the one scoring rule** of ``physeg evaluate`` and
``physeg bench`` (both call it, so they give the same numbers for the same label files):

* plain (default): the labels as they are. A binary truth (at most one foreground value) is
  scored as *label 1 vs mask > 0*: predicted label 1 is the object (what ``physeg segment``
  writes for a two-phase method; a prediction whose only non-zero value is another number,
  e.g. a 0/255 mask, has that value as its object); a multi-label truth label by label
  (label k vs mask label k, mean over labels);
* ``match=True``: the predicted labels are first mapped to the truth's by the Hungarian
  assignment that maximises overlap (:func:`hungarian_match`; unmatched labels become
  background), for unsupervised multi-label output whose ids mean nothing;

with several annotators a metric is the mean over them (NaN ignored). For a binary truth the
plain rule also gives the Dice of the *inverted* prediction, so a caller can say when the
method called the wrong phase the object.

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

import numpy as np

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
    "score_labels",
    "scoring_rule",
    "scored_view",
    "apply_match",
    "inversion_hint",
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


# ------------------------------------------------------------------------ the one scoring rule


def _is_binary_truth(gt: np.ndarray) -> bool:
    """At most one foreground value (0/1, 0/255 masks)."""
    return np.unique(gt[gt > 0]).size <= 1


def apply_match(pred: Any, gt: Any) -> np.ndarray:
    """``pred`` relabelled by :func:`hungarian_match` onto ``gt``'s labels (int64; predicted
    labels left unmatched become 0)."""
    p, g = check_pair(pred, gt)
    mapping = hungarian_match(p, g)
    keys = np.array(sorted(mapping), dtype=np.int64)
    out = np.zeros(p.shape, dtype=np.int64)
    if keys.size:
        vals = np.array([mapping[k] for k in keys], dtype=np.int64)
        idx = np.clip(np.searchsorted(keys, p), 0, keys.size - 1)
        hit = keys[idx] == p
        out[hit] = vals[idx[hit]]
    return out


def _object_label(pred: np.ndarray) -> int:
    """The predicted label that is "the object" for a binary truth: 1, or the only non-zero
    value when 1 is absent (a 0/255 mask)."""
    values = np.unique(pred[pred > 0])
    if values.size == 1 and values[0] != 1:
        return int(values[0])
    return 1


def scored_view(pred: Any, gt: Any, *, match: bool = False,
                average: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """The (pred, gt) arrays :func:`score_labels` scores and the ``average`` it uses.

    ``average="auto"``: a binary truth gives ``(pred == object label, gt > 0, "binary")``
    (after the matching with ``match=True``), a multi-label one ``(pred, gt, "mean")``.
    ``"binary"``: foreground against foreground (``> 0``); ``"mean"``: labels as they are.
    The report galleries draw the first array, so they show what was scored.
    """
    p, g = check_pair(pred, gt)
    if average not in ("auto", "binary", "mean"):
        raise ValueError(f"average must be auto, binary or mean; got {average!r}.")
    if match:
        p = apply_match(p, g)
    if average == "auto":
        if not _is_binary_truth(g):
            return p, g, "mean"
        fg = (p > 0) if match else (p == _object_label(p))
        return fg.astype(np.uint8), (g > 0).astype(np.uint8), "binary"
    if average == "binary":
        return (p > 0).astype(np.uint8), (g > 0).astype(np.uint8), "binary"
    return p, g, "mean"


def scoring_rule(*, match: bool = False, average: str = "auto",
                 binary: bool | None = True) -> str:
    """One line naming the rule, e.g. ``"scored: label 1 vs mask>0"``.

    ``binary``: whether the truths were binary (``None``: both kinds met).
    """
    if match:
        return "scored: Hungarian-matched labels"
    if average == "binary":
        return "scored: label > 0 vs mask > 0"
    if average == "mean" or binary is False:
        return "scored: labels as they are (label k vs mask label k)"
    if binary is None:
        return "scored: label 1 vs mask>0 (binary masks), label k vs mask label k (others)"
    return "scored: label 1 vs mask>0"


def score_labels(
    pred: Any,
    gts: Any,
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    *,
    match: bool = False,
    average: str = "auto",
    **options: Any,
) -> dict[str, Any]:
    """Score one prediction against one or several truths by the one rule (module notes).

    Parameters
    ----------
    pred : array_like of int
        Predicted labels.
    gts : array_like of int, or a list of them
        One truth or several annotators' truths, each of ``pred``'s shape.
    metrics : str or sequence of str
        Metric names, as :func:`evaluate`.
    match : bool, default False
        Map the predicted labels to each truth's by Hungarian matching first.
    average : {"auto", "binary", "mean"}, default "auto"
        See :func:`scored_view`.
    **options
        Passed to :func:`evaluate` (e.g. ``spacing``, ``tolerance``).

    Returns
    -------
    dict
        ``"scores"``: ``{metric: mean over the truths}`` (NaN ignored; NaN if all are);
        ``"average"``: the average used (``"binary"``, ``"mean"`` or ``"mixed"``);
        ``"binary"``: whether every truth was binary; ``"rule"``: :func:`scoring_rule`'s
        line; ``"inverted_dice"`` and ``"object_dice"``: Dice of the inverted and of the
        scored object mask against the truth (plain rule on binary truths; else None).

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((8, 8), np.uint8); gt[2:6, 2:6] = 1
    >>> out = score_labels(1 - gt, gt, "dice")
    >>> out["scores"], out["inverted_dice"], out["rule"]
    ({'dice': 0.0}, 1.0, 'scored: label 1 vs mask>0')
    >>> score_labels(1 - gt, gt, "dice", match=True)["scores"]
    {'dice': 1.0}
    """
    if isinstance(gts, np.ndarray) or not isinstance(gts, (list, tuple)):
        gts = [gts]
    if not gts:
        raise ValueError("no ground truth given.")
    per: list[list[float]] = []
    names: list[str] = []
    used: set[str] = set()
    inverted: list[float] = []
    plain: list[float] = []
    binary = []
    for gt in gts:
        p, g, avg = scored_view(pred, gt, match=match, average=average)
        used.add(avg)
        binary.append(_is_binary_truth(g))
        vals = evaluate(p, g, metrics, average=avg, **options)
        names = list(vals)
        per.append([float(v) for v in vals.values()])
        if not match and average == "auto" and avg == "binary":
            inverted.append(float(dice(1 - p, g, average="binary")))
            plain.append(float(dice(p, g, average="binary")))
    arr = np.asarray(per, dtype=float)
    with np.errstate(invalid="ignore"):
        means = [float(np.nanmean(arr[:, j])) if np.isfinite(arr[:, j]).any() else float("nan")
                 for j in range(arr.shape[1])]
    is_binary: bool | None = all(binary) if all(binary) or not any(binary) else None
    return {
        "scores": dict(zip(names, means, strict=True)),
        "average": used.pop() if len(used) == 1 else "mixed",
        "binary": bool(all(binary)),
        "rule": scoring_rule(match=match, average=average, binary=is_binary),
        "inverted_dice": float(np.mean(inverted)) if len(inverted) == len(gts) else None,
        "object_dice": float(np.mean(plain)) if len(plain) == len(gts) else None,
    }


def inversion_hint(dice_mean: float, inverted_mean: float | None, *,
                   margin: float = 0.2, floor: float = 0.5) -> bool:
    """Whether the inverted prediction scores clearly higher: Dice of the inverse >=
    ``dice_mean + margin`` and above ``floor`` (the callers then suggest the other phase or
    matching)."""
    if inverted_mean is None or not np.isfinite(inverted_mean):
        return False
    d = dice_mean if np.isfinite(dice_mean) else 0.0
    return inverted_mean >= d + margin and inverted_mean > floor
