"""The one scoring rule (physeg.metrics.score_labels) shared by ``evaluate`` and ``bench``."""

from __future__ import annotations

import numpy as np
import pytest

from physeg import metrics as M


def _square(size: int = 10) -> np.ndarray:
    gt = np.zeros((size, size), np.uint8)
    gt[2:6, 2:6] = 1  # 16 pixels
    return gt


def test_plain_rule_is_label_1_vs_mask_foreground():
    gt = _square()
    pred = gt.copy()
    pred[7:9, 7:9] = 2  # a second predicted label is not the object
    out = M.score_labels(pred, gt, "dice,iou")
    assert out["scores"] == {"dice": 1.0, "iou": 1.0}
    assert out["average"] == "binary" and out["binary"]
    assert out["rule"] == "scored: label 1 vs mask>0"
    # the object is label 1: a prediction calling the background 1 scores what it gets
    inv = M.score_labels(1 - gt, gt, "dice")
    assert inv["scores"]["dice"] == 0.0
    assert inv["inverted_dice"] == 1.0 and inv["object_dice"] == 0.0
    # a truth stored as 0/255 is the same mask; a 0/255 prediction has 255 as its object
    assert M.score_labels(pred, gt * 255, "dice")["scores"]["dice"] == 1.0
    assert M.score_labels(gt * 255, gt, "dice")["scores"]["dice"] == 1.0


def test_match_rule_maps_labels_first():
    gt = _square()
    out = M.score_labels(1 - gt, gt, "dice", match=True)
    assert out["scores"]["dice"] == 1.0
    assert out["rule"] == "scored: Hungarian-matched labels"
    assert out["inverted_dice"] is None
    # cluster ids 7 / 3: only matching gives them a meaning
    pred = np.where(gt == 1, 7, 3)
    assert M.score_labels(pred, gt, "dice")["scores"]["dice"] == 0.0
    assert M.score_labels(pred, gt, "dice", match=True)["scores"]["dice"] == 1.0


def test_multilabel_truth_label_by_label_and_annotator_mean():
    gt = np.zeros((8, 8), np.int64)
    gt[:, 4:] = 1
    gt[4:, :4] = 2
    swapped = np.choose(gt, [0, 2, 1])
    plain = M.score_labels(swapped, gt, "dice")
    assert plain["average"] == "mean" and not plain["binary"]
    assert plain["rule"].startswith("scored: labels as they are")
    assert plain["scores"]["dice"] == pytest.approx(0.0)
    assert M.score_labels(swapped, gt, "dice", match=True)["scores"]["dice"] == 1.0
    # two annotators: the mean over them
    both = M.score_labels(gt, [gt, swapped], "dice")
    assert both["scores"]["dice"] == pytest.approx(0.5)


def test_scored_view_and_explicit_average():
    gt = _square()
    pred = gt * 2  # object labelled 2: plain picks it (only non-zero value)
    p, g, avg = M.scored_view(pred, gt)
    assert avg == "binary" and p.max() == 1 and (p == g).all()
    p, g, avg = M.scored_view(pred, gt, average="mean")
    assert avg == "mean" and p.max() == 2
    assert M.score_labels(pred, gt, "dice", average="binary")["rule"] == \
        "scored: label > 0 vs mask > 0"
    with pytest.raises(ValueError, match="average must be auto, binary or mean"):
        M.scored_view(pred, gt, average="none")


def test_score_labels_equals_evaluate_on_what_it_scores():
    rng = np.random.default_rng(0)
    gt = _square(16)
    pred = (rng.random((16, 16)) < 0.3).astype(np.uint8)
    names = ["dice", "iou", "precision", "recall", "hausdorff95"]
    direct = M.evaluate(pred, gt, names, average="binary")
    assert M.score_labels(pred, gt, names)["scores"] == direct


def test_inversion_hint_rule():
    assert M.inversion_hint(0.1, 0.9)
    assert not M.inversion_hint(0.5, 0.65)  # not a clear margin
    assert not M.inversion_hint(0.1, 0.45)  # inverse not good either
    assert not M.inversion_hint(0.1, None)
    assert M.inversion_hint(float("nan"), 0.8)
