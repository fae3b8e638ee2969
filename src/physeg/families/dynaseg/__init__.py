"""DynaSeg: unsupervised per-image CNN segmentation with a dynamically weighted loss.

A small network is trained from scratch on the one image being segmented (Kim, Kanezaki &
Tanaka, TIP 2020): its argmax labels are the targets of its own cross-entropy, and an L1
continuity term on the response makes neighbouring pixels agree. DynaSeg (Guermazi,
Ksantini & Khan, IVC 2024) replaces the fixed balance ``mu`` between the two terms by a
function of the current number of clusters ``q'`` and adds a silhouette phase that picks a
floor for the number of clusters.

Registered as ``dynaseg`` (``physeg segment --method dynaseg``); torch is imported only
when the method runs.

Choices made where the paper and the codes leave room (see ``specs/dynaseg.md``):

* **Three presets.** ``preset="published"`` is the recipe that produced the paper's BSD500
  numbers (official ``DynaSeg_SCF_BSD_VOC.py`` = TIP defaults): ``M = 2`` components,
  ``p = q = 100``, full resolution, ``T = 1000``, stop at ``q' <= 3``, SGD lr 0.1, momentum
  0.9, no weight decay, no silhouette phase (that script has none). The paper's text says
  ``M = 3`` and weight decay 1e-4; both are available as parameters. ``preset="fast"``
  (default) trains at half resolution with 64 instead of 100 channels, caps ``T`` at 60 and
  stops when ``q'`` has been stable for 10 iterations; every speed-up is a separate
  parameter, and ``benchmarks/dynaseg_bsds.py`` measures what each costs in mIoU.
  ``preset="regions"`` is ``fast`` with the BSDS-tuned output (see below).
* **Reduced resolution.** With ``scale < 1`` the image is resized (bilinear, antialiased)
  before training, and the final response ``r'`` (not the labels) is bilinearly upsampled
  to the input size before the argmax, so label boundaries are interpolated smoothly.
* **Stability stop.** With ``patience = P > 0`` training also stops when the smallest
  ``q'`` seen so far has not decreased for ``P`` iterations (on BSD500 ``q'`` plateaus at
  8-20 labels within 20-40 iterations; the 3-label rule is rarely met).
* **Threads.** On the shared 2-core machine (load average 7-9) two torch threads were 5-15x
  slower than one on a 32x32 test image (OpenMP threads wait for each other), so the
  benchmark uses ``threads=1``; ``threads`` sets it per call.
* **Connected regions** (``components=True``, off by default, not in the paper): a cluster
  id may cover many disconnected regions; BSDS-style scores count segments, so the option
  gives every 4-connected region its own label and absorbs regions below ``min_size``
  pixels into the nearest larger one. The benchmark scores both outputs.
* **Preset "regions"** (the one to use for BSDS-like segment scores). What the BSDS500
  scores measure: every ground-truth segment of every annotator is one entry, scored by the
  IoU of its best (official code) or Hungarian-matched (paper text) *predicted segment*;
  most gt segments are small, so a map of ~10 clusters, each scattered over the image,
  scores ~0.1 however good the clustering (a cluster's union is huge), while the same map
  split into connected regions scores ~0.25. Tuned on 12 BSDS500 train/val images only
  (``benchmarks/results/dynaseg_tune*.md``): the score of the region output is flat in the
  training length (it peaks early, at 5-15 iterations, not at convergence), in the training
  resolution (scale 0.5, 0.75 and 1 within +-0.01 on 6 images) and in ``min_size``; what
  helped was (a) stopping at ``q' <= 16`` clusters (``min_labels=16``, ~11 iterations
  instead of ~29, so also 2-3x cheaper) and (b) merging adjacent regions whose mean CIE
  L*a*b* colours differ by less than 10 (:func:`merge_similar_regions`; +0.02-0.04): the
  cluster boundaries over-split smooth shading (sky, skin) into bands, which the merge
  rejoins; (c) labelling with one forward pass of the half-resolution-trained network on
  the full-resolution image (``final="full"``; +0.027 H All on 40 train/val images, 0.248
  -> 0.275, same cost; chosen after a first test-set run with ``final="upsample"``, both
  reported in ``benchmarks/results/dynaseg_summary.md``). Regions below 20 px are
  absorbed *before* the merge (without that, thin boundary slivers of intermediate colour
  chain unrelated regions together: -0.045 at 6 iterations on the 12 tuning images,
  scratch measurement). The merge uses the image colour,
  not the network response: a classical post-processing step, documented as such.
* **Preset "superpixels"** (v3; tuned on 60 BSDS500 train/val images with the cache and
  sweep scripts ``benchmarks/dynaseg_cache.py``, ``dynaseg_sweep.py``,
  ``dynaseg_sweep_superpixels.py``). Findings that set it: (a) on the *connected regions
  of the cluster map* no merge helps much: the greedy hierarchical merge (means updated,
  no chaining) scores 0.300 H All against 0.294 unmerged and 0.287 for the one-shot cut,
  and every merge down to GT-like counts (10-45 regions) loses (0.11-0.26), because the
  cluster boundaries themselves are misplaced: an oracle that labels each region with its
  majority gt segment reaches only 0.44 on them against 0.55 on Felzenszwalb superpixels
  of the same count. (b) The score wants many (300-600) well-placed regions: one-to-one
  matching needs one region per gt segment, most gt segments are small, and extra
  regions cost little. (c) So the regions are Felzenszwalb-Huttenlocher superpixels of the
  image (``scale=200, sigma=0.5, min_size=20``; 0.352 alone on the 60 images, the old
  anchor 100/0.8/50 0.327), and the networks decide the merges: the *co-association
  boundary* of ``runs=2`` independently initialised networks (fraction of runs whose
  cluster maps separate two neighbouring pixels) enters the greedy merge cost
  ``||lab_a - lab_b|| + 20 * mean boundary`` (stop at 10): 0.358 vs 0.353 for the
  colour-only merge and 0.358 with a Sobel-of-L*a*b* boundary instead (no network). The
  network's share of the gain over the superpixels alone is thus small (+0.005), and a
  classical image-gradient boundary does about as well on these images; both are
  reported in ``benchmarks/results/dynaseg_notes.md``. Two runs instead of one: +0.002;
  four: no further gain. Cost ~2x the ``regions`` preset (~8 CPU s per BSDS image).
* **Silhouette phase** (the paper gives no features, sampling or k range): before the first
  iteration, ``n = 1000`` pixels of the (resized) input are drawn with ``rng``; their channel
  values (in [0, 1]) are clustered by k-means (k-means++ seeding, 30 Lloyd steps, seeded by
  ``rng``) for every ``k`` in ``[k_min, k_max] = [3, 12]`` and the ``k*`` with the largest
  mean silhouette (Euclidean) on those samples is kept. ``k*`` then (a) floors the cluster
  count inside the weight, ``mu = w(max(q', k*))``, and (b) raises the stop threshold to
  ``max(min_labels, k*)``. The official code's unused helper searches k = 3..26 over image
  rows with scikit-learn; we use pixels (the quantity being clustered), subsample them (the
  silhouette is quadratic in the number of samples) and search a smaller range, because the
  score fell monotonically from k = 3 to 26 on the BSD-sized image measured in the spec, and
  scikit-learn is not a dependency. Off in both presets (the BSD500 script has no such
  phase); the benchmark's ``fast-silh`` setting measures it.
* **Grey and multichannel images.** The CNN's first convolution takes the image's own
  channel count (grey = 1 channel; no replication). The ResNet backbone needs 3 channels:
  grey is replicated to RGB, other counts are rejected.
* **Intensities** are mapped to [0, 1] by :func:`physeg._validate.to_float01` (integers by
  their dtype range; floats outside [0, 1] min-max scaled), as the codes divide by 255.
* **Randomness.** ``rng`` seeds both the network initialisation (PyTorch's default init,
  run inside ``torch.random.fork_rng`` so the global torch state is untouched) and the
  silhouette sampling; on the CPU the same seed and thread count give the same labels.
* **Continuity** uses means (as every published code), and its gradient is kept (the COCO
  code's ``detach`` is a bug, not reproduced).
* Labels are returned renumbered ``0..K-1`` in raster order of first appearance (no
  background meaning). The reference-image (dataset-training) mode of Kim et al. is not implemented;
  the scribble mode is (``scribble=`` in the Python API).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import numpy as np

from ..._validate import as_rng, check_labels_like, look_up_option, to_float01
from .._registry import Method, Param, register

__all__ = [
    "segment_dynaseg",
    "split_components",
    "merge_similar_regions",
    "choose_k_silhouette",
    "kmeans",
    "silhouette_score",
    "PRESETS",
]

#: Parameter values of the three presets; explicit arguments override them.
_FAST: dict[str, Any] = dict(
    scale=0.5, channels=64, n_conv=2, max_iter=60, patience=10, silhouette=False,
    weight_decay=0.0, min_labels=3, components=False, min_size=50, merge=0.0,
    final="upsample", runs=1, superpixels=0.0, merge_mode="threshold", edge_weight=0.0)
# tuned on BSDS500 train/val images (benchmarks/results/dynaseg_tune.md): stop early at
# 16 clusters, label with one full-resolution forward pass, output connected regions,
# merge adjacent regions of similar colour
_REGIONS: dict[str, Any] = {**_FAST, "min_labels": 16, "components": True, "min_size": 20,
                            "merge": 10.0, "final": "full"}
PRESETS: dict[str, dict[str, Any]] = {
    "published": {**_FAST, "scale": 1.0, "channels": 100, "max_iter": 1000, "patience": 0},
    "fast": _FAST,
    "regions": _REGIONS,
    # v3, tuned on BSDS500 train/val images (benchmarks/results/dynaseg_sweep*.md): the
    # regions are Felzenszwalb superpixels of the image, merged greedily by colour and by
    # the co-association boundary of two independently initialised networks
    "superpixels": {**_REGIONS, "runs": 2, "superpixels": 200.0,
                    "merge_mode": "hierarchical", "edge_weight": 20.0},
}

#: Gaussian smoothing (pixels) of the Felzenszwalb superpixels (``superpixels > 0``).
SUPERPIXEL_SIGMA = 0.5

_DEFAULT_ALPHA = {"fsf": 15.0, "scf": 50.0, "fixed": 0.0}
_MIN_TRAIN_SIDE = {"cnn": 4, "resnet18": 64}


# --------------------------------------------------------------------------------------
# silhouette phase (numpy, vectorised)


def kmeans(x: np.ndarray, k: int, *, rng: Any = None, n_iter: int = 30) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; return labels (n,) in ``0..k-1``.

    Parameters
    ----------
    x : ndarray (n, d)
        Samples.
    k : int
        Number of clusters (1 <= k <= n).
    rng : None, int or numpy.random.Generator
        Draws the k-means++ seeds.
    n_iter : int
        Lloyd iterations (stops earlier when the labels no longer change).
    """
    x = np.asarray(x, dtype=np.float64)
    gen = as_rng(rng)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of samples ({n}); got k={k}.")
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[gen.integers(n)]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for j in range(1, k):
        total = d2.sum()
        idx = gen.choice(n, p=d2 / total) if total > 0 else gen.integers(n)
        centres[j] = x[idx]
        d2 = np.minimum(d2, ((x - centres[j]) ** 2).sum(1))
    labels = np.full(n, -1)
    for _ in range(n_iter):
        dist = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        new = dist.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return labels


def silhouette_score(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette ``s_i = (b_i - a_i) / max(a_i, b_i)`` over the samples (Euclidean).

    ``a_i`` is the mean distance of sample i to the other members of its cluster, ``b_i``
    the smallest mean distance to another cluster; samples alone in their cluster get
    ``s_i = 0`` (Rousseeuw 1987, scikit-learn's convention). Needs >= 2 clusters.
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    uniq, inv = np.unique(labels, return_inverse=True)
    if uniq.size < 2:
        raise ValueError("the silhouette needs at least 2 clusters.")
    sq = (x * x).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    onehot = np.eye(uniq.size)[inv]  # (n, K)
    counts = onehot.sum(0)
    sums = d @ onehot  # (n, K): sum of distances to each cluster
    own = counts[inv]
    a = sums[np.arange(x.shape[0]), inv] / np.maximum(own - 1, 1)
    mean_other = sums / counts[None, :]
    mean_other[np.arange(x.shape[0]), inv] = np.inf
    b = mean_other.min(1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    s[own <= 1] = 0.0
    return float(s.mean())


def choose_k_silhouette(
    features: np.ndarray,
    *,
    k_min: int = 3,
    k_max: int = 12,
    n_samples: int = 1000,
    rng: Any = None,
) -> tuple[int, dict[int, float]]:
    """Silhouette phase: the number of clusters ``k*`` that best separates the pixels.

    Parameters
    ----------
    features : ndarray (n_pixels, d)
        Per-pixel features (physeg uses the input channels in [0, 1]).
    k_min, k_max : int
        Inclusive search range (``2 <= k_min <= k_max``).
    n_samples : int
        Pixels drawn without replacement with ``rng``; k-means and the silhouette are
        computed on them only (cost O(n_samples^2 + n_samples * k_max^2)).
    rng : None, int or numpy.random.Generator

    Returns
    -------
    k_star : int
        ``argmax_k silhouette(kmeans_k)`` (smallest k on ties). If the samples have fewer
        than ``k_min`` distinct values, ``k_min`` is returned with no scores.
    scores : dict
        ``{k: mean silhouette}`` for every k tried.
    """
    gen = as_rng(rng)
    feats = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    n = min(int(n_samples), feats.shape[0])
    sample = feats[gen.choice(feats.shape[0], size=n, replace=False)]
    n_distinct = np.unique(sample, axis=0).shape[0]
    scores: dict[int, float] = {}
    for k in range(int(k_min), int(k_max) + 1):
        if k > n_distinct or k >= n:
            break
        lab = kmeans(sample, k, rng=gen)
        if np.unique(lab).size < 2:
            continue
        scores[k] = silhouette_score(sample, lab)
    if not scores:
        return int(k_min), scores
    best = max(scores.values())
    return min(k for k, s in scores.items() if s == best), scores


# --------------------------------------------------------------------------------------
# post-processing


def split_components(labels: np.ndarray, *, min_size: int = 0) -> np.ndarray:
    """Give every 4-connected region of each cluster its own label; absorb small regions.

    A cluster id of DynaSeg can cover several disconnected regions (there is no objectness
    prior). This relabels each connected region separately, then every region smaller than
    ``min_size`` pixels takes the label of the nearest pixel (Euclidean) that lies in a
    region of at least ``min_size`` pixels (one distance transform, no loop over regions).

    Parameters
    ----------
    labels : ndarray of int (rows, cols)
        Cluster labels.
    min_size : int, default 0
        Regions below this many pixels are absorbed (0 or 1 = keep all). If no region is
        that large, the labels are returned split but unmerged.

    Returns
    -------
    ndarray of int32
        Region labels ``0..R-1``.
    """
    from scipy import ndimage as ndi
    from skimage.measure import label as cc_label

    regions = cc_label(np.asarray(labels), background=-1, connectivity=1).astype(np.int64) - 1
    if min_size > 1:
        sizes = np.bincount(regions.ravel())
        small = sizes[regions] < min_size
        if small.any() and not small.all():
            _, idx = ndi.distance_transform_edt(small, return_indices=True)
            regions = regions[idx[0], idx[1]]
        _, regions = np.unique(regions, return_inverse=True)
        regions = regions.reshape(labels.shape)
    return regions.astype(np.int32)


def merge_similar_regions(regions: np.ndarray, features: np.ndarray, *,
                          threshold: float, min_regions: int = 0) -> np.ndarray:
    """Merge 4-adjacent regions whose mean features differ by less than ``threshold``.

    A region adjacency graph is built from the label image (one edge per pair of regions
    that touch horizontally or vertically), each edge is weighted by the Euclidean distance
    ``||f_a - f_b||`` between the two regions' mean feature vectors, edges with weight
    ``< threshold`` are kept and the connected components of the kept graph become the new
    regions (the one-shot threshold cut of a region adjacency graph, as
    ``skimage.graph.cut_threshold``; merging is transitive). Fully vectorised.

    Parameters
    ----------
    regions : ndarray of int (rows, cols)
        Non-negative region labels.
    features : ndarray (rows, cols) or (rows, cols, d)
        Per-pixel features (physeg's DynaSeg uses the input in CIE L*a*b*, where a
        distance of ~2.3 is one just-noticeable difference).
    threshold : float
        Largest mean-feature distance that still merges (>= 0; 0 merges nothing).
    min_regions : int, default 0
        Floor on the number of regions left: if the cut at ``threshold`` leaves fewer, the
        largest of ``threshold * (0.8, 0.6, 0.4, 0.2)`` that leaves at least
        ``min_regions`` is used (no merge if none does). Guards low-contrast images, where
        one global threshold merges almost everything. 0 = off.

    Returns
    -------
    ndarray of int32
        Labels ``0..R'-1``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ._merge import adjacency, region_sums, relabel_with_features

    reg, feats = relabel_with_features(regions, features)
    n = int(reg.max()) + 1
    counts, sums = region_sums(reg, feats)
    means = sums / counts[:, None]
    pairs = adjacency(reg)[0]
    dist = np.linalg.norm(means[pairs[:, 0]] - means[pairs[:, 1]], axis=1)
    comp = np.arange(n)
    for factor in (1.0, 0.8, 0.6, 0.4, 0.2):
        keep = pairs[dist < float(threshold) * factor]
        adj = coo_matrix((np.ones(len(keep)), (keep[:, 0], keep[:, 1])), shape=(n, n))
        n_comp, labels = connected_components(adj, directed=False)
        if n_comp >= min(int(min_regions), n):
            comp = labels
            break
    _, out = np.unique(comp[reg], return_inverse=True)
    return out.reshape(reg.shape).astype(np.int32)


# --------------------------------------------------------------------------------------
# main entry point


def segment_dynaseg(
    image: np.ndarray,
    *,
    variant: str = "fsf",
    alpha: float | None = None,
    mu: float = 5.0,
    backbone: str = "cnn",
    weights: str | None = None,
    preset: str = "fast",
    max_iter: int | None = None,
    min_labels: int | None = None,
    patience: int | None = None,
    scale: float | None = None,
    channels: int | None = None,
    n_conv: int | None = None,
    silhouette: bool | None = None,
    k_min: int = 3,
    k_max: int = 12,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float | None = None,
    threads: int | None = None,
    device: str = "cpu",
    scribble: np.ndarray | None = None,
    components: bool | None = None,
    min_size: int | None = None,
    merge: float | None = None,
    final: str | None = None,
    runs: int | None = None,
    superpixels: float | None = None,
    merge_mode: str | None = None,
    edge_weight: float | None = None,
    callback: Any = None,
    return_info: bool = False,
    channel_axis: int | None = None,
    spacing: Sequence[float] | None = None,
    rng: Any = None,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Segment one 2D image by per-image self-supervised clustering (DynaSeg / Kim et al.).

    Parameters
    ----------
    image : ndarray
        (rows, cols) grey or (rows, cols, C) with ``channel_axis=-1``; any integer or float
        dtype, mapped to [0, 1] by :func:`physeg._validate.to_float01`.
    variant : {"fsf", "scf", "fixed"}, default "fsf"
        fsf
            Feature-similarity focus, ``mu = q'/alpha``: strong continuity while there are
            many clusters, more weight on similarity as they merge (finer detail).
        scf
            Spatial-continuity focus, ``mu = alpha/q'``: continuity grows as clusters merge
            (coarser, class-like regions).
        fixed
            Kim–Kanezaki–Tanaka baseline, constant ``mu``.
    alpha : float, optional
        Scale of the dynamic weight (0 < alpha <= 1000); default 15 (FSF) or 50 (SCF), the
        paper's values. Raising it weakens continuity for FSF and strengthens it for SCF.
    mu : float, default 5
        Constant weight for ``variant="fixed"`` (>= 0; 5 is the paper's BSD500 baseline).
        Higher = larger, smoother regions.
    backbone : {"cnn", "resnet18"}, default "cnn"
        ``cnn``: M x (conv3x3 -> ReLU -> BN), 1x1 classifier, BN (no weights needed).
        ``resnet18``: ResNet-18 + FPN (see :mod:`physeg.families.dynaseg._resnet`); random
        init unless ``weights`` is given, which is what makes it useful.
    weights : str, optional
        Path of a torchvision-format ResNet-18 ImageNet ``state_dict`` (``resnet18`` only).
        Nothing is ever downloaded.
    preset : {"fast", "regions", "superpixels", "published"}, default "fast"
        Defaults for ``scale, channels, n_conv, max_iter, patience, silhouette,
        weight_decay, min_labels, components, min_size, merge, final, runs, superpixels,
        merge_mode, edge_weight`` (see :data:`PRESETS`); any of them given explicitly
        wins. ``regions`` is ``fast`` plus the stop at 16 clusters, the full-resolution
        labelling pass and the region output with colour merging, tuned on BSDS500
        train/val images. ``superpixels`` trains two networks with the ``regions``
        settings and returns Felzenszwalb superpixels (scale 200, sigma 0.5, min 20 px)
        merged hierarchically by colour and by the two networks' co-association boundary.
    max_iter : int, optional
        Iteration cap T (published 1000; fast 60). More iterations merge more clusters.
    min_labels : int, optional
        Stop as soon as ``q' <= min_labels`` (published rule, 3; preset ``regions`` 16).
        Raise it for more segments and fewer iterations.
    patience : int, optional
        Also stop when the smallest ``q'`` has not decreased for this many iterations
        (0 = off; published 0, fast 10). Lower = faster, possibly more segments.
    scale : float, optional
        Training resolution factor in (0, 1] (published 1, fast 0.5); the cost per
        iteration falls as ``scale**2``; the response is upsampled back before the argmax.
    channels : int, optional
        p = q, feature and cluster channels (2..512; published 100, fast 64). ``q`` caps the
        number of clusters; cost grows as ``channels**2``.
    n_conv : int, optional
        Number M of conv-ReLU-BN components (1..8; published BSD code 2, paper text 3).
    silhouette : bool, optional
        Run the silhouette phase (k* floors ``q'`` in the weight and the stop threshold).
    k_min, k_max : int, default 3, 12
        Silhouette search range (2 <= k_min <= k_max <= 50).
    lr, momentum, weight_decay : float
        SGD settings (published 0.1, 0.9, 0; the paper's text gives weight decay 1e-4).
    threads : int, optional
        ``torch.set_num_threads`` during the call (restored after); None leaves it.
    device : {"cpu", "cuda", "auto"}, default "cpu"
        Where the network runs; "auto" uses CUDA when available. Results on a GPU are not
        bitwise identical to the CPU's.
    scribble : ndarray of int, optional
        (rows, cols) user labels, negative = unlabelled. Scribbled pixels get a CE loss to
        their label (weight 0.5), the others the usual similarity loss, and ``min_labels``
        becomes the number of scribble classes (Kim et al., scribble mode).
    components : bool, optional
        Default from the preset (off; on in ``regions``). Post-processing: give each
        4-connected region of a cluster its own label and absorb regions smaller than
        ``min_size`` pixels into the nearest larger region (see :func:`split_components`),
        then optionally merge similar neighbours (``merge``). Not part of the published
        method (Kim et al. suggest connected components for disconnected same-label
        regions); it raises the BSDS scores, which count segments, not clusters.
    min_size : int, optional
        Smallest kept region, in pixels of the input image (used with ``components``;
        default 50, preset ``regions`` 20). Larger = fewer, bigger regions.
    merge : float, optional
        With ``components``: after the split, adjacent regions whose mean colours differ by
        less than ``merge`` are merged (:func:`merge_similar_regions`; CIE L*a*b* distance
        for RGB images, 100 x the [0, 1] channel values otherwise). 0 = off (default),
        preset ``regions`` 10. Larger = fewer regions; range [0, 1000].
    final : {"upsample", "full"}, optional
        Default from the preset (``upsample``; ``regions``: ``full``, +0.027 H All on 40
        BSDS500 train/val images at the same cost). With ``scale < 1``: ``upsample``
        bilinearly upsamples the trained response to the input size; ``full`` runs the
        trained (fully convolutional) network once on the full-resolution input instead
        (one extra forward pass; sharper boundaries, but the features see a receptive
        field half as large relative to the content).
    runs : int, optional
        Number of independently initialised networks trained on the image (1..64; default
        from the preset: 1, ``superpixels`` 2). The first run (seeded as with ``runs=1``)
        gives the returned cluster map and diagnostics; all runs give the co-association
        boundary used by ``merge_mode="hierarchical"`` with ``edge_weight > 0``. Cost grows
        linearly.
    superpixels : float, optional
        With ``components``: if > 0, the regions to merge are Felzenszwalb-Huttenlocher
        superpixels of the image (``skimage.segmentation.felzenszwalb`` with
        ``scale=superpixels``, ``sigma=SUPERPIXEL_SIGMA`` (0.5), ``min_size``) instead of
        the connected regions of the cluster map; 0 = off (default; ``superpixels`` preset
        200). Larger = fewer, larger superpixels; range [0, 1e6].
    merge_mode : {"threshold", "hierarchical"}, optional
        How ``merge`` is applied. ``threshold`` (presets ``fast``/``regions``): one cut of
        the region adjacency graph at colour distance ``merge``
        (:func:`merge_similar_regions`; transitive). ``hierarchical`` (preset
        ``superpixels``): greedy agglomeration that always merges the adjacent pair of
        smallest cost ``c(a, b) = ||f_a - f_b|| + edge_weight * e_ab`` (``f`` = mean
        L*a*b* colour, updated after every merge; ``e_ab`` = mean co-association
        boundary strength along the shared border, in [0, 1]) and stops when the smallest
        cost exceeds ``merge``.
    edge_weight : float, optional
        Weight of the networks' co-association boundary in the hierarchical merge cost
        (>= 0; 0 = colour only; preset ``superpixels`` 20, i.e. a border that every run
        draws costs as much as 20 L*a*b* units). The co-association boundary of a pixel is
        the largest, over its 4 neighbours, fraction of the ``runs`` cluster maps that
        separate the two pixels (:func:`physeg.families.dynaseg._merge.coassociation_boundary`).
    callback : callable, optional
        ``callback(iteration, q', mu, loss, response)`` after every SGD step; ``response``
        is the detached (1, q, h, w) torch tensor at the training resolution.
    return_info : bool, default False
        Also return a dict of diagnostics (``n_labels``, ``mu`` and ``loss`` per iteration,
        ``stop_reason``, ``iterations``, ``k_star``, ``silhouette_scores``, ``seconds``,
        ``train_shape``; all of the first run) and ``response``, the first run's final
        normalised response ``r'`` at the input resolution, (rows, cols, q) float32.
    channel_axis, spacing, rng
        Common contract; spacing is ignored (pixels are treated as square); ``rng`` seeds
        the network initialisation and the silhouette sampling.

    Returns
    -------
    labels : ndarray of int32, (rows, cols)
        Cluster labels ``0..K-1`` (no background meaning); with ``return_info``, a tuple
        ``(labels, info)``.

    Raises
    ------
    ValueError
        3D image, image smaller than the backbone needs at the training scale, ResNet with a
        channel count other than 1 or 3, unknown option, CUDA requested but unavailable.

    Notes
    -----
    With ``r'`` the batch-normalised response (q channels), ``c_n = argmax_k r'_n[k]`` and
    ``q'`` the number of distinct ``c_n``, each iteration takes one SGD step on

    .. math::

        L = \\frac{1}{N}\\sum_n \\mathrm{CE}(r'_n, c_n)
            + \\mu(q') \\Big(\\overline{|r'_{i+1,j} - r'_{i,j}|}
            + \\overline{|r'_{i,j+1} - r'_{i,j}|}\\Big),

    with :math:`\\mu = \\text{mu}` (fixed), :math:`q'/\\alpha` (FSF) or
    :math:`\\alpha/q'` (SCF); with the silhouette phase ``q'`` is replaced by
    ``max(q', k*)`` in the weight.

    References
    ----------
    .. [1] Guermazi, Ksantini, Khan, "DynaSeg: A deep dynamic fusion method for unsupervised
       image segmentation incorporating feature similarity and spatial continuity",
       Image and Vision Computing 2024, :arXiv:`2405.05477`.
    .. [2] Kim, Kanezaki, Tanaka, "Unsupervised learning of image segmentation based on
       differentiable feature clustering", IEEE TIP 29, 2020, :arXiv:`2007.09990`.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((32, 32, 3)); img[8:24, 8:24] = (1.0, 0.2, 0.1)
    >>> lab = segment_dynaseg(img, channel_axis=-1, max_iter=30, channels=16, rng=0)
    >>> lab.shape, bool(lab[16, 16] != lab[0, 0])
    ((32, 32), True)
    """
    from ..._optional import require

    torch = require("torch", feature="the dynaseg method")
    from torch.nn import functional as F

    from . import _net as net

    t0 = time.perf_counter()
    variant = look_up_option(variant, ("fsf", "scf", "fixed"), what="dynaseg variant")
    backbone = look_up_option(backbone, ("cnn", "resnet18"), what="dynaseg backbone")
    preset = look_up_option(preset, tuple(PRESETS), what="dynaseg preset")
    device = look_up_option(device, ("cpu", "cuda", "auto"), what="device")
    cfg = dict(PRESETS[preset])
    given = dict(scale=scale, channels=channels, n_conv=n_conv, max_iter=max_iter,
                 patience=patience, silhouette=silhouette, weight_decay=weight_decay,
                 min_labels=min_labels, components=components, min_size=min_size,
                 merge=merge, final=final, runs=runs, superpixels=superpixels,
                 merge_mode=merge_mode, edge_weight=edge_weight)
    cfg.update({k: v for k, v in given.items() if v is not None})
    final = cfg["final"] = look_up_option(cfg["final"], ("upsample", "full"), what="final")
    cfg["merge_mode"] = look_up_option(cfg["merge_mode"], ("threshold", "hierarchical"),
                                       what="merge_mode")
    _check_number("superpixels", cfg["superpixels"], 0.0, 1e6)
    _check_number("edge_weight", cfg["edge_weight"], 0.0, 1e4)
    min_labels, components = cfg["min_labels"], bool(cfg["components"])
    min_size, merge = cfg["min_size"], cfg["merge"]
    if alpha is None:
        alpha = _DEFAULT_ALPHA[variant]
    _check_number("alpha", alpha, 0.0, 1000.0, open_low=variant != "fixed")
    _check_number("mu", mu, 0.0, 1e4)
    _check_number("scale", cfg["scale"], 0.0, 1.0, open_low=True)
    _check_number("lr", lr, 0.0, 10.0, open_low=True)
    _check_number("momentum", momentum, 0.0, 1.0)
    _check_number("weight_decay", cfg["weight_decay"], 0.0, 1.0)
    _check_number("merge", merge, 0.0, 1000.0)
    ints = {**cfg, "k_min": k_min, "k_max": k_max}
    for name, lo, hi in (("max_iter", 1, 100000), ("min_labels", 1, 512),
                         ("patience", 0, 100000), ("channels", 2, 512), ("n_conv", 1, 8),
                         ("k_min", 2, 50), ("k_max", 2, 50), ("min_size", 0, 10**7),
                         ("runs", 1, 64)):
        val = ints[name]
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or not lo <= val <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}]; got {val!r}.")
    if k_max < k_min:
        raise ValueError(f"k_max ({k_max}) must be >= k_min ({k_min}).")

    arr = np.asarray(image)
    if channel_axis is None:
        if arr.ndim != 2:
            hint = (" If the last axis holds colour channels, pass channel_axis=-1."
                    if arr.ndim == 3 and arr.shape[-1] in (3, 4) else "")
            raise ValueError(
                f"dynaseg segments 2D images: expected (rows, cols) or (rows, cols, C) with "
                f"channel_axis=-1; got shape {arr.shape}.{hint}")
        arr = arr[..., None]
    else:
        arr = np.moveaxis(arr, channel_axis, -1)
        if arr.ndim != 3:
            raise ValueError(
                f"dynaseg segments 2D images: expected (rows, cols, C); got shape {arr.shape} "
                f"after moving channel_axis={channel_axis} last.")
    rows, cols, n_ch = arr.shape
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise TypeError(f"image has dtype {arr.dtype}; expected integers or real floats.")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values; replace them first "
                         "(e.g. np.nan_to_num).")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if backbone == "resnet18" and n_ch not in (1, 3):
        raise ValueError(
            f"the resnet18 backbone needs an RGB (3-channel) or grey image; got {n_ch} "
            "channels. Drop the alpha channel (image[..., :3]) or use backbone='cnn', "
            "which accepts any number of channels.")
    if weights is not None and backbone != "resnet18":
        raise ValueError("weights= is only used by backbone='resnet18'; remove it or set "
                         "backbone='resnet18'.")
    h = max(int(round(rows * cfg["scale"])), 1)
    w = max(int(round(cols * cfg["scale"])), 1)
    need = _MIN_TRAIN_SIDE[backbone]
    if min(h, w) < need:
        raise ValueError(
            f"image too small for dynaseg: {rows}x{cols} pixels at scale {cfg['scale']:g} "
            f"trains on {h}x{w}, but the {backbone} backbone needs at least {need} pixels per "
            f"side. Use a larger image or a larger scale (at most 1).")

    gen = as_rng(rng)
    seed = int(gen.integers(2**62))
    x01 = to_float01(arr)  # (rows, cols, C) float32 in [0, 1], a copy
    if backbone == "resnet18" and n_ch == 1:
        x01 = np.repeat(x01, 3, axis=-1)

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no CUDA GPU; use "
                         "device='cpu' or 'auto'.")
    dev = torch.device(device)

    scr_t = None
    if scribble is not None:
        scr = check_labels_like(np.where(np.asarray(scribble) < 0, 0, scribble), (rows, cols),
                                name="scribble")
        scr = np.where(np.asarray(scribble) < 0, -1, scr).astype(np.int64)
        classes = np.unique(scr[scr >= 0])
        if classes.size == 0:
            raise ValueError("scribble has no labelled pixel (all negative); label some "
                             "pixels with class ids >= 0.")
        if classes.max() >= cfg["channels"]:
            raise ValueError(f"scribble class ids must be < channels ({cfg['channels']}); got "
                             f"max {classes.max()}.")
        min_labels = int(classes.size)

    old_threads = torch.get_num_threads()
    if threads is not None:
        if not 1 <= int(threads) <= 256:
            raise ValueError(f"threads must be in [1, 256]; got {threads!r}.")
        torch.set_num_threads(int(threads))
    try:
        x = x_full = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x01, -1, 0)))[None].to(dev)
        if (h, w) != (rows, cols):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=True)
        if scribble is not None:
            st = torch.from_numpy(scr)[None, None].float()
            if (h, w) != (rows, cols):
                st = F.interpolate(st, size=(h, w), mode="nearest")
            scr_t = st[:, 0].long().to(dev)

        k_star, scores = 0, {}
        if cfg["silhouette"]:
            feats = x[0].permute(1, 2, 0).reshape(h * w, -1).cpu().numpy()
            k_star, scores = choose_k_silhouette(feats, k_min=k_min, k_max=k_max, rng=gen)

        cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()] \
            if dev.type == "cuda" else []
        seeds = [seed] + [int(gen.integers(2**62)) for _ in range(int(cfg["runs"]) - 1)]
        all_ids = []
        for run, run_seed in enumerate(seeds):
            with torch.random.fork_rng(devices=cuda_ids):
                torch.manual_seed(run_seed)
                if backbone == "cnn":
                    model = net.DynaSegCNN(x.shape[1], cfg["channels"], cfg["channels"],
                                           cfg["n_conv"])
                else:
                    from ._resnet import ResNet18FPN, load_resnet18_state_dict

                    model = ResNet18FPN(q=cfg["channels"])
                    if weights is not None:
                        load_resnet18_state_dict(model, weights)
            model = model.to(dev)
            res_r = net.train_per_image(
                model, x, variant=variant, alpha=float(alpha), mu=float(mu),
                max_iter=int(cfg["max_iter"]), min_labels=max(int(min_labels), k_star),
                q_floor=k_star, patience=int(cfg["patience"]), lr=float(lr),
                momentum=float(momentum), weight_decay=float(cfg["weight_decay"]),
                scribble=scr_t, callback=callback if run == 0 else None,
            )
            resp_r = res_r.response
            if (h, w) != (rows, cols) and final == "full":
                with torch.no_grad():
                    resp_r = model(x_full)
            if resp_r.shape[-2:] != (rows, cols):
                resp_r = F.interpolate(resp_r, size=(rows, cols), mode="bilinear",
                                       align_corners=False)
            all_ids.append(resp_r.argmax(dim=1)[0].cpu().numpy())
            if run == 0:
                res, resp = res_r, resp_r
            del model, res_r, resp_r
        ids = all_ids[0]
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)
    _, first = np.unique(ids.ravel(), return_index=True)
    order = np.unique(ids.ravel())[np.argsort(first)]
    lut = np.zeros(int(order.max()) + 1, dtype=np.int32)
    lut[order] = np.arange(order.size, dtype=np.int32)
    labels = lut[ids]
    n_clusters = int(order.size)
    if components:
        labels = _regions_from_clusters(labels, all_ids, x01, cfg)
    if not return_info:
        return labels
    info = dict(
        n_labels=res.n_labels, mu=res.mu, loss=res.loss, stop_reason=res.stop_reason,
        iterations=res.iterations, k_star=k_star or None, silhouette_scores=scores,
        n_clusters=n_clusters, seconds=time.perf_counter() - t0, train_shape=(h, w),
        seed=seed, preset=preset, config=cfg,
        response=np.moveaxis(resp[0].cpu().numpy(), 0, -1),
    )
    return labels, info


def _regions_from_clusters(labels: np.ndarray, all_ids: list, x01: np.ndarray,
                           cfg: dict) -> np.ndarray:
    """The ``components=True`` output: regions from the cluster map(s), then the merge."""
    from ._merge import coassociation_boundary, merge_hierarchical

    min_size, merge = int(cfg["min_size"]), float(cfg["merge"])
    if cfg["superpixels"] > 0:
        from skimage.segmentation import felzenszwalb

        with warnings.catch_warnings():  # multichannel (C != 3) input is intended here
            warnings.filterwarnings("ignore", message="Got image with third dimension",
                                    category=RuntimeWarning)
            regions = felzenszwalb(x01, scale=float(cfg["superpixels"]),
                                   sigma=SUPERPIXEL_SIGMA, min_size=min_size,
                                   channel_axis=-1).astype(np.int32)
    else:
        regions = split_components(labels, min_size=min_size)
    if merge <= 0:
        return regions
    colour = _colour_features(x01)
    if cfg["merge_mode"] == "threshold":
        return merge_similar_regions(regions, colour, threshold=merge)
    edge = coassociation_boundary(all_ids) if cfg["edge_weight"] > 0 else None
    return merge_hierarchical(regions, colour, edge=edge, edge_weight=float(cfg["edge_weight"]),
                              threshold=merge)


def _colour_features(x01: np.ndarray) -> np.ndarray:
    """Features of the colour merge: CIE L*a*b* for RGB, else 100 x the [0, 1] channels."""
    if x01.shape[-1] == 3:
        from skimage.color import rgb2lab

        return rgb2lab(x01)
    return 100.0 * x01


def _check_number(name: str, value: Any, low: float, high: float, *, open_low: bool = False):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = np.isfinite(v) and (v > low if open_low else v >= low) and v <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be a number in {bracket}{low:g}, {high:g}]; got {value!r}.")


def _segment_registered(image, *, channel_axis=None, spacing=None, rng=None, **params):
    return segment_dynaseg(image, channel_axis=channel_axis, spacing=spacing, rng=rng, **params)


register(
    Method(
        name="dynaseg",
        func=_segment_registered,
        params=(
            Param("variant", "str", "fsf", "fsf: mu=q'/alpha (finer); scf: mu=alpha/q' "
                  "(coarser); fixed: constant mu (Kim et al.)", choices=("fsf", "scf", "fixed")),
            Param("alpha", "float", None, "dynamic-weight scale (default 15 FSF, 50 SCF)",
                  low=0.0, high=1000.0),
            Param("mu", "float", 5.0, "constant continuity weight for variant=fixed; higher = "
                  "smoother", low=0.0, high=1e4),
            Param("backbone", "str", "cnn", "cnn (no weights) or resnet18 (+FPN; pass weights=)",
                  choices=("cnn", "resnet18")),
            Param("weights", "str", None, "ResNet-18 ImageNet state_dict file (resnet18 only)"),
            Param("preset", "str", "fast", "fast (reduced resolution, stability stop), "
                  "regions (fast + early stop at 16 clusters + connected, colour-merged "
                  "regions), superpixels (2 networks; superpixels merged by colour and their "
                  "co-association; best BSDS scores) or published (full recipe, ~1 h/image "
                  "on a CPU core)", choices=("fast", "regions", "superpixels", "published")),
            Param("max_iter", "int", None, "iteration cap T (fast 60, published 1000)",
                  low=1, high=100000),
            Param("min_labels", "int", None, "stop when the label count falls to this "
                  "(published/fast 3, regions 16)", low=1, high=512),
            Param("patience", "int", None, "stop when the label count has not fallen for this "
                  "many iterations (0 = off; fast 10)", low=0, high=100000),
            Param("scale", "float", None, "training resolution factor (fast 0.5, published 1); "
                  "cost ~ scale^2", low=0.01, high=1.0),
            Param("channels", "int", None, "p = q channels (fast 64, published 100)",
                  low=2, high=512),
            Param("n_conv", "int", None, "conv-ReLU-BN components M (2)", low=1, high=8),
            Param("silhouette", "bool", None, "silhouette phase: floor the label count at the "
                  "best k-means k"),
            Param("components", "bool", None, "split clusters into connected regions, absorb "
                  "regions < min_size px (post-processing, not in the paper; on in preset "
                  "regions)"),
            Param("min_size", "int", None, "smallest region kept with components=true "
                  "(50; regions 20)", low=0, high=10**7),
            Param("merge", "float", None, "with components: merge adjacent regions whose mean "
                  "L*a*b* colours differ by < merge (0 = off; regions 10)", low=0.0,
                  high=1000.0),
            Param("final", "str", None, "with scale<1: upsample the response or run the "
                  "net once at full resolution (fast: upsample; regions: full)",
                  choices=("upsample", "full")),
            Param("runs", "int", None, "independently initialised networks; their "
                  "co-association boundary feeds the hierarchical merge (1; superpixels 2)",
                  low=1, high=64),
            Param("superpixels", "float", None, "with components: Felzenszwalb scale of the "
                  "superpixels to merge instead of the cluster regions (0 = off; superpixels "
                  "preset 200)", low=0.0, high=1e6),
            Param("merge_mode", "str", None, "threshold (one-shot cut) or hierarchical "
                  "(greedy, means updated; superpixels preset)",
                  choices=("threshold", "hierarchical")),
            Param("edge_weight", "float", None, "weight of the co-association boundary in the "
                  "hierarchical merge cost (0; superpixels preset 20)", low=0.0, high=1e4),
            Param("threads", "int", None, "torch CPU threads during the call", low=1, high=256),
            Param("device", "str", "cpu", "cpu, cuda or auto", choices=("cpu", "cuda", "auto")),
        ),
        summary="DynaSeg: per-image unsupervised CNN clustering with FSF/SCF dynamic loss "
                "weights (torch)",
        supports_3d=False,
        supports_multichannel=True,
        requires=("torch",),
    )
)
