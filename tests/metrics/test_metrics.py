"""Known-answer tests for physeg.metrics (overlap, surface distances, unsupervised scores)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from physeg import metrics as M

# ----------------------------------------------------------------------------- helpers


def disc(shape, center, radius):
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, center, strict=True))
    return r2 <= radius**2


def brute_surface(mask):
    """Face-connected inner boundary without scipy: a voxel with a background face-neighbour
    (outside the image counts as background)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = np.ones_like(mask, dtype=bool)
    core = tuple(slice(1, -1) for _ in range(mask.ndim))
    for ax in range(mask.ndim):
        for step in (-1, 1):
            sl = list(core)
            sl[ax] = slice(1 + step, padded.shape[ax] - 1 + step)
            inner &= padded[tuple(sl)]
    return mask & ~inner


def brute_distances(a, b, spacing):
    pa = np.argwhere(brute_surface(a)) * np.asarray(spacing, float)
    pb = np.argwhere(brute_surface(b)) * np.asarray(spacing, float)
    d = cdist(pa, pb)
    return d.min(axis=1), d.min(axis=0)


def random_blob(rng, shape, n_seeds=3, p=0.5):
    """A random, irregular mask: union of a few discs plus pixel noise."""
    m = np.zeros(shape, bool)
    for _ in range(n_seeds):
        c = [rng.integers(0, s) for s in shape]
        m |= disc(shape, c, rng.uniform(1, max(shape) / 3))
    return m ^ (rng.random(shape) < 0.05 * p)


# ----------------------------------------------------------------------------- overlap


@pytest.fixture
def squares():
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True  # 16 px
    b = np.zeros((10, 10), bool)
    b[4:8, 2:6] = True  # 16 px, 8 shared
    return a, b


def test_squares_by_hand(squares):
    a, b = squares
    assert M.dice(a, b) == pytest.approx(2 * 8 / 32)
    assert M.iou(a, b) == pytest.approx(8 / 24)
    assert M.precision(a, b) == pytest.approx(0.5)
    assert M.recall(a, b) == pytest.approx(0.5)
    # 100 px, wrong ones: 8 (a only) + 8 (b only)
    assert M.pixel_accuracy(a, b) == pytest.approx(84 / 100)


def test_precision_recall_asymmetric():
    gt = np.zeros((6, 6), int)
    gt[0:2, 0:3] = 1  # 6 px
    pred = np.zeros((6, 6), int)
    pred[0:3, 0:3] = 1  # 9 px, contains gt
    assert M.precision(pred, gt) == pytest.approx(6 / 9)
    assert M.recall(pred, gt) == pytest.approx(1.0)
    assert M.dice(pred, gt) == pytest.approx(12 / 15)


def test_multiclass_per_label_and_mean():
    gt = np.array([[0, 1, 1, 1], [2, 2, 0, 0], [3, 3, 3, 3]])
    pred = np.array([[0, 1, 1, 0], [2, 2, 2, 0], [3, 3, 0, 0]])
    d = M.dice(pred, gt, average="none")
    assert list(d) == [1, 2, 3]
    assert d[1] == pytest.approx(2 * 2 / 5)
    assert d[2] == pytest.approx(2 * 2 / 5)
    assert d[3] == pytest.approx(2 * 2 / 6)
    assert M.dice(pred, gt) == pytest.approx(np.mean(list(d.values())))
    # with the background: gt 0 = {(0,0),(1,2),(1,3)}, pred 0 = {(0,0),(0,3),(1,3),(2,2),(2,3)}
    d0 = M.dice(pred, gt, include_background=True, average="none")
    assert d0[0] == pytest.approx(2 * 2 / 8)
    # labels subset and a label absent from both (both empty -> 1)
    assert M.iou(pred, gt, labels=[3, 7], average="none") == {3: pytest.approx(2 / 4), 7: 1.0}
    # "binary": foreground vs foreground
    fg_p, fg_g = pred > 0, gt > 0
    assert M.dice(pred, gt, average="binary") == pytest.approx(M.dice(fg_p, fg_g))
    assert M.dice(fg_p, fg_g) == pytest.approx(2 * 6 / (7 + 9))


@pytest.mark.parametrize("n_labels", [3, 25, 300])
def test_overlap_count_paths_agree_with_formula(n_labels):
    # <= 16 labels: boolean passes; more: joint histogram (dense, or sparse for 300 labels
    # on a small image)
    rng = np.random.default_rng(n_labels)
    gt = rng.integers(0, n_labels, (30, 20))
    pred = np.where(rng.random((30, 20)) < 0.4, rng.integers(0, n_labels, (30, 20)), gt)
    d = M.dice(pred, gt, average="none")
    j = M.iou(pred, gt, average="none")
    pr = M.precision(pred, gt, average="none")
    for lab in d:
        a, b = pred == lab, gt == lab
        inter = np.count_nonzero(a & b)
        assert d[lab] == pytest.approx(2 * inter / (a.sum() + b.sum()))
        assert j[lab] == pytest.approx(inter / np.count_nonzero(a | b))
        assert pr[lab] == pytest.approx(inter / a.sum() if a.any() else 0.0)
    assert set(d) == set(np.union1d(pred, gt).tolist()) - {0}


def test_pixel_accuracy_modes():
    gt = np.array([[0, 1, 1, 2]])
    pred = np.array([[0, 1, 2, 2]])
    assert M.pixel_accuracy(pred, gt) == 0.75
    assert M.pixel_accuracy(pred, gt, average="binary") == 1.0
    assert M.pixel_accuracy(pred, gt, average="none") == {1: 0.5, 2: 1.0}


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int32, np.int64, np.uint16, np.float32])
def test_dtypes_give_same_answer(squares, dtype):
    a, b = squares
    assert M.dice(a.astype(dtype), b.astype(dtype)) == pytest.approx(0.5)
    assert M.hausdorff(a.astype(dtype), b.astype(dtype)) == pytest.approx(2.0)


def test_large_label_values_use_sparse_path():
    gt = np.zeros((8, 8), np.int64)
    gt[:4] = 10**9
    pred = gt.copy()
    pred[0, 0] = 0
    assert M.dice(pred, gt, average="none") == {10**9: pytest.approx(2 * 31 / 63)}
    assert M.matched_miou(pred * 3 + 5, gt) == pytest.approx(np.mean([31 / 32, 32 / 33]))


def test_inputs_not_modified(squares):
    a, b = squares
    a8, b8 = a.astype(np.uint8), b.astype(np.uint8)
    ca, cb = a8.copy(), b8.copy()
    M.evaluate(a8, b8, metrics=list(M.METRICS))
    np.testing.assert_array_equal(a8, ca)
    np.testing.assert_array_equal(b8, cb)


# ----------------------------------------------------------------------------- empty masks


def test_empty_both():
    z = np.zeros((5, 5), int)
    for f in (M.dice, M.iou, M.precision, M.recall, M.boundary_f1):
        assert f(z, z) == 1.0
    for f in (M.hausdorff, M.hausdorff95, M.average_surface_distance):
        assert math.isnan(f(z, z))
        assert f(z, z, empty="inf") == 0.0
        assert f(z, z, empty=99.0) == 0.0
    assert M.pixel_accuracy(z, z) == 1.0


def test_empty_one_side():
    z = np.zeros((5, 5), int)
    m = z.copy()
    m[1:3, 1:3] = 1
    assert M.dice(z, m) == 0.0 and M.dice(m, z) == 0.0
    assert M.iou(z, m) == 0.0
    assert M.precision(z, m) == 0.0  # nothing predicted, object missed
    assert M.recall(m, z) == 0.0  # nothing to find, false positives
    assert M.precision(m, z) == 0.0 and M.recall(z, m) == 0.0
    assert M.boundary_f1(z, m) == 0.0
    for f in (M.hausdorff, M.hausdorff95, M.average_surface_distance):
        assert math.isnan(f(z, m)) and math.isnan(f(m, z))
        assert f(z, m, empty="inf") == math.inf
        assert f(m, z, empty=42) == 42.0


def test_missing_class_nan_skipped_in_mean_but_visible_per_label():
    gt = np.zeros((20, 20), int)
    gt[2:6, 2:6] = 1
    gt[10:15, 10:15] = 2
    pred = np.zeros_like(gt)
    pred[2:6, 3:7] = 1  # class 1 shifted by 1, class 2 missed
    per = M.hausdorff(pred, gt, average="none")
    assert per[1] == pytest.approx(1.0) and math.isnan(per[2])
    assert M.hausdorff(pred, gt) == pytest.approx(1.0)  # documented NaN-skipping mean
    assert M.hausdorff(pred, gt, empty="inf") == math.inf


# ----------------------------------------------------------------------------- surface distances


def test_translated_discs_hausdorff_equals_shift():
    a = disc((100, 100), (50, 50), 20)
    for shift, axis in [(7, 0), (4, 1), (11, 0)]:
        b = np.roll(a, shift, axis=axis)
        assert M.hausdorff(a, b) == pytest.approx(shift, abs=1e-9)
        assert M.hausdorff(b, a) == pytest.approx(shift, abs=1e-9)
    # diagonal shift (3, 4): |t| = 5
    b = np.roll(np.roll(a, 3, axis=0), 4, axis=1)
    assert M.hausdorff(a, b) == pytest.approx(5.0, abs=0.5)


@pytest.mark.parametrize("r,d", [(15, 3), (20, 5), (10, 8)])
def test_concentric_discs_assd_and_hd_equal_gap(r, d):
    a = disc((80, 80), (40, 40), r)
    b = disc((80, 80), (40, 40), r + d)
    assert M.hausdorff(a, b) == pytest.approx(d, abs=1.0)
    assert M.hausdorff95(a, b) == pytest.approx(d, abs=1.0)
    assert M.hausdorff95(a, b, method="pooled") == pytest.approx(d, abs=1.0)
    assert M.average_surface_distance(a, b) == pytest.approx(d, abs=1.0)
    assert M.average_surface_distance(a, b, method="mean") == pytest.approx(d, abs=1.0)


def test_concentric_spheres_3d():
    a = disc((48, 48, 48), (24, 24, 24), 10)
    b = disc((48, 48, 48), (24, 24, 24), 14)
    assert M.hausdorff(a, b) == pytest.approx(4, abs=1.0)
    assert M.average_surface_distance(a, b) == pytest.approx(4, abs=1.0)
    assert M.dice(a, b) == pytest.approx(2 * a.sum() / (a.sum() + b.sum()))


def test_anisotropic_spacing_plane_shift():
    a = np.zeros((10, 6, 7), bool)
    a[4] = True  # a one-voxel-thick plane: all of it is surface
    b = np.zeros_like(a)
    b[5] = True
    for f in (M.hausdorff, M.hausdorff95, M.average_surface_distance):
        assert f(a, b) == pytest.approx(1.0)
        assert f(a, b, spacing=(2, 1, 1)) == pytest.approx(2.0)
        assert f(a, b, spacing=(2.5, 3, 7)) == pytest.approx(2.5)
        assert f(a, b, spacing=2) == pytest.approx(2.0)
    # shift along the last axis instead: spacing on the first axis no longer matters
    c = np.zeros((5, 6, 12), bool)
    c[:, :, 3] = True
    e = np.zeros_like(c)
    e[:, :, 6] = True
    assert M.hausdorff(c, e, spacing=(9, 1, 0.5)) == pytest.approx(1.5)
    # tolerance is in spacing units
    assert M.boundary_f1(a, b, tolerance=1.5) == 1.0
    assert M.boundary_f1(a, b, tolerance=1.5, spacing=(2, 1, 1)) == 0.0


def test_hd95_methods_differ_as_documented():
    # a 4x4 square and the same square plus a far outlier pixel: the outlier is 1 of 13
    # surface pixels of the prediction (> 5 %), so the directed 95th percentile sees it
    # (0.4 of the way to it by linear interpolation); pooled with gt's 12 it is 1 of 25 (< 5 %)
    gt = np.zeros((40, 40), bool)
    gt[5:9, 5:9] = True
    pred = gt.copy()
    pred[35, 35] = True
    hd = M.hausdorff(pred, gt)
    assert hd == pytest.approx(math.hypot(27, 27))
    assert M.hausdorff95(pred, gt) == pytest.approx(0.4 * hd)
    assert M.hausdorff95(pred, gt, method="pooled") == 0.0
    d1, d2 = brute_distances(pred, gt, (1, 1))
    directed = max(np.percentile(d1, 95), np.percentile(d2, 95))
    assert M.hausdorff95(pred, gt) == pytest.approx(directed)
    assert M.hausdorff95(pred, gt, method="pooled") == pytest.approx(
        np.percentile(np.concatenate([d1, d2]), 95)
    )
    assert M.hausdorff95(pred, gt, method="pooled") < M.hausdorff95(pred, gt) < hd


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ndim", [2, 3])
def test_against_brute_force(seed, ndim):
    rng = np.random.default_rng(seed)
    shape = (17, 13) if ndim == 2 else (7, 9, 8)
    spacing = tuple(rng.uniform(0.5, 3.0, ndim))
    a = random_blob(rng, shape)
    b = random_blob(rng, shape)
    d1, d2 = brute_distances(a, b, spacing)
    kw = {"spacing": spacing}
    assert M.hausdorff(a, b, **kw) == pytest.approx(max(d1.max(), d2.max()), rel=1e-12)
    assert M.hausdorff95(a, b, **kw) == pytest.approx(
        max(np.percentile(d1, 95), np.percentile(d2, 95)), rel=1e-12
    )
    assert M.hausdorff95(a, b, method="pooled", **kw) == pytest.approx(
        np.percentile(np.concatenate([d1, d2]), 95), rel=1e-12
    )
    assert M.average_surface_distance(a, b, **kw) == pytest.approx(
        np.concatenate([d1, d2]).mean(), rel=1e-12
    )
    assert M.average_surface_distance(a, b, method="mean", **kw) == pytest.approx(
        (d1.mean() + d2.mean()) / 2, rel=1e-12
    )
    tol = 1.7
    pb, rb = np.mean(d1 <= tol), np.mean(d2 <= tol)
    f1 = 0.0 if pb + rb == 0 else 2 * pb * rb / (pb + rb)
    assert M.boundary_f1(a, b, tolerance=tol, **kw) == pytest.approx(f1, rel=1e-12)
    inter = np.count_nonzero(a & b)
    assert M.dice(a, b) == pytest.approx(2 * inter / (a.sum() + b.sum()))
    assert M.iou(a, b) == pytest.approx(inter / np.count_nonzero(a | b))


def test_multilabel_surface_matches_per_label_binary():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 4, (12, 12))
    pred = rng.integers(0, 4, (12, 12))
    per = M.average_surface_distance(pred, gt, average="none", include_background=True)
    assert list(per) == [0, 1, 2, 3]
    for lab, v in per.items():
        d1, d2 = brute_distances(pred == lab, gt == lab, (1, 1))
        assert v == pytest.approx(np.concatenate([d1, d2]).mean(), rel=1e-12)


def test_many_labels_bounding_box_path_matches_brute_force():
    # > 3 labels uses per-label bounding boxes (find_objects); labels touch the border,
    # include the background, and one listed label (50) is absent from both images
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 7, (9, 11))
    pred = np.where(rng.random((9, 11)) < 0.3, rng.integers(0, 7, (9, 11)), gt)
    labs = [0, 1, 2, 3, 4, 5, 6, 50]
    spacing = (1.5, 0.7)
    hd = M.hausdorff(pred, gt, labels=labs, average="none", spacing=spacing)
    bf = M.boundary_f1(pred, gt, labels=labs, average="none", spacing=spacing)
    for lab in labs[:-1]:
        d1, d2 = brute_distances(pred == lab, gt == lab, spacing)
        assert hd[lab] == pytest.approx(max(d1.max(), d2.max()), rel=1e-12)
        p_b, r_b = np.mean(d1 <= 2), np.mean(d2 <= 2)
        assert bf[lab] == pytest.approx(2 * p_b * r_b / (p_b + r_b), rel=1e-12)
    assert math.isnan(hd[50]) and bf[50] == 1.0


def test_cropping_is_exact_and_border_voxels_are_surface():
    rng = np.random.default_rng(7)
    a = random_blob(rng, (20, 20))
    b = random_blob(rng, (20, 20))
    # the same pair embedded in a larger canvas (away from the border) ...
    big_a = np.zeros((90, 70), bool)
    big_b = np.zeros((90, 70), bool)
    big_a[30:50, 25:45] = a
    big_b[30:50, 25:45] = b
    # ... differs from the original only through the image-border voxels, so compare each
    # with its own brute force (no cropping there)
    for x, y in [(a, b), (big_a, big_b)]:
        d1, d2 = brute_distances(x, y, (1, 1))
        assert M.hausdorff95(x, y) == pytest.approx(
            max(np.percentile(d1, 95), np.percentile(d2, 95)), rel=1e-12
        )
    # a mask filling the whole image has its image-border ring as surface
    full = np.ones((6, 6), bool)
    inner = np.zeros((6, 6), bool)
    inner[2:4, 2:4] = True
    assert M.hausdorff(full, inner) == pytest.approx(math.sqrt(8))  # corner (0, 0) to (2, 2)


def test_against_skimage_hausdorff():
    skm = pytest.importorskip("skimage.metrics")
    seg = pytest.importorskip("skimage.segmentation")
    rng = np.random.default_rng(11)
    for _ in range(4):
        a = np.zeros((60, 60), bool)
        b = np.zeros((60, 60), bool)
        a[5:55, 5:55] = random_blob(rng, (50, 50))
        b[5:55, 5:55] = random_blob(rng, (50, 50))
        # away from the image border, skimage's inner boundaries (connectivity 1) are our
        # surfaces
        ref = skm.hausdorff_distance(
            seg.find_boundaries(a, mode="inner", connectivity=1),
            seg.find_boundaries(b, mode="inner", connectivity=1),
        )
        assert M.hausdorff(a, b) == pytest.approx(ref, rel=1e-12)


def test_boundary_f1_by_hand():
    a = np.zeros((12, 12), int)
    a[2:8, 2:8] = 1
    b = np.roll(a, 3, axis=0)
    # 20 boundary pixels each; with tolerance 2, 14 of them are hits in each direction
    assert M.boundary_f1(a, b) == pytest.approx(0.7)
    assert M.boundary_f1(a, b, tolerance=3) == 1.0
    # exact boundary voxels only: the 3 shared rows of the two side columns -> 6 of 20
    assert M.boundary_f1(a, b, tolerance=0) == pytest.approx(0.3)
    assert M.boundary_f1(a, a, tolerance=0) == 1.0


# ----------------------------------------------------------------------------- unsupervised


def test_hungarian_permuted_labels_is_perfect():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (30, 40))
    perm = np.array([13, 2, 7, 0, 99])
    pred = perm[gt]
    assert M.hungarian_match(pred, gt) == {0: 3, 2: 1, 7: 2, 13: 0, 99: 4}
    assert M.matched_miou(pred, gt) == 1.0
    assert M.matched_accuracy(pred, gt) == 1.0
    assert M.best_match_iou(pred, gt) == 1.0


def test_hungarian_more_and_fewer_clusters():
    gt = np.array([[0, 0, 0, 0, 1, 1, 1, 1]])
    # three clusters for two classes: cluster 5 splits class 0
    pred = np.array([[5, 5, 6, 6, 8, 8, 8, 8]])
    res = M.matched_scores(pred, gt)
    assert res["mapping"][8] == 1
    assert [res["mapping"].get(c) for c in (5, 6)].count(0) == 1  # tie: either half
    assert res["per_class_iou"] == {0: 0.5, 1: 1.0}
    assert res["miou"] == 0.75 and res["accuracy"] == 6 / 8
    # one cluster for two classes: one class stays unmatched -> IoU 0
    res = M.matched_scores(np.zeros_like(gt), gt)
    assert sorted(res["per_class_iou"].values()) == [0.0, 0.5]
    assert res["miou"] == 0.25 and res["accuracy"] == 0.5
    # best-match is many-to-one: the single cluster serves both classes
    assert M.best_match_iou(np.zeros_like(gt), gt) == 0.5


def test_ignore_index():
    gt = np.array([[0, 0, 1, 1, 255, 255]])
    pred = np.array([[4, 4, 3, 3, 4, 3]])
    assert M.matched_miou(pred, gt, ignore_index=255) == 1.0
    assert M.matched_miou(pred, gt) < 1.0
    with pytest.raises(ValueError, match="ignore_index"):
        M.matched_miou(pred, np.full_like(gt, 255), ignore_index=255)


def test_pooled_vs_per_image_matching():
    gt1 = np.array([[0, 0, 1, 1]])
    gt2 = np.array([[0, 0, 1, 1]])
    p1 = gt1.copy()  # identity
    p2 = 1 - gt2  # swapped ids: perfect per image, wrong under one global matching
    assert M.matched_miou(p1, gt1) == 1.0 and M.matched_miou(p2, gt2) == 1.0
    pooled = M.pooled_matched_scores([(p1, gt1), (p2, gt2)])
    # pooled confusion [[2, 2], [2, 2]]: any matching gives IoU 2 / 6 per class
    assert pooled["miou"] == pytest.approx(1 / 3)
    assert pooled["accuracy"] == pytest.approx(0.5)
    acc = M.MatchedScores()
    acc.update(p1, gt1)
    acc.update(p1, gt1)
    assert acc.n_images == 2 and acc.compute()["miou"] == 1.0
    acc.reset()
    with pytest.raises(ValueError, match="no images"):
        acc.compute()


def test_best_match_by_hand():
    gt = np.array([[1, 1, 1, 1, 2, 2, 3, 3]])
    pred = np.array([[0, 0, 0, 5, 5, 5, 5, 5]])
    # seg 1 (4 px): vs 0 -> 3/4, vs 5 -> 1/8; seg 2: vs 5 -> 2/5; seg 3: vs 5 -> 2/5
    per = M.best_match_iou(pred, gt, average="none")
    assert per == {1: pytest.approx(0.75), 2: pytest.approx(0.4), 3: pytest.approx(0.4)}
    assert M.best_match_iou(pred, gt) == pytest.approx((0.75 + 0.4 + 0.4) / 3)


@pytest.fixture
def three_annotators():
    pred = np.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    g1 = np.array([[1, 1, 1, 1, 2, 2, 2, 2]])  # 2 segments: IoUs 1, 1
    g2 = np.array([[1, 1, 2, 2, 3, 3, 4, 4]])  # 4 segments (fine): IoUs .5 each
    g3 = np.array([[1, 1, 1, 1, 1, 1, 1, 1]])  # 1 segment (coarse): IoU .5
    return pred, [g1, g2, g3]


def test_bsds_protocols_three_annotators(three_annotators):
    pred, gts = three_annotators
    res = M.bsds_protocols(pred, gts)
    assert res["all"] == pytest.approx((1 + 1 + 4 * 0.5 + 0.5) / 7)
    assert res["fine"] == pytest.approx(0.5)
    assert res["coarse"] == pytest.approx(0.5)
    assert res["mean"] == pytest.approx((res["all"] + 0.5 + 0.5) / 3)
    # a (K, H, W) stack works like a list
    assert M.bsds_protocols(pred, np.stack(gts)) == res
    # hungarian: g2 has 4 classes and 2 clusters -> two classes at 0.5, two at 0
    h = M.bsds_protocols(pred, gts, score="hungarian")
    assert h["fine"] == pytest.approx(0.25)
    assert h["coarse"] == pytest.approx(0.5)


def test_bsds_ties_pick_first_annotator():
    pred = np.array([[1, 1, 2, 2]])
    g1 = np.array([[1, 1, 2, 2]])  # 2 segments, IoU 1
    g2 = np.array([[1, 2, 2, 2]])  # 2 segments too
    res = M.bsds_protocols(pred, [g1, g2])
    assert res["fine"] == 1.0 and res["coarse"] == 1.0


def test_bsds_pooled_is_segment_weighted(three_annotators):
    pred, gts = three_annotators
    pred2 = np.array([[1, 1, 1, 1, 1, 1, 1, 1]])
    gts2 = [np.array([[1, 1, 1, 1, 1, 1, 1, 1]])]  # one segment, IoU 1
    pooled = M.pooled_bsds_protocols([(pred, gts), (pred2, gts2)])
    assert pooled["all"] == pytest.approx((1 + 1 + 4 * 0.5 + 0.5 + 1) / 8)
    assert pooled["fine"] == pytest.approx((4 * 0.5 + 1) / 5)
    assert pooled["coarse"] == pytest.approx((0.5 + 1) / 2)
    acc = M.BSDSAccumulator()
    first = acc.update(pred, gts)
    assert first == M.bsds_protocols(pred, gts)
    acc.update(pred2, gts2)
    assert acc.compute() == pooled


@pytest.mark.data
def test_bsds_real_annotators(shared_data):
    """One real BSDS500 image: every annotator scored against another's map."""
    iio = pytest.importorskip("imageio.v3")
    masks = sorted((shared_data / "bsds500" / "masks").glob("*_1.png"))
    if not masks:
        pytest.skip("no BSDS500 masks")
    stem = masks[0].name[: -len("_1.png")]
    files = sorted((shared_data / "bsds500" / "masks").glob(f"{stem}_*.png"))
    gts = [iio.imread(f) for f in files]
    res = M.bsds_protocols(gts[0], gts)
    assert 0 < res["coarse"] <= 1 and 0 < res["fine"] <= 1
    assert res["mean"] == pytest.approx((res["all"] + res["fine"] + res["coarse"]) / 3)
    ones = {"all": 1.0, "fine": 1.0, "coarse": 1.0, "mean": 1.0}
    assert M.bsds_protocols(gts[0], gts[:1]) == ones


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_defaults_and_names(squares):
    a, b = squares
    res = M.evaluate(a, b)
    assert list(res) == list(M.DEFAULT_METRICS)
    assert res["dice"] == pytest.approx(0.5)
    assert res["hausdorff95"] == pytest.approx(2.0)
    res = M.evaluate(a, b, metrics="dice, hd, assd,jaccard,miou")
    assert list(res) == ["dice", "hausdorff", "average_surface_distance", "iou", "matched_miou"]
    res = M.evaluate(a, b, metrics=["bf1"], tolerance=2)
    assert res == {"boundary_f1": 1.0}


def test_evaluate_passes_spacing_and_options():
    a = np.zeros((6, 5, 5), bool)
    a[2] = True
    b = np.zeros_like(a)
    b[3] = True
    assert M.evaluate(a, b, ["hd"], spacing=(3, 1, 1)) == {"hausdorff": 3.0}
    z = np.zeros_like(a)
    assert M.evaluate(z, b, ["hd", "dice"], empty="inf") == {"hausdorff": math.inf, "dice": 0.0}
    per = M.evaluate(a * 2, b * 2, ["dice"], average="none")
    assert per == {"dice": {2: 0.0}}
    # metrics without a binary mode (best_match_iou) still run under average="binary"
    res = M.evaluate(a * 2, a * 3, ["dice", "best_match_iou", "matched_miou"], average="binary")
    assert res == {"dice": 1.0, "best_match_iou": 1.0, "matched_miou": 1.0}


def test_evaluate_errors(squares):
    a, b = squares
    with pytest.raises(ValueError, match="Did you mean 'dice'"):
        M.evaluate(a, b, metrics="dcie")
    with pytest.raises(TypeError, match="not accepted by any"):
        M.evaluate(a, b, metrics="dice", tolerance=3)
    with pytest.raises(ValueError, match="no metric"):
        M.evaluate(a, b, metrics="")


def test_registry_functions_all_run(squares):
    a, b = squares
    for name, func in M.METRICS.items():
        val = func(a, b)
        assert isinstance(val, float), name
        assert M.resolve_metric(name) == name
    for alias, name in M.ALIASES.items():
        assert M.resolve_metric(alias.upper()) == name


# ----------------------------------------------------------------------------- validation


def test_shape_mismatch_message():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\).*belong to this image"):
        M.dice(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="belong to this image"):
        M.bsds_protocols(np.zeros((4, 5), int), [np.zeros((4, 5), int), np.zeros((5, 4), int)])


def test_bad_values():
    good = np.zeros((4, 4), int)
    nan = np.zeros((4, 4))
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.dice(nan, good)
    with pytest.raises(TypeError, match="non-integer.*threshold"):
        M.iou(good, np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="negative labels"):
        M.dice(good - 1, good)
    with pytest.raises(TypeError, match="integer labels"):
        M.dice(good.astype(complex), good)
    with pytest.raises(TypeError, match="None"):
        M.dice(None, good)
    with pytest.raises(ValueError, match="empty"):
        M.dice(np.zeros((0, 3)), np.zeros((0, 3)))


def test_bad_options(squares):
    a, b = squares
    with pytest.raises(ValueError, match="Did you mean 'mean'"):
        M.dice(a, b, average="maen")
    with pytest.raises(ValueError, match="spacing has 3 values"):
        M.hausdorff(a, b, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="> 0"):
        M.hausdorff(a, b, spacing=(1, 0))
    with pytest.raises(ValueError, match="empty policy"):
        M.hausdorff(a, b, empty="zero")
    with pytest.raises(ValueError, match="hausdorff95 method"):
        M.hausdorff95(a, b, method="medpy")
    with pytest.raises(ValueError, match="tolerance"):
        M.boundary_f1(a, b, tolerance=-1)
    with pytest.raises(ValueError, match="non-negative"):
        M.dice(a, b, labels=[-1])
    with pytest.raises(ValueError, match="gt_list is empty"):
        M.bsds_protocols(a, [])


# ----------------------------------------------------------------------------- housekeeping


def test_docstring_examples_run():
    import doctest

    from physeg.metrics import _matching, _overlap, _surface

    attempted = 0
    for module in (M, _overlap, _surface, _matching):
        res = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0, module.__name__
        attempted += res.attempted
    assert attempted > 10


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, physeg.metrics; "
        "print(any(m == 'scipy' or m.startswith('scipy.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
