"""DynaSeg: losses, weight schedules, silhouette phase, ResNet loading, contract and errors.

All runs use tiny images (<= 32x32), few iterations, one torch thread and a seed.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import physeg
from physeg.families import dynaseg as ds

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

# preset "fast" named: the default preset ("superpixels") returns merged superpixels
FAST = dict(preset="fast", channels=16, max_iter=25, patience=0, scale=1.0, threads=1)


def _two_region(seed: int = 0, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    truth = np.zeros((size, size), np.int64)
    truth[:, size // 2:] = 1
    img = np.where(truth[..., None] == 1, [0.9, 0.2, 0.1], [0.1, 0.3, 0.8])
    img = img + 0.03 * gen.standard_normal(img.shape)
    return np.clip(img, 0, 1).astype(np.float32), truth


# ---------------------------------------------------------------- losses and schedules


def test_similarity_loss_hand_computed():
    from physeg.families.dynaseg._net import similarity_loss

    # 2 classes, 1x2 pixels: logits (0, 0) -> CE = log 2; logits (2, 0) with label 1 ->
    # CE = log(1 + e^2) - 0 = log(e^0 + e^2) - 0.
    resp = torch.tensor([[[[0.0, 2.0]], [[0.0, 0.0]]]])  # (1, q=2, h=1, w=2)
    labels = torch.tensor([[[0, 1]]])
    expected = (math.log(2.0) + math.log(1.0 + math.exp(2.0))) / 2
    assert float(similarity_loss(resp, labels)) == pytest.approx(expected, rel=1e-6)
    # the mask restricts the mean to the second pixel
    mask = torch.tensor([[[False, True]]])
    assert float(similarity_loss(resp, labels, mask)) == pytest.approx(
        math.log(1.0 + math.exp(2.0)), rel=1e-6)


def test_continuity_loss_hand_computed():
    from physeg.families.dynaseg._net import continuity_loss

    # one channel [[0, 1], [2, 4]]: vertical |2-0|, |4-1| -> mean 2.5; horizontal |1-0|,
    # |4-2| -> mean 1.5; total 4.0. A second channel of zeros halves both means: 2.0.
    one = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    assert float(continuity_loss(one)) == pytest.approx(4.0)
    two = torch.cat([one, torch.zeros_like(one)], dim=1)
    assert float(continuity_loss(two)) == pytest.approx(2.0)
    assert float(continuity_loss(torch.ones(1, 3, 5, 4))) == 0.0


def test_mu_schedules():
    from physeg.families.dynaseg._net import mu_schedule

    assert mu_schedule("fsf", 15.0, 5.0)(30) == pytest.approx(2.0)
    assert mu_schedule("fsf", 15.0, 5.0)(3) == pytest.approx(0.2)
    assert mu_schedule("scf", 50.0, 5.0)(10) == pytest.approx(5.0)
    assert mu_schedule("scf", 50.0, 5.0)(100) == pytest.approx(0.5)
    assert mu_schedule("fixed", 50.0, 5.0)(7) == 5.0


def test_weight_follows_label_count():
    img, _ = _two_region()
    for variant, alpha in (("fsf", 15.0), ("scf", 50.0)):
        _, info = ds.segment_dynaseg(img, channel_axis=-1, variant=variant, rng=1,
                                     return_info=True, **FAST)
        q = np.array(info["n_labels"], float)
        expect = q / alpha if variant == "fsf" else alpha / q
        np.testing.assert_allclose(info["mu"], expect)


# ---------------------------------------------------------------- silhouette phase


def test_silhouette_score_hand_computed():
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    s = ds.silhouette_score(x, np.array([0, 0, 1, 1]))
    expected = ((10.5 - 1) / 10.5 + (9.5 - 1) / 9.5) / 2  # symmetric pairs
    assert s == pytest.approx(expected)
    # a singleton cluster scores 0 for its sample
    s1 = ds.silhouette_score(np.array([[0.0], [1.0], [10.0]]), np.array([0, 0, 1]))
    assert s1 == pytest.approx(2 * ((10 - 1) / 10 + (9 - 1) / 9) / 2 / 3)


@pytest.mark.parametrize("k_true", [3, 5])
def test_silhouette_phase_finds_the_number_of_blobs(k_true):
    gen = np.random.default_rng(3)
    centres = np.eye(6)[:k_true] * 5.0
    x = np.concatenate([c + 0.1 * gen.standard_normal((200, 6)) for c in centres])
    k, scores = ds.choose_k_silhouette(x, k_min=3, k_max=8, n_samples=600, rng=0)
    assert k == k_true
    assert max(scores, key=scores.get) == k_true


def test_silhouette_phase_uses_the_shared_kmeans_with_kmeans_plus_plus():
    # the phase's clustering is physeg._kmeans.kmeans (k-means++, 30 Lloyd steps) on the
    # samples drawn first from the same generator
    from physeg._kmeans import kmeans

    gen = np.random.default_rng(0)
    x = np.concatenate([gen.normal(0, 0.1, (50, 2)), gen.normal(3, 0.1, (50, 2))])
    k, scores = ds.choose_k_silhouette(x, k_min=2, k_max=2, n_samples=100, rng=4)
    replay = np.random.default_rng(4)
    sample = x[replay.choice(100, size=100, replace=False)]
    labels, _ = kmeans(sample, 2, init="k-means++", rng=replay, max_iter=30)
    assert k == 2 and scores[2] == pytest.approx(ds.silhouette_score(sample, labels))
    assert scores[2] > 0.9  # two tight blobs


# ---------------------------------------------------------------- the optimisation


def test_label_count_decreases_and_regions_are_found():
    img, truth = _two_region()
    labels, info = ds.segment_dynaseg(img, channel_axis=-1, variant="fixed", mu=5.0,
                                      rng=0, return_info=True, **FAST)
    q = info["n_labels"]
    assert q[0] > q[-1]
    assert np.unique(labels).size == q[-1] or np.unique(labels).size <= q[0]
    # running minimum is non-increasing by construction; the count actually falls a lot
    assert q[-1] <= q[0] // 2
    # the two halves never share a dominant label
    left = np.bincount(labels[truth == 0]).argmax()
    right = np.bincount(labels[truth == 1]).argmax()
    assert left != right


def test_min_labels_stop_rule():
    img, _ = _two_region()
    _, info = ds.segment_dynaseg(img, channel_axis=-1, variant="fixed", mu=5.0,
                                 min_labels=40, rng=0, return_info=True, **FAST)
    assert info["stop_reason"] == "min_labels"
    assert info["n_labels"][-1] <= 40
    assert all(q > 40 for q in info["n_labels"][:-1])


def test_patience_stop_rule():
    img, _ = _two_region()
    _, info = ds.segment_dynaseg(img, channel_axis=-1, rng=0, return_info=True,
                                 **{**FAST, "patience": 2, "max_iter": 200})
    q = info["n_labels"]
    assert info["stop_reason"] == "stable"
    assert min(q[-2:]) >= min(q[:-2])  # no decrease in the last 2 iterations
    assert info["iterations"] < 200


def _border_strips(labels: np.ndarray, width: int = 4, min_length: int = 8) -> list:
    """Connected regions lying entirely within ``width`` px of the image's sides (and at
    least ``min_length`` px large): thin strips along the border."""
    from scipy import ndimage as ndi

    rows, cols = labels.shape
    r, c = np.indices(labels.shape)
    dist = np.minimum.reduce([r, c, rows - 1 - r, cols - 1 - c])
    strips = []
    for v in np.unique(labels):
        comp, n = ndi.label(labels == v)
        for k in range(1, n + 1):
            m = comp == k
            if dist[m].max() < width and m.sum() >= min_length:
                strips.append((int(v), int(m.sum())))
    return strips


@pytest.mark.parametrize("scale", [0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_no_label_strips_along_the_image_border(seed, scale):
    # two halves, no structure along the sides: a zero-padded network saw a dark frame and
    # labelled 1-2 px strips (x 1/scale after upsampling) along every side; reflection
    # padding gives none
    img, truth = _two_region(seed, size=48)
    labels = ds.segment_dynaseg(img, channel_axis=-1, rng=seed, preset="fast", channels=16,
                                max_iter=30, patience=0, scale=scale, threads=1)
    assert _border_strips(truth) == []
    assert _border_strips(labels) == []


def test_network_pads_by_reflection():
    from physeg.families.dynaseg._net import DynaSegCNN

    net = DynaSegCNN(3, 8, 8, n_conv=2)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.padding_mode == "reflect" for m in convs)
    # a constant image gives a constant response: no border effect at all
    net.train()
    out = net(torch.full((1, 3, 12, 12), 0.3)).detach()
    assert torch.allclose(out, out[..., :1, :1].expand_as(out), atol=1e-5)


def test_default_preset_is_superpixels():
    m = physeg.api.get_method("dynaseg")
    assert m.defaults()["preset"] == "superpixels"
    img, _ = _two_region(size=32)
    kw = dict(channel_axis=-1, rng=0, channels=8, max_iter=4, threads=1)
    np.testing.assert_array_equal(ds.segment_dynaseg(img, **kw),
                                  ds.segment_dynaseg(img, preset="superpixels", **kw))


def test_same_seed_same_labels_different_seed_differs():
    img, _ = _two_region()
    a, ia = ds.segment_dynaseg(img, channel_axis=-1, rng=7, return_info=True, **FAST)
    b, ib = ds.segment_dynaseg(img, channel_axis=-1, rng=np.random.default_rng(7),
                               return_info=True, **FAST)
    np.testing.assert_array_equal(a, b)
    assert ia["n_labels"] == ib["n_labels"] and ia["loss"] == ib["loss"]
    _, ic = ds.segment_dynaseg(img, channel_axis=-1, rng=8, return_info=True, **FAST)
    assert ic["loss"] != ia["loss"]


def test_global_torch_rng_untouched():
    img, _ = _two_region()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    ds.segment_dynaseg(img, channel_axis=-1, rng=0, **{**FAST, "max_iter": 2})
    assert torch.equal(before, torch.random.get_rng_state())


def test_reduced_scale_returns_full_size_and_input_untouched():
    img, truth = _two_region(size=32)
    keep = img.copy()
    labels, info = ds.segment_dynaseg(img, channel_axis=-1, rng=0, return_info=True,
                                      **{**FAST, "scale": 0.5, "variant": "fixed"})
    assert labels.shape == (32, 32) and labels.dtype == np.int32
    assert info["train_shape"] == (16, 16)
    np.testing.assert_array_equal(img, keep)
    assert set(np.unique(labels)) == set(range(np.unique(labels).size))


def test_final_full_resolution_pass():
    img, _ = _two_region(size=32)
    labels, info = ds.segment_dynaseg(img, channel_axis=-1, rng=0, return_info=True,
                                      final="full", **{**FAST, "scale": 0.5})
    assert labels.shape == (32, 32) and info["train_shape"] == (16, 16)
    # the returned response is the full-resolution r' whose argmax gave the labels
    resp = info["response"]
    assert resp.shape == (32, 32, FAST["channels"])
    ids = resp.argmax(-1)
    assert all(np.unique(labels[ids == k]).size == 1 for k in np.unique(ids))
    assert np.unique(ids).size == labels.max() + 1
    with pytest.raises(ValueError, match="Unknown value for 'final' 'fulll'"):
        physeg.segment(img, method="dynaseg", channel_axis=-1, final="fulll")


def test_silhouette_floor_in_weight():
    img, _ = _two_region()
    _, info = ds.segment_dynaseg(img, channel_axis=-1, variant="fsf", silhouette=True,
                                 k_min=3, k_max=6, rng=0, return_info=True, **FAST)
    k = info["k_star"]
    assert 3 <= k <= 6 and info["silhouette_scores"]
    q = np.maximum(np.array(info["n_labels"]), k)
    np.testing.assert_allclose(info["mu"], q / 15.0)


def test_grey_and_multichannel_images():
    img, truth = _two_region()
    grey = img.mean(-1)
    lab = ds.segment_dynaseg(grey, rng=0, **FAST)
    assert lab.shape == grey.shape
    five = np.concatenate([img, img[..., :2]], axis=-1)
    lab5 = ds.segment_dynaseg(np.moveaxis(five, -1, 0), channel_axis=0, rng=0, **FAST)
    assert lab5.shape == grey.shape
    # the superpixels preset on grey and 5-channel input (the two halves have the same
    # grey level, so only the 5-channel image must keep them apart)
    for im, ax in ((grey, None), (five, -1)):
        sp = ds.segment_dynaseg(im, channel_axis=ax, rng=0, preset="superpixels",
                                channels=8, threads=1)
        assert sp.shape == grey.shape
    assert not np.isin(sp[truth == 0], sp[truth == 1]).any()


def test_uint8_input_accepted():
    img, _ = _two_region()
    lab = ds.segment_dynaseg((img * 255).astype(np.uint8), channel_axis=-1, rng=0, **FAST)
    assert lab.shape == img.shape[:2]


def test_scribble_mode_follows_scribbles():
    img, truth = _two_region()
    scr = np.full(truth.shape, -1)
    scr[4:20, 3] = 0
    scr[4:20, 20] = 1
    labels, info = ds.segment_dynaseg(img, channel_axis=-1, scribble=scr, variant="fixed",
                                      rng=0, return_info=True, **{**FAST, "max_iter": 40})
    left = np.bincount(labels[truth == 0]).argmax()
    right = np.bincount(labels[truth == 1]).argmax()
    assert left != right
    assert (labels[truth == 0] == left).mean() > 0.9
    assert (labels[truth == 1] == right).mean() > 0.9


def test_split_components_known_answer():
    lab = np.zeros((10, 10), np.int64)
    lab[:, 5:] = 1
    lab[1:4, 1:4] = 1  # a second, disconnected region of cluster 1 (9 px)
    lab[7, 7] = 0  # a 1-pixel island of cluster 0 inside the right half
    reg = ds.split_components(lab)
    assert reg.max() + 1 == 4
    merged = ds.split_components(lab, min_size=5)  # the island joins the right half
    assert merged.max() + 1 == 3
    assert merged[7, 7] == merged[0, 9]
    assert merged[2, 2] != merged[0, 0] and merged[2, 2] != merged[0, 9]
    np.testing.assert_array_equal(np.unique(merged), np.arange(3))


def test_components_option_in_segment():
    img, _ = _two_region()
    lab, info = ds.segment_dynaseg(img, channel_axis=-1, rng=0, components=True, min_size=5,
                                   return_info=True, **FAST)
    sizes = np.bincount(lab.ravel())
    assert sizes.min() >= 5
    assert info["n_clusters"] >= 1


def test_merge_similar_regions_known_answer():
    # three vertical stripes with mean features 0, 3, 20 (one channel)
    reg = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 4, axis=0)
    feat = np.repeat(np.array([[0.0, 0.0, 3.0, 3.0, 20.0, 20.0]]), 4, axis=0)
    np.testing.assert_array_equal(ds.merge_similar_regions(reg, feat, threshold=3.0), reg)
    out = ds.merge_similar_regions(reg, feat, threshold=3.5)  # 0-1 merge (distance 3)
    np.testing.assert_array_equal(out, np.repeat(np.array([[0, 0, 0, 0, 1, 1]]), 4, axis=0))
    # transitive (chain 0-1-2 with steps 3 and 17), and the input is untouched
    before = reg.copy()
    assert ds.merge_similar_regions(reg, feat, threshold=18.0).max() == 0
    np.testing.assert_array_equal(reg, before)
    # two regions of equal colour that do not touch stay apart
    reg2 = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 4, axis=0)
    feat2 = np.repeat(np.array([[5.0, 5.0, 50.0, 50.0, 5.0, 5.0]]), 4, axis=0)
    assert ds.merge_similar_regions(reg2, feat2, threshold=10.0).max() == 2
    # Euclidean distance over channels: (3, 4) apart = 5
    f3 = np.zeros((4, 6, 2))
    f3[:, 2:] = (3.0, 4.0)
    reg3 = np.repeat(np.array([[0, 0, 1, 1, 1, 1]]), 4, axis=0)
    assert ds.merge_similar_regions(reg3, f3, threshold=5.01).max() == 0
    assert ds.merge_similar_regions(reg3, f3, threshold=4.99).max() == 1
    with pytest.raises(ValueError, match="first two axes must match"):
        ds.merge_similar_regions(reg3, f3[:3], threshold=1.0)
    # min_regions: threshold 30 would merge all three stripes; the floor backs off to
    # 30 * 0.2 = 6 (merges only the 0-1 pair, distance 3) for min_regions=2, and to no merge
    # when even that leaves too few
    assert ds.merge_similar_regions(reg, feat, threshold=30.0).max() == 0
    out2 = ds.merge_similar_regions(reg, feat, threshold=30.0, min_regions=2)
    np.testing.assert_array_equal(out2, np.repeat(np.array([[0, 0, 0, 0, 1, 1]]), 4, axis=0))
    np.testing.assert_array_equal(
        ds.merge_similar_regions(reg, feat, threshold=30.0, min_regions=3), reg)


def test_merge_hierarchical_known_answer_no_chaining():
    from physeg.families.dynaseg._merge import merge_hierarchical

    # four equal stripes with means 0, 4, 8, 12: every neighbour pair is 4 apart, so the
    # one-shot cut at 5 chains all four together, while the greedy merge updates the means:
    # (0, 4) -> mean 2 first (ties go to the lowest ids), then (8, 12) -> 10; 2 vs 10 is 8
    # apart, above 5, so two regions remain
    reg = np.repeat(np.array([[0, 0, 1, 1, 2, 2, 3, 3]]), 3, axis=0)
    feat = 4.0 * reg.astype(float)
    before = reg.copy()
    assert ds.merge_similar_regions(reg, feat, threshold=5.0).max() == 0
    out = merge_hierarchical(reg, feat, threshold=5.0)
    np.testing.assert_array_equal(out, np.repeat(np.array([[0, 0, 0, 0, 1, 1, 1, 1]]), 3, 0))
    np.testing.assert_array_equal(reg, before)
    # threshold 8 (inclusive) merges the two halves too; a region-count stop at 3 makes one
    # merge only
    assert merge_hierarchical(reg, feat, threshold=8.0).max() == 0
    np.testing.assert_array_equal(merge_hierarchical(reg, feat, n_regions=3)[0],
                                  [0, 0, 0, 0, 1, 1, 2, 2])
    # the merged mean is size-weighted: stripes of 6, 2 and 2 columns with means 0, 6, 9;
    # (6, 9) merges first (3 apart), then 7.5 vs 0 = 7.5 > 7 stops
    reg2 = np.repeat(np.array([[0] * 6 + [1, 1, 2, 2]]), 2, axis=0)
    feat2 = np.choose(reg2, [0.0, 6.0, 9.0])
    np.testing.assert_array_equal(merge_hierarchical(reg2, feat2, threshold=7.0)[0],
                                  [0] * 6 + [1] * 4)
    # ... whereas (0, 6) would have been 6 apart: with threshold 7.6 all three merge
    assert merge_hierarchical(reg2, feat2, threshold=7.6).max() == 0
    # regions that do not touch never merge
    reg3 = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 2, axis=0)
    feat3 = np.choose(reg3, [5.0, 50.0, 5.0])
    assert merge_hierarchical(reg3, feat3, threshold=10.0).max() == 2


def test_merge_hierarchical_boundary_term():
    from physeg.families.dynaseg._merge import adjacency, coassociation_boundary, merge_hierarchical

    # three stripes of equal colour; the border 1|2 carries an edge of strength 1
    reg = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 4, axis=0)
    feat = np.zeros(reg.shape)
    edge = np.zeros(reg.shape)
    edge[:, 3:5] = 1.0  # the two pixel columns on either side of the 1|2 border
    pairs, length, strength = adjacency(reg, edge)
    np.testing.assert_array_equal(pairs, [[0, 1], [1, 2]])
    np.testing.assert_array_equal(length, [4, 4])
    np.testing.assert_allclose(strength, [0.0, 4.0])  # mean (1 + 1) / 2 per pixel pair
    # cost 0 + w * mean strength: 0 for 0|1, w for 1|2
    np.testing.assert_array_equal(
        merge_hierarchical(reg, feat, edge=edge, edge_weight=2.0, threshold=1.0)[0],
        [0, 0, 0, 0, 1, 1])
    assert merge_hierarchical(reg, feat, edge=edge, edge_weight=0.5, threshold=1.0).max() == 0
    # co-association: two maps agree on a boundary at column 3|4, one adds 1|2
    m1 = np.repeat(np.array([[0, 0, 0, 0, 1, 1]]), 2, axis=0)
    m2 = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 2, axis=0)
    np.testing.assert_allclose(coassociation_boundary([m1, m2])[0],
                               [0.0, 0.5, 0.5, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(coassociation_boundary([m1, m1])[0], [0, 0, 0, 1, 1, 0])
    with pytest.raises(ValueError, match="2D and of one shape"):
        coassociation_boundary([m1[0], m1[0]])
    with pytest.raises(ValueError, match="first two axes must match"):
        merge_hierarchical(reg, feat[:3], threshold=1.0)
    with pytest.raises(ValueError, match="one boundary strength per pixel"):
        merge_hierarchical(reg, feat, edge=edge[:, :3], edge_weight=1.0)
    with pytest.raises(ValueError, match="threshold >= 0"):
        merge_hierarchical(reg, feat, threshold=-1.0)


def test_superpixels_preset_known_image_and_seeded():
    # two flat halves of close colour (L*a*b* distance ~ 3) and a strongly different
    # square; with a small superpixel scale (5) Felzenszwalb over-segments the picture, the
    # colour-only hierarchical merge (edge_weight=0) rejoins it into exactly background +
    # square; a huge edge weight lets the networks' co-association boundary veto every
    # merge between superpixels that the runs separate
    gen = np.random.default_rng(1)
    img = np.empty((48, 48, 3))
    img[:, :24] = (0.40, 0.50, 0.60)
    img[:, 24:] = (0.43, 0.52, 0.62)
    img[16:32, 8:24] = (0.9, 0.1, 0.1)
    img = np.clip(img + 0.01 * gen.standard_normal(img.shape), 0, 1)
    truth = np.zeros((48, 48), np.int64)
    truth[16:32, 8:24] = 1
    from physeg.metrics import matched_miou

    kw = dict(channel_axis=-1, preset="superpixels", channels=16, threads=1, rng=0,
              superpixels=5.0)
    lab, info = ds.segment_dynaseg(img, return_info=True, **kw)
    cfg = info["config"]
    assert (cfg["runs"], cfg["merge_mode"], cfg["edge_weight"], cfg["min_size"]) == (
        2, "hierarchical", 20.0, 20)
    assert ds.PRESETS["superpixels"]["superpixels"] == 200.0
    before = img.copy()
    raw = ds.segment_dynaseg(img, merge=0.0, **kw)  # the superpixels themselves
    assert raw.max() + 1 > 10
    assert np.bincount(raw.ravel()).min() >= 20
    colour = ds.segment_dynaseg(img, edge_weight=0.0, **kw)
    assert colour.max() + 1 == 2
    assert matched_miou(colour, truth) == 1.0
    vetoed = ds.segment_dynaseg(img, edge_weight=1000.0, **kw)
    assert lab.max() <= raw.max()
    assert vetoed.max() >= lab.max() and vetoed.max() > colour.max()
    # same seed -> same labels; the input is untouched
    np.testing.assert_array_equal(lab, ds.segment_dynaseg(img, **kw))
    np.testing.assert_array_equal(img, before)


def test_regions_preset_merges_similar_halves():
    # left and right halves differ slightly in colour (L*a*b* distance ~ 3), a red square
    # differs strongly; the colour merge joins fragments the clusters leave, keeps the square
    gen = np.random.default_rng(1)
    img = np.empty((48, 48, 3))
    img[:, :24] = (0.40, 0.50, 0.60)
    img[:, 24:] = (0.43, 0.52, 0.62)
    img[16:32, 8:24] = (0.9, 0.1, 0.1)
    img = np.clip(img + 0.01 * gen.standard_normal(img.shape), 0, 1)
    truth = np.zeros((48, 48), np.int64)
    truth[16:32, 8:24] = 1
    from physeg.metrics import matched_miou

    kw = dict(channel_axis=-1, preset="regions", channels=32, threads=1, rng=0,
              return_info=True)
    lab, info = ds.segment_dynaseg(img, **kw)
    assert info["config"]["min_labels"] == 16 and info["config"]["components"]
    assert info["config"]["merge"] == 10.0 and info["config"]["min_size"] == 20
    assert info["n_labels"][-1] <= 16 < info["n_labels"][0]
    # explicit arguments win over the preset
    lab0, info0 = ds.segment_dynaseg(img, merge=0.0, **kw)
    assert info0["config"]["merge"] == 0.0
    assert np.bincount(lab0.ravel()).min() >= 20  # min_size absorbs smaller regions
    assert lab.max() + 1 <= 5 < lab0.max() + 1
    assert matched_miou(lab, truth) > max(0.7, matched_miou(lab0, truth))
    sq = np.bincount(lab[truth == 1]).argmax()  # the square's region stays off the halves
    assert (lab == sq).sum() < 2 * (truth == 1).sum()


def test_regions_preset_deterministic():
    img, _ = _two_region(size=32)
    a = ds.segment_dynaseg(img, channel_axis=-1, preset="regions", channels=16, threads=1,
                           rng=3)
    b = ds.segment_dynaseg(img, channel_axis=-1, preset="regions", channels=16, threads=1,
                           rng=3)
    np.testing.assert_array_equal(a, b)


def _official_best_match_all(pred, gts):
    """Transcription of the per-segment loop of DynaSeg's tools/calculate_mIOU.py (mode 1)."""
    scores = []
    p1 = pred.reshape(-1)
    for gt in gts:
        g1 = gt.reshape(-1)
        for label in np.unique(gt):
            idx = np.where(g1 == label)[0]
            plab = p1[idx]
            uniq = np.unique(plab)
            inter = np.array([np.sum(plab == u) for u in uniq])
            union = np.array([len(idx) + np.sum(p1 == u) - np.sum(plab == u) for u in uniq])
            scores.append(np.max(inter / union.astype(float)))
    return scores


def test_benchmark_metric_matches_official_script_and_hand_values():
    # the BSDS scores used by benchmarks/dynaseg_bsds.py, checked against (a) a transcription
    # of the official script on random maps and (b) hand-computed Hungarian values
    from physeg import metrics

    gen = np.random.default_rng(5)
    pred = gen.integers(0, 6, (12, 15))
    gts = [gen.integers(1, 4, (12, 15)), gen.integers(1, 8, (12, 15))]
    off = _official_best_match_all(pred, gts)
    res = metrics.bsds_protocols(pred, gts, score="best_match")
    assert res["all"] == pytest.approx(np.mean(off))
    assert res["coarse"] == pytest.approx(np.mean(off[:3]))  # 3 segments < 7 segments
    assert res["fine"] == pytest.approx(np.mean(off[3:]))
    # hand case: gt halves {1: left 8 px, 2: right 8 px}; pred = left half split in two
    gt = np.array([[1, 1, 2, 2]] * 4)
    pr = np.array([[0, 0, 5, 5]] * 2 + [[1, 1, 5, 5]] * 2)
    h = metrics.bsds_protocols(pr, [gt], score="hungarian")
    assert h["all"] == pytest.approx((0.5 + 1.0) / 2)  # left matched to a 4-px half
    # one cluster for everything: the second gt segment is unmatched and scores 0
    h1 = metrics.bsds_protocols(np.zeros_like(gt), [gt], score="hungarian")
    assert h1["all"] == pytest.approx(0.25)
    bm1 = metrics.bsds_protocols(np.zeros_like(gt), [gt], score="best_match")
    assert bm1["all"] == pytest.approx(0.5)  # many-to-one: both halves get IoU 0.5


# ---------------------------------------------------------------- registry and CLI contract


def test_registered_and_segment_api():
    m = physeg.api.get_method("dynaseg")
    assert m.supports_multichannel and not m.supports_3d
    names = {p.name for p in m.params}
    assert {"variant", "alpha", "mu", "backbone", "max_iter", "min_labels", "scale"} <= names
    img, _ = _two_region()
    lab = physeg.segment(img, method="dynaseg", channel_axis=-1, rng=0, channels="16",
                         max_iter="10", scale="1", threads=1, variant="scf")
    assert lab.shape == img.shape[:2]


def test_module_imports_without_torch():
    code = ("import sys, physeg.families.dynaseg, physeg.api as a; a.methods(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- errors


def test_error_image_too_small():
    with pytest.raises(ValueError, match="too small.*at least 4 pixels per side"):
        ds.segment_dynaseg(np.zeros((6, 6)), scale=0.5)
    with pytest.raises(ValueError, match="resnet18 backbone needs at least 64"):
        ds.segment_dynaseg(np.zeros((40, 80, 3)), channel_axis=-1, backbone="resnet18",
                           scale=1.0)


def test_error_wrong_channels_and_dims():
    with pytest.raises(ValueError, match="needs an RGB .3-channel. or grey image; got 4"):
        ds.segment_dynaseg(np.zeros((40, 40, 4)), channel_axis=-1, backbone="resnet18")
    with pytest.raises(ValueError, match="pass channel_axis=-1"):
        ds.segment_dynaseg(np.zeros((40, 40, 3)))
    with pytest.raises(ValueError, match="2D images"):
        ds.segment_dynaseg(np.zeros((4, 40, 40, 3)), channel_axis=-1)
    with pytest.raises(ValueError, match="must be 2D"):
        physeg.segment(np.zeros((5, 40, 40)), method="dynaseg")


def test_error_nan_and_dtype():
    bad = np.zeros((16, 16))
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        ds.segment_dynaseg(bad)
    with pytest.raises(TypeError, match="expected integers or real floats"):
        ds.segment_dynaseg(np.zeros((16, 16), complex))


@pytest.mark.parametrize("call", ["api", "direct"])
def test_error_bad_options_from_the_schema(call):
    # ranges and choices are declared once, by the registered Param schema, and checked once:
    # by physeg.segment, or by the defaults_from wrapper of a direct call
    img = np.zeros((16, 16))
    for params, message in (
        (dict(variant="fsff"), "Did you mean 'fsf'"),
        (dict(scale=0.0), r"'scale'=0.0 is out of range \[0.01, 1.0\]"),
        (dict(channels=1), r"'channels'=1 is out of range \[2, 512\]"),
        (dict(merge=-1.0), r"'merge'=-1.0 is out of range \[0.0, 1000.0\]"),
        (dict(preset="region"), "Did you mean 'regions'"),
        (dict(merge_mode="hierarchic"), "Did you mean 'hierarchical'"),
        (dict(runs=0), r"'runs'=0 is out of range \[1, 64\]"),
        (dict(superpixels=-5.0), "'superpixels'=-5.0 is out of range"),
        (dict(edge_weight=-1.0), "'edge_weight'=-1.0 is out of range"),
        (dict(threads=0), "'threads'=0 is out of range"),
    ):
        with pytest.raises(ValueError, match=message):
            if call == "api":
                physeg.segment(img, method="dynaseg", **params)
            else:
                ds.segment_dynaseg(img, **params)


def test_schema_gives_the_defaults():
    import inspect

    m = physeg.api.get_method("dynaseg")
    signature = inspect.signature(ds.segment_dynaseg).parameters
    assert {name: signature[name].default for name in m.defaults()} == m.defaults()
    assert signature["k_min"].default == 3  # Python-only parameter, not in the schema


def test_error_rules_between_parameters_and_python_only_ones():
    img = np.zeros((16, 16))
    with pytest.raises(ValueError, match="weights= is only used by backbone='resnet18'"):
        ds.segment_dynaseg(img, weights="x.pth")
    with pytest.raises(ValueError, match="alpha must be > 0 with variant='fsf'"):
        ds.segment_dynaseg(img, alpha=0.0)
    with pytest.raises(ValueError, match="k_max .* must be >= k_min"):
        ds.segment_dynaseg(img, k_min=6, k_max=4)
    with pytest.raises(ValueError, match=r"k_min must be an integer in \[2, 50\]"):
        ds.segment_dynaseg(img, k_min=1)
    with pytest.raises(ValueError, match=r"lr must be a number in \(0, 10\]"):
        ds.segment_dynaseg(img, lr=0.0)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\]"):
        ds.segment_dynaseg(img, momentum=2.0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            ds.segment_dynaseg(img, device="cuda")


# ---------------------------------------------------------------- ResNet-18 + FPN


def _torchvision_like_state_dict(seed: int) -> dict:
    """A state_dict in torchvision's resnet18 format, built from our encoder + an fc head."""
    from physeg.families.dynaseg._resnet import ResNet18Encoder

    torch.manual_seed(seed)
    enc = ResNet18Encoder()
    with torch.no_grad():
        for name, buf in enc.named_buffers():
            if "running" in name:
                buf.uniform_(0.5, 1.5)
    sd = dict(enc.state_dict())
    sd["fc.weight"] = torch.randn(1000, 512)
    sd["fc.bias"] = torch.randn(1000)
    return sd


def test_resnet_encoder_has_torchvision_keys():
    from physeg.families.dynaseg._resnet import ResNet18Encoder

    sd = ResNet18Encoder().state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert "layer3.0.downsample.1.running_var" in sd
    n_params = sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches"
                   not in k)
    assert n_params == 11_176_512  # torchvision resnet18 (11,689,512) minus fc (513,000)


def test_resnet_state_dict_loading(tmp_path):
    from physeg.families.dynaseg._resnet import ResNet18FPN, load_resnet18_state_dict

    sd = _torchvision_like_state_dict(5)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save({"module." + k: v for k, v in sd.items()}, path)  # DataParallel prefix
    model = ResNet18FPN(q=8)
    info = load_resnet18_state_dict(model, path)
    assert info == {"loaded": len(model.encoder.state_dict()), "ignored": 2}
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # wrapped under "state_dict" works too
    torch.save({"state_dict": sd}, tmp_path / "wrapped.pt")
    load_resnet18_state_dict(ResNet18FPN(q=8), tmp_path / "wrapped.pt")


def test_resnet_state_dict_errors(tmp_path):
    from physeg.families.dynaseg._resnet import ResNet18FPN, load_resnet18_state_dict

    model = ResNet18FPN(q=8)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_resnet18_state_dict(model, tmp_path / "none.pth")
    sd = _torchvision_like_state_dict(1)
    bad = dict(sd)
    bad["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    del bad["layer4.1.bn2.weight"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"1 missing keys .*layer4.1.bn2.weight.*1 shape "
                                         r"mismatches .*conv1.weight"):
        load_resnet18_state_dict(model, tmp_path / "bad.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        load_resnet18_state_dict(model, tmp_path / "list.pth")
    torch.save(sd, tmp_path / "resnet18-00000000.pth")
    with pytest.raises(ValueError, match="does not start with the hash"):
        load_resnet18_state_dict(model, tmp_path / "resnet18-00000000.pth")


@pytest.mark.slow
def test_resnet_backbone_segments_with_user_weights(tmp_path):
    sd = _torchvision_like_state_dict(2)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    img, _ = _two_region(size=64)
    grey = img.mean(-1)  # grey is replicated to RGB for the ImageNet encoder
    labels, info = ds.segment_dynaseg(grey, backbone="resnet18", weights=str(path), rng=0,
                                      return_info=True, channels=8, max_iter=3, patience=0,
                                      scale=1.0, threads=1)
    assert labels.shape == (64, 64)
    assert info["iterations"] == 3


def test_merge_hierarchical_size_power_prefers_small_regions():
    from physeg.families.dynaseg._merge import merge_hierarchical

    # two big regions 3 apart and a 1-pixel-wide stripe 20 away from its neighbour
    reg2 = np.repeat(np.array([[0] * 8 + [1] * 8 + [2]]), 2, axis=0)
    feat2 = np.choose(reg2, [0.0, 3.0, 23.0])
    # colour only: the big pair (cost 3) merges before the stripe (cost 20)
    np.testing.assert_array_equal(merge_hierarchical(reg2, feat2, n_regions=2)[0],
                                  [0] * 16 + [1])
    # size_power 1: costs 3 * 8/unit against 20 * 1/unit (unit = 34/100): the stripe goes first
    np.testing.assert_array_equal(
        merge_hierarchical(reg2, feat2, size_power=1.0, n_regions=2)[0], [0] * 8 + [1] * 9)
