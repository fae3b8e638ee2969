"""Overlap metrics (dice, iou, precision, recall, pixel accuracy) and the shared checks.

:mod:`physeg.metrics` re-exports the public functions; input checks, label sets and confusion
counts here are shared with :mod:`._surface` and :mod:`._matching`.

Everything here is vectorised numpy; the only Python loops run over *labels*, never pixels.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import numpy as np

from .._validate import look_up_option

AVERAGES = ("mean", "none", "binary")


def check_label_image(arr: Any, name: str) -> np.ndarray:
    """Return ``arr`` as a non-negative integer label array (bool becomes uint8).

    Floats are accepted only when every value is a finite whole number (masks stored in
    float TIFFs); anything else is rejected with a message saying how to fix it.
    """
    if arr is None:
        raise TypeError(f"{name} is None; expected an integer label array (0 = background).")
    lab = np.asarray(arr)
    if lab.dtype == bool:
        return lab.view(np.uint8)
    if np.issubdtype(lab.dtype, np.integer):
        pass
    elif np.issubdtype(lab.dtype, np.floating):
        finite = np.isfinite(lab)
        if not finite.all():
            n_bad = int(lab.size - np.count_nonzero(finite))
            raise ValueError(
                f"{name} contains {n_bad} NaN or infinite values; a label image must hold "
                "whole numbers (0 = background). Replace them first, e.g. np.nan_to_num(x, nan=0)."
            )
        if not np.all(lab == np.round(lab)):
            raise TypeError(
                f"{name} holds non-integer values (dtype {lab.dtype}); expected integer labels "
                "(0 = background). If this is a probability map, threshold it first, "
                "e.g. (prob > 0.5)."
            )
        lab = lab.astype(np.int64)
    else:
        raise TypeError(
            f"{name} has dtype {lab.dtype}; expected integer labels (bool, uint8, int32, ...)."
        )
    if lab.ndim == 0 or lab.size == 0:
        raise ValueError(
            f"{name} is empty or scalar (shape {lab.shape}); expected a 2D or 3D label image."
        )
    if np.issubdtype(lab.dtype, np.signedinteger) and lab.min() < 0:
        raise ValueError(
            f"{name} has negative labels (min {int(lab.min())}); labels must be >= 0 "
            "(0 = background)."
        )
    return lab


def check_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction / ground-truth pair of label images of the same shape."""
    p = check_label_image(pred, "pred")
    g = check_label_image(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(
            f"pred has shape {p.shape} but gt has shape {g.shape}; they must be identical. "
            "Does the mask belong to this image? (Resize the prediction with nearest-neighbour "
            "interpolation, or pair the files correctly.)"
        )
    return p, g


def check_spacing(spacing: Any, ndim: int) -> tuple[float, ...]:
    """``None`` -> unit voxels; a scalar -> isotropic; a sequence -> one positive value per axis."""
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, numbers.Real):
        vals = [float(spacing)] * ndim
    else:
        try:
            vals = [float(s) for s in spacing]
        except TypeError as exc:
            raise TypeError(
                f"spacing must be None, a number or a sequence of {ndim} numbers; got {spacing!r}."
            ) from exc
        if len(vals) != ndim:
            raise ValueError(
                f"spacing has {len(vals)} values but the images are {ndim}-D; give one voxel "
                f"size per axis (plane, row, col order), e.g. spacing={(1.0,) * ndim}."
            )
    if not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"spacing values must be finite and > 0; got {tuple(vals)}.")
    return tuple(vals)


def check_average(average: str) -> str:
    return look_up_option(average, AVERAGES, what="average")


def select_labels(
    p: np.ndarray, g: np.ndarray, labels: Sequence[int] | None, include_background: bool
) -> list[int]:
    """Labels to score: the given ones, or the union of labels present in either image."""
    if labels is not None:
        if isinstance(labels, numbers.Integral):
            labels = [labels]
        out = []
        for lab in labels:
            if not isinstance(lab, (numbers.Integral, np.integer)) or int(lab) < 0:
                raise ValueError(
                    f"labels must be non-negative integers; got {lab!r} in {labels!r}."
                )
            out.append(int(lab))
        return sorted(set(out))
    present = np.union1d(present_labels(p), present_labels(g))
    if not include_background:
        present = present[present != 0]
    return [int(v) for v in present]


def present_labels(x: np.ndarray) -> np.ndarray:
    """Sorted distinct labels of a non-negative integer array (bincount when the range is small)."""
    top = int(x.max())
    if top < 32:  # a few passes of (x == v).any() beat sorting or a widening bincount
        return np.array([v for v in range(top + 1) if (x == v).any()], np.int64)
    if top < (1 << 16):
        return np.flatnonzero(np.bincount(x.ravel(), minlength=top + 1)).astype(np.int64)
    return np.unique(x).astype(np.int64)


def confusion_counts(
    p: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint histogram of (pred, gt) labels.

    Returns
    -------
    counts : ndarray of int64, shape (n_pred_labels, n_gt_labels)
        ``counts[i, j]`` = number of pixels with pred == pred_labels[i] and gt == gt_labels[j].
    pred_labels, gt_labels : ndarray of int64
        Sorted labels present in each image.
    """
    pf = p.ravel()
    gf = g.ravel()
    pmax = int(pf.max())
    gmax = int(gf.max())
    if (pmax + 1) * (gmax + 1) <= max(4 * pf.size, 1 << 16):
        # Small label ranges: one bincount on the combined code.
        code = pf.astype(np.int64) * (gmax + 1) + gf.astype(np.int64)
        full = np.bincount(code, minlength=(pmax + 1) * (gmax + 1)).reshape(pmax + 1, gmax + 1)
        rows = np.flatnonzero(full.sum(axis=1))
        cols = np.flatnonzero(full.sum(axis=0))
        return full[np.ix_(rows, cols)], rows.astype(np.int64), cols.astype(np.int64)
    pl, pi = np.unique(pf, return_inverse=True)
    gl, gi = np.unique(gf, return_inverse=True)
    code = pi.astype(np.int64).ravel() * len(gl) + gi.astype(np.int64).ravel()
    counts = np.bincount(code, minlength=len(pl) * len(gl)).reshape(len(pl), len(gl))
    return counts, pl.astype(np.int64), gl.astype(np.int64)


def per_label_tp_fp_fn(
    p: np.ndarray, g: np.ndarray, labels: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """True positives, false positives and false negatives per label (one-vs-rest)."""
    if len(labels) <= 16:  # a few boolean passes per label beat a full joint histogram
        tp = np.empty(len(labels), np.int64)
        npred = np.empty(len(labels), np.int64)
        ngt = np.empty(len(labels), np.int64)
        for k, lab in enumerate(labels):
            a = p == lab
            b = g == lab
            tp[k] = np.count_nonzero(a & b)
            npred[k] = np.count_nonzero(a)
            ngt[k] = np.count_nonzero(b)
        return tp, npred - tp, ngt - tp, int(p.size)
    counts, pl, gl = confusion_counts(p, g)
    labels_arr = np.asarray(labels, dtype=np.int64)
    n = len(labels_arr)
    tp = np.zeros(n, np.int64)
    npred = np.zeros(n, np.int64)
    ngt = np.zeros(n, np.int64)
    rows = counts.sum(axis=1)
    cols = counts.sum(axis=0)
    ip = np.searchsorted(pl, labels_arr)
    ig = np.searchsorted(gl, labels_arr)
    in_p = (ip < len(pl)) & (pl[np.minimum(ip, len(pl) - 1)] == labels_arr)
    in_g = (ig < len(gl)) & (gl[np.minimum(ig, len(gl) - 1)] == labels_arr)
    npred[in_p] = rows[ip[in_p]]
    ngt[in_g] = cols[ig[in_g]]
    both = in_p & in_g
    tp[both] = counts[ip[both], ig[both]]
    return tp, npred - tp, ngt - tp, int(p.size)


def reduce_scores(
    values: np.ndarray, labels: Sequence[int], average: str
) -> float | dict[int, float]:
    """Turn per-label scores into the requested output (NaN-aware mean, or a dict)."""
    if average == "none":
        return {int(lab): float(v) for lab, v in zip(labels, values, strict=True)}
    return nanmean(values)


def nanmean(values: np.ndarray) -> float:
    """Mean ignoring NaN; NaN (without a RuntimeWarning) when nothing is finite-or-inf."""
    v = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(v)
    if not keep.any():
        return float("nan")
    return float(v[keep].mean())


def binary_or_labels(
    p: np.ndarray,
    g: np.ndarray,
    labels: Sequence[int] | None,
    average: str,
    include_background: bool,
) -> tuple[list[int], Callable[[int], tuple[np.ndarray, np.ndarray]]]:
    """Labels to score and a function giving the two boolean masks of one label.

    ``average="binary"`` scores foreground (label > 0) against foreground, reported under
    label 1. With no label to score (both images all background and the background
    excluded), the foreground masks are scored, so the result follows the empty policy.

    For many labels (instance images), each label's masks are cut from the bounding box of
    that label in either image plus a one-voxel margin (``scipy.ndimage.find_objects``, one
    pass over the images) instead of comparing the whole image per label; surface metrics
    crop to exactly this box anyway, so the values are unchanged.
    """
    if average == "binary":
        return [1], lambda _lab: (p > 0, g > 0)
    labs = select_labels(p, g, labels, include_background)
    if not labs:
        return [1], lambda _lab: (p > 0, g > 0)
    top = max(labs)
    if len(labs) < 4 or top > (1 << 22):
        return labs, lambda lab: (p == lab, g == lab)
    from scipy import ndimage as ndi

    boxes_p = ndi.find_objects(p, max_label=top)
    boxes_g = ndi.find_objects(g, max_label=top)
    empty = np.zeros((1,) * p.ndim, bool)

    def masks(lab: int) -> tuple[np.ndarray, np.ndarray]:
        if lab == 0:  # find_objects does not report the background
            return p == 0, g == 0
        bp, bg = boxes_p[lab - 1], boxes_g[lab - 1]
        if bp is None and bg is None:
            return empty, empty
        parts = [b for b in (bp, bg) if b is not None]
        box = tuple(
            slice(
                max(min(b[ax].start for b in parts) - 1, 0),
                min(max(b[ax].stop for b in parts) + 1, p.shape[ax]),
            )
            for ax in range(p.ndim)
        )
        return p[box] == lab, g[box] == lab

    return labs, masks


_COMMON = """pred, gt : array_like of int or bool
        Predicted and ground-truth label images, same shape (2D or 3D), 0 = background.
    labels : int or sequence of int, optional
        Labels to score; default: every label present in either image (0 excluded unless
        ``include_background``). A listed label absent from both images follows the
        empty-mask policy of the module docstring.
    average : {"mean", "none", "binary"}, default "mean"
        ``"mean"``: float, mean over labels (NaN entries skipped); ``"none"``: dict
        ``{label: value}``; ``"binary"``: float for foreground (``> 0``) vs foreground.
    include_background : bool, default False
        Score label 0 as a class too (only when ``labels`` is None).
    spacing : float or sequence of float, optional
        Voxel size per axis (plane, row, col); ``None`` = 1."""

_DIST = """empty : {"nan", "inf"} or float, default "nan"
        Value when a label is empty in one image: ``"nan"`` -> NaN (also when both are
        empty); ``"inf"`` -> +inf (0 when both are empty); a number -> that number (0 when
        both are empty)."""


def _doc(func: Callable) -> Callable:
    if func.__doc__:
        func.__doc__ = func.__doc__.replace("{common}", _COMMON).replace("{dist}", _DIST)
    return func


# --------------------------------------------------------------------------- overlap metrics


def _overlap_counts(pred, gt, labels, average, include_background):
    p, g = check_pair(pred, gt)
    average = check_average(average)
    labs = [] if average == "binary" else select_labels(p, g, labels, include_background)
    if not labs:
        p = (p > 0).view(np.uint8)
        g = (g > 0).view(np.uint8)
        labs = [1]
    tp, fp, fn, _n = per_label_tp_fp_fn(p, g, labs)
    return labs, tp.astype(np.float64), fp.astype(np.float64), fn.astype(np.float64), average


def _ratio(num: np.ndarray, den: np.ndarray, both_empty: np.ndarray) -> np.ndarray:
    """num / den, with 1 where both masks are empty and 0 for the other 0/0 cases."""
    out = np.where(den > 0, num / np.maximum(den, 1.0), 0.0)
    return np.where(both_empty, 1.0, out)


@_doc
def dice(
    pred: Any,
    gt: Any,
    *,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
) -> float | dict[int, float]:
    r"""Dice coefficient (F1 of pixels), :math:`2|P\cap G| / (|P| + |G|)`, in [0, 1].

    Parameters
    ----------
    {common}

    Returns
    -------
    float or dict
        1 = identical masks, 0 = disjoint. Both empty -> 1.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[0, 1, 1], [0, 2, 2]]); pred = np.array([[0, 1, 0], [0, 2, 2]])
    >>> dice(pred, gt, average="none")
    {1: 0.6666666666666666, 2: 1.0}
    """
    labs, tp, fp, fn, average = _overlap_counts(pred, gt, labels, average, include_background)
    vals = _ratio(2 * tp, 2 * tp + fp + fn, (tp + fp + fn) == 0)
    return reduce_scores(vals, labs, average)


@_doc
def iou(
    pred: Any,
    gt: Any,
    *,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
) -> float | dict[int, float]:
    r"""Intersection over union (Jaccard index), :math:`|P\cap G| / |P\cup G|`, in [0, 1].

    Related to Dice by :math:`J = D / (2 - D)` per label.

    Parameters
    ----------
    {common}

    Returns
    -------
    float or dict
        1 = identical, 0 = disjoint. Both empty -> 1.

    Examples
    --------
    >>> import numpy as np
    >>> iou(np.array([[1, 1, 0, 0]]), np.array([[0, 1, 1, 0]]))
    0.3333333333333333
    """
    labs, tp, fp, fn, average = _overlap_counts(pred, gt, labels, average, include_background)
    vals = _ratio(tp, tp + fp + fn, (tp + fp + fn) == 0)
    return reduce_scores(vals, labs, average)


@_doc
def precision(
    pred: Any,
    gt: Any,
    *,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
) -> float | dict[int, float]:
    r"""Precision (positive predictive value), :math:`TP / (TP + FP)`, in [0, 1].

    Parameters
    ----------
    {common}

    Returns
    -------
    float or dict
        Fraction of predicted pixels of a label that are right. Both empty -> 1; empty
        prediction with non-empty gt -> 0.

    Examples
    --------
    >>> import numpy as np
    >>> precision(np.array([[1, 1, 1, 1]]), np.array([[1, 0, 0, 0]]))
    0.25
    """
    labs, tp, fp, fn, average = _overlap_counts(pred, gt, labels, average, include_background)
    vals = _ratio(tp, tp + fp, (tp + fp + fn) == 0)
    return reduce_scores(vals, labs, average)


@_doc
def recall(
    pred: Any,
    gt: Any,
    *,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
) -> float | dict[int, float]:
    r"""Recall (sensitivity), :math:`TP / (TP + FN)`, in [0, 1].

    Parameters
    ----------
    {common}

    Returns
    -------
    float or dict
        Fraction of gt pixels of a label that are found. Both empty -> 1; empty gt with
        non-empty prediction -> 0.

    Examples
    --------
    >>> import numpy as np
    >>> recall(np.array([[1, 1, 1, 1]]), np.array([[1, 0, 0, 0]]))
    1.0
    """
    labs, tp, fp, fn, average = _overlap_counts(pred, gt, labels, average, include_background)
    vals = _ratio(tp, tp + fn, (tp + fp + fn) == 0)
    return reduce_scores(vals, labs, average)


@_doc
def pixel_accuracy(
    pred: Any,
    gt: Any,
    *,
    labels: int | Sequence[int] | None = None,
    average: str = "mean",
    include_background: bool = False,
    spacing: Any = None,
) -> float | dict[int, float]:
    r"""Pixel accuracy: the fraction of pixels whose predicted label equals the gt label.

    ``average="mean"`` gives the standard global pixel accuracy (pAcc)
    :math:`\#\{x: P(x) = G(x)\} / N` over **all** pixels, background included (it is the
    pixel-weighted mean of the per-class accuracies; ``labels`` and ``include_background``
    do not change it). ``"binary"`` compares ``pred > 0`` with ``gt > 0``. ``"none"`` gives
    the per-class accuracy :math:`TP_c / |G = c|` (= recall) for the selected labels.

    Parameters
    ----------
    {common}

    Returns
    -------
    float or dict
        In [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> pixel_accuracy(np.array([[0, 1, 1, 2]]), np.array([[0, 1, 2, 2]]))
    0.75
    """
    average = check_average(average)
    if average == "none":
        return recall(pred, gt, labels=labels, average="none",
                      include_background=include_background)
    p, g = check_pair(pred, gt)
    if average == "binary":
        return float(np.count_nonzero((p > 0) == (g > 0)) / p.size)
    return float(np.count_nonzero(p == g) / p.size)
