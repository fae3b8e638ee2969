"""Private scores for unsupervised label images (cluster ids that carry no class meaning).

Used by :mod:`physeg.metrics`; see its module docstring for the protocols.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ._overlap import check_label_image, check_pair, confusion_counts


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
