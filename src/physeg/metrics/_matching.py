"""Scores for unsupervised label images (cluster ids that carry no class meaning).

Used by :mod:`physeg.metrics`; see its module docstring for the protocols.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from .._validate import look_up_option
from ._overlap import check_label_image, check_pair, confusion_counts, reduce_scores


def drop_ignored(
    p: np.ndarray, g: np.ndarray, ignore_index: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if ignore_index is None:
        return p.ravel(), g.ravel()
    keep = g.ravel() != ignore_index
    return p.ravel()[keep], g.ravel()[keep]


def iou_matrix(counts: np.ndarray) -> np.ndarray:
    """IoU of every (pred segment, gt segment) pair from their joint pixel counts."""
    rows = counts.sum(axis=1, keepdims=True)
    cols = counts.sum(axis=0, keepdims=True)
    union = rows + cols - counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, counts / np.maximum(union, 1), np.nan)


def assignment(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of rows (pred) to columns (gt) maximising matched pixels.

    ``scipy.optimize.linear_sum_assignment(counts, maximize=True)``, the same optimum as the
    PiCIE/DenseSiam/DynaSeg evaluator's ``linear_sum_assignment(max - M)``.
    """
    from scipy.optimize import linear_sum_assignment

    r, c = linear_sum_assignment(counts, maximize=True)
    return r, c


def matched_from_counts(
    counts: np.ndarray, pred_labels: np.ndarray, gt_labels: np.ndarray
) -> dict[str, Any]:
    """Hungarian-matched per-class IoU and pixel accuracy from a confusion matrix."""
    r, c = assignment(counts)
    rows = counts.sum(axis=1)
    cols = counts.sum(axis=0)
    per_class = np.zeros(len(gt_labels), np.float64)  # unmatched gt class: IoU 0
    inter = counts[r, c].astype(np.float64)
    union = rows[r] + cols[c] - counts[r, c]
    per_class[c] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    total = counts.sum()
    accuracy = float(inter.sum() / total) if total > 0 else float("nan")
    mapping = {int(pred_labels[i]): int(gt_labels[j]) for i, j in zip(r, c, strict=True)}
    return {
        "miou": float(per_class.mean()) if len(per_class) else float("nan"),
        "accuracy": accuracy,
        "per_class_iou": {int(g): float(v) for g, v in zip(gt_labels, per_class, strict=True)},
        "mapping": mapping,
    }


def pair_counts(pred: Any, gt: Any, ignore_index: int | None):
    p, g = check_pair(pred, gt)
    pf, gf = drop_ignored(p, g, ignore_index)
    if pf.size == 0:
        raise ValueError(
            f"every gt pixel equals ignore_index={ignore_index}; nothing is left to score."
        )
    return confusion_counts(pf, gf)


class ConfusionAccumulator:
    """Sparse (pred label, gt label) -> pixel count table accumulated over many images."""

    def __init__(self) -> None:
        self._table: dict[tuple[int, int], int] = {}
        self.n_images = 0

    def add(self, counts: np.ndarray, pred_labels: np.ndarray, gt_labels: np.ndarray) -> None:
        nz_r, nz_c = np.nonzero(counts)
        # a loop over label pairs, not pixels
        for i, j in zip(nz_r.tolist(), nz_c.tolist(), strict=True):
            key = (int(pred_labels[i]), int(gt_labels[j]))
            self._table[key] = self._table.get(key, 0) + int(counts[i, j])
        self.n_images += 1

    def dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._table:
            raise ValueError("no images were added; call update(pred, gt) at least once.")
        pl = np.array(sorted({k[0] for k in self._table}), np.int64)
        gl = np.array(sorted({k[1] for k in self._table}), np.int64)
        counts = np.zeros((len(pl), len(gl)), np.int64)
        keys = np.array(list(self._table.keys()), np.int64)
        vals = np.array(list(self._table.values()), np.int64)
        counts[np.searchsorted(pl, keys[:, 0]), np.searchsorted(gl, keys[:, 1])] = vals
        return counts, pl, gl


def best_match_per_segment(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each gt segment, the highest IoU over all predicted segments (many-to-one).

    Returns the gt labels and their best IoU (DynaSeg ``tools/calculate_mIOU.py``).
    """
    counts, _pl, gl = confusion_counts(p, g)
    # every gt column is non-empty, so its unions are > 0 and the IoUs are finite
    return gl, iou_matrix(counts).max(axis=0)


def segment_scores(p: np.ndarray, g: np.ndarray, score: str) -> np.ndarray:
    """Per-gt-segment IoU under ``score`` ("best_match" or "hungarian")."""
    if score == "best_match":
        return best_match_per_segment(p, g)[1]
    counts, pl, gl = confusion_counts(p, g)
    res = matched_from_counts(counts, pl, gl)
    return np.array([res["per_class_iou"][int(lab)] for lab in gl], np.float64)


def bsds_segment_lists(pred: Any, gt_list: Sequence[Any], score: str) -> dict[str, np.ndarray]:
    """Per-segment IoUs of one image under the All / Fine / Coarse protocols."""
    if isinstance(gt_list, np.ndarray) and gt_list.ndim >= 1 and gt_list.dtype != object:
        p0 = np.asarray(pred)
        if gt_list.shape == p0.shape:
            gt_list = [gt_list]
    gts = list(gt_list)
    if not gts:
        raise ValueError("gt_list is empty; give at least one annotator's label image.")
    p = check_label_image(pred, "pred")
    per_annot = []
    n_segments = []
    for k, gt in enumerate(gts):
        g = check_label_image(gt, f"gt_list[{k}]")
        if g.shape != p.shape:
            raise ValueError(
                f"pred has shape {p.shape} but gt_list[{k}] has shape {g.shape}; they must be "
                "identical. Does the mask belong to this image?"
            )
        per_annot.append(segment_scores(p, g, score))
        n_segments.append(len(np.unique(g)))
    # np.argmax / np.argmin pick the first annotator on ties, like the official script.
    fine = int(np.argmax(n_segments))
    coarse = int(np.argmin(n_segments))
    return {
        "all": np.concatenate(per_annot),
        "fine": per_annot[fine],
        "coarse": per_annot[coarse],
    }


def bsds_from_lists(lists: dict[str, Iterable[np.ndarray]]) -> dict[str, float]:
    out = {}
    for key in ("all", "fine", "coarse"):
        vals = np.concatenate(list(lists[key]))
        out[key] = float(vals.mean())
    out["mean"] = (out["all"] + out["fine"] + out["coarse"]) / 3.0
    return out


# ---------------------------------------------------------------------- unsupervised labels


def hungarian_match(pred: Any, gt: Any, *, ignore_index: int | None = None) -> dict[int, int]:
    """One-to-one map from predicted labels to gt labels maximising matched pixels.

    ``scipy.optimize.linear_sum_assignment`` on the (pred x gt) confusion matrix. With more
    clusters than classes, the extra clusters stay unmapped; with fewer, some gt classes do.

    Parameters
    ----------
    pred, gt : array_like of int
        Label images of the same shape; predicted ids are arbitrary cluster ids.
    ignore_index : int, optional
        Gt value whose pixels are left out (e.g. 255 = unlabelled).

    Returns
    -------
    dict of int to int
        ``{pred_label: gt_label}``.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[0, 0, 1, 1, 2, 2]])
    >>> hungarian_match(gt * 7 + 3, gt)
    {3: 0, 10: 1, 17: 2}
    """
    counts, pl, gl = pair_counts(pred, gt, ignore_index)
    return matched_from_counts(counts, pl, gl)["mapping"]


def matched_scores(pred: Any, gt: Any, *, ignore_index: int | None = None) -> dict[str, Any]:
    """Hungarian-matched mIoU, pixel accuracy, per-class IoU and the mapping, for one image.

    Parameters
    ----------
    pred, gt : array_like of int
        Label images of the same shape.
    ignore_index : int, optional
        Gt value whose pixels are left out.

    Returns
    -------
    dict
        ``"miou"`` (mean over gt classes present; unmatched classes count 0),
        ``"accuracy"`` (matched pixels / scored pixels), ``"per_class_iou"``
        ``{gt_label: iou}`` and ``"mapping"`` ``{pred_label: gt_label}``.
    """
    return matched_from_counts(*pair_counts(pred, gt, ignore_index))


def matched_miou(pred: Any, gt: Any, *, ignore_index: int | None = None) -> float:
    """Mean IoU after one-to-one Hungarian matching of predicted labels to gt classes.

    Parameters
    ----------
    pred, gt : array_like of int
        Label images of the same shape.
    ignore_index : int, optional
        Gt value whose pixels are left out.

    Returns
    -------
    float
        In [0, 1]; 1 when ``pred`` is ``gt`` with permuted label ids.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[0, 0, 1, 1, 2, 2]])
    >>> matched_miou(np.array([[5, 5, 9, 9, 1, 1]]), gt)
    1.0
    """
    return matched_scores(pred, gt, ignore_index=ignore_index)["miou"]


def matched_accuracy(pred: Any, gt: Any, *, ignore_index: int | None = None) -> float:
    """Pixel accuracy after one-to-one Hungarian matching (matched pixels / scored pixels).

    Parameters
    ----------
    pred, gt : array_like of int
        Label images of the same shape.
    ignore_index : int, optional
        Gt value whose pixels are left out.

    Returns
    -------
    float
        In [0, 1].
    """
    return matched_scores(pred, gt, ignore_index=ignore_index)["accuracy"]


class MatchedScores:
    """Dataset-level Hungarian scores: pool confusion matrices, match once, then score.

    This is the PiCIE / IIC protocol (one assignment for the whole dataset), which needs
    cluster ids that mean the same thing in every image. For DynaSeg's per-image protocol
    average :func:`matched_scores` over images instead.

    Parameters
    ----------
    ignore_index : int, optional
        Gt value whose pixels are left out.

    Examples
    --------
    >>> import numpy as np
    >>> acc = MatchedScores()
    >>> acc.update(np.array([[1, 1, 0]]), np.array([[0, 0, 1]]))
    >>> acc.update(np.array([[0, 1]]), np.array([[1, 0]]))
    >>> acc.compute()["miou"]
    1.0
    """

    def __init__(self, *, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index
        self._acc = ConfusionAccumulator()

    def update(self, pred: Any, gt: Any) -> None:
        """Add one image pair's confusion counts."""
        self._acc.add(*pair_counts(pred, gt, self.ignore_index))

    def reset(self) -> None:
        """Forget every image added so far."""
        self._acc = ConfusionAccumulator()

    @property
    def n_images(self) -> int:
        """Number of image pairs added."""
        return self._acc.n_images

    def compute(self) -> dict[str, Any]:
        """Match once on the pooled confusion matrix; same keys as :func:`matched_scores`."""
        return matched_from_counts(*self._acc.dense())


def pooled_matched_scores(
    pairs: Iterable[tuple[Any, Any]], *, ignore_index: int | None = None
) -> dict[str, Any]:
    """Hungarian scores over a dataset's pooled confusion matrix (see :class:`MatchedScores`).

    Parameters
    ----------
    pairs : iterable of (pred, gt)
        Image pairs; may be a generator (each pair is read once).
    ignore_index : int, optional
        Gt value whose pixels are left out.

    Returns
    -------
    dict
        Same keys as :func:`matched_scores`.
    """
    acc = MatchedScores(ignore_index=ignore_index)
    for pred, gt in pairs:
        acc.update(pred, gt)
    return acc.compute()


def best_match_iou(pred: Any, gt: Any, *, average: str = "mean") -> float | dict[int, float]:
    """For each gt segment, the highest IoU with any predicted segment (many-to-one).

    DynaSeg's official BSD500 / VOC score (``tools/calculate_mIOU.py``): one predicted
    segment may serve several gt segments; every gt segment, background included, counts.

    Parameters
    ----------
    pred, gt : array_like of int
        Label images of the same shape.
    average : {"mean", "none"}, default "mean"
        ``"mean"``: average over gt segments; ``"none"``: ``{gt_label: best IoU}``.

    Returns
    -------
    float or dict
        In [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 2, 2]])
    >>> best_match_iou(np.array([[0, 0, 0, 0]]), gt)
    0.5
    """
    average = look_up_option(average, ("mean", "none"), what="average")
    p, g = check_pair(pred, gt)
    gl, vals = best_match_per_segment(p, g)
    return reduce_scores(vals, [int(v) for v in gl], average)


def bsds_protocols(
    pred: Any, gt_list: Sequence[Any], *, score: str = "best_match"
) -> dict[str, float]:
    """BSD500 "All", "Fine", "Coarse" and "Mean" scores of one image with several annotators.

    Parameters
    ----------
    pred : array_like of int
        Predicted label image.
    gt_list : sequence of array_like of int
        One label image per annotator, each of ``pred``'s shape.
    score : {"best_match", "hungarian"}, default "best_match"
        Per-gt-segment score: best IoU over predicted segments (official DynaSeg code) or
        the IoU with the one-to-one Hungarian-matched segment (0 if unmatched).

    Returns
    -------
    dict
        ``"all"``: mean over the segments of all annotators; ``"fine"`` / ``"coarse"``:
        mean over the segments of the annotator with most / fewest segments; ``"mean"``:
        average of those three numbers.

    Examples
    --------
    >>> import numpy as np
    >>> gts = [np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 1]])]
    >>> bsds_protocols(np.array([[3, 3, 4, 4]]), gts)
    {'all': 0.8333333333333334, 'fine': 1.0, 'coarse': 0.5, 'mean': 0.7777777777777778}
    """
    score = look_up_option(score, ("best_match", "hungarian"), what="score")
    lists = bsds_segment_lists(pred, gt_list, score)
    return bsds_from_lists({k: [v] for k, v in lists.items()})


class BSDSAccumulator:
    """Dataset-level BSD500 protocols, segment-weighted like the official script.

    Every gt segment of every image adds one entry to the "all" / "fine" / "coarse" lists;
    :meth:`compute` averages each list and "mean" averages the three results.

    Parameters
    ----------
    score : {"best_match", "hungarian"}, default "best_match"
        See :func:`bsds_protocols`.
    """

    def __init__(self, *, score: str = "best_match") -> None:
        self.score = look_up_option(score, ("best_match", "hungarian"), what="score")
        self.reset()

    def reset(self) -> None:
        """Forget every image added so far."""
        self._lists: dict[str, list[np.ndarray]] = {"all": [], "fine": [], "coarse": []}
        self.n_images = 0

    def update(self, pred: Any, gt_list: Sequence[Any]) -> dict[str, float]:
        """Add one image; returns that image's own :func:`bsds_protocols` dict."""
        lists = bsds_segment_lists(pred, gt_list, self.score)
        for key, vals in lists.items():
            self._lists[key].append(vals)
        self.n_images += 1
        return bsds_from_lists({k: [v] for k, v in lists.items()})

    def compute(self) -> dict[str, float]:
        """Segment-weighted "all", "fine", "coarse" and their average "mean"."""
        if not self.n_images:
            raise ValueError("no images were added; call update(pred, gt_list) first.")
        return bsds_from_lists(self._lists)


def pooled_bsds_protocols(
    pairs: Iterable[tuple[Any, Sequence[Any]]], *, score: str = "best_match"
) -> dict[str, float]:
    """BSD500 protocols over a dataset, segment-weighted (see :class:`BSDSAccumulator`).

    Parameters
    ----------
    pairs : iterable of (pred, gt_list)
        One prediction and its annotators' label images per image.
    score : {"best_match", "hungarian"}, default "best_match"
        See :func:`bsds_protocols`.

    Returns
    -------
    dict
        ``{"all", "fine", "coarse", "mean"}`` -> float.
    """
    acc = BSDSAccumulator(score=score)
    for pred, gts in pairs:
        acc.update(pred, gts)
    return acc.compute()
