"""DynaSeg: unsupervised per-image CNN segmentation with a dynamically weighted loss.

A small network is trained from scratch on the one image being segmented (Kim, Kanezaki &
Tanaka, TIP 2020): the argmax labels ``c_n`` of its batch-normalised response ``r'`` are
the targets of its own cross-entropy, and an L1 continuity term makes neighbours agree::

    L = mean_n CE(r'_n, c_n)
        + mu(q') * (mean |r'_{i+1,j} - r'_{i,j}| + mean |r'_{i,j+1} - r'_{i,j}|)

DynaSeg (Guermazi, Ksantini & Khan, IVC 2024) makes the balance a function of the current
number of clusters ``q'``: ``mu = q'/alpha`` (FSF, finer) or ``alpha/q'`` (SCF, coarser);
``fixed`` is Kim et al.'s constant ``mu``. An optional silhouette phase (``_silhouette``)
picks ``k*``, which floors ``q'`` in the weight and the stop threshold. Registered as
``dynaseg``; torch is imported only when the method runs.

The recipe (:func:`segment_dynaseg`): settings from the preset, image to [0, 1], resize to
the training scale, optional silhouette phase, train ``runs`` networks, read out the first
run's cluster map at full size, renumber, optional region output (``_regions``).

Choices where the paper and its codes leave room (measurements and history in
``docs/methods/dynaseg.md``):

* **Presets.** ``published`` is the recipe of the paper's BSD500 numbers (the official
  BSD/VOC script: M = 2, p = q = 100, full resolution, T = 1000, stop at q' <= 3, SGD 0.1 /
  0.9, no weight decay, no silhouette phase). ``fast`` trains at half resolution with 64
  channels, caps T at 60 and stops when q' has been stable for 10 iterations; it returns
  the cluster map. ``regions`` (fast + stop at 16 clusters, full-resolution read-out,
  connected regions merged by colour) and ``superpixels`` (the default: two networks;
  Felzenszwalb superpixels merged by colour and the networks' co-association boundary)
  were tuned on BSDS500 train/val images for segment-counting scores; ``superpixels`` is
  the default because it is the best measured preset (BSDS500 H All 0.344 against 0.096
  for ``fast``'s cluster map, ``docs/methods/dynaseg.md``). Every setting is also a
  parameter; explicit values win.
* **Border.** The network's 3x3 convolutions pad by reflection, not with zeros, which
  drew thin clusters along the image sides (:class:`~._net.DynaSegCNN`).
* **Reduced resolution.** With ``scale < 1`` the image is resized (bilinear, antialiased);
  the response ``r'`` (not the labels) is upsampled back before the argmax
  (``final="upsample"``), or the trained fully convolutional net is run once on the
  full-resolution image (``final="full"``).
* **Stability stop** (``patience``): also stop when the smallest q' seen has not fallen for
  P iterations; on BSD500 q' plateaus at 8-20 labels and the 3-label rule is rarely met.
* **Channels.** The CNN takes the image's own channel count; the ResNet-18 backbone needs
  RGB (grey is replicated). Intensities go to [0, 1] by :func:`physeg._validate.to_float01`.
* **Randomness.** ``rng`` seeds the network initialisations (inside ``torch.random.fork_rng``,
  so the global torch state is untouched) and the silhouette sampling; on the CPU the same
  seed and thread count give the same labels.
* **Continuity** uses means, as every published code, and keeps its gradient.
* Labels are renumbered ``0..K-1`` in raster order of first appearance (no background
  meaning). Kim et al.'s scribble mode is available (``scribble=``); their reference-image
  (dataset-training) mode is not.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ..._validate import as_rng, check_labels_like, to_float01
from .._registry import Method, Param, defaults_from, register
from ._regions import (
    SUPERPIXEL_SIGMA,
    merge_similar_regions,
    regions_from_clusters,
    split_components,
)
from ._silhouette import choose_k_silhouette, silhouette_score

__all__ = [
    "segment_dynaseg",
    "split_components",
    "merge_similar_regions",
    "choose_k_silhouette",
    "silhouette_score",
    "PRESETS",
    "PARAMS",
    "SUPERPIXEL_SIGMA",
]

#: Parameter values of the four presets; explicit arguments override them.
_FAST: dict[str, Any] = dict(
    scale=0.5, channels=64, n_conv=2, max_iter=60, patience=10, silhouette=False,
    weight_decay=0.0, min_labels=3, components=False, min_size=50, merge=0.0,
    final="upsample", runs=1, superpixels=0.0, merge_mode="threshold", edge_weight=0.0)
# tuned on BSDS500 train/val images: stop early at 16 clusters, label with one
# full-resolution forward pass, output connected regions, merge adjacent regions of
# similar colour
_REGIONS: dict[str, Any] = {**_FAST, "min_labels": 16, "components": True, "min_size": 20,
                            "merge": 10.0, "final": "full"}
PRESETS: dict[str, dict[str, Any]] = {
    "published": {**_FAST, "scale": 1.0, "channels": 100, "max_iter": 1000, "patience": 0},
    "fast": _FAST,
    "regions": _REGIONS,
    # v3, tuned on BSDS500 train/val images: the regions are Felzenszwalb superpixels of
    # the image, merged greedily by colour and by the co-association boundary of two
    # independently initialised networks
    "superpixels": {**_REGIONS, "runs": 2, "superpixels": 200.0,
                    "merge_mode": "hierarchical", "edge_weight": 20.0},
}

_DEFAULT_ALPHA = {"fsf": 15.0, "scf": 50.0, "fixed": 0.0}
_MIN_TRAIN_SIDE = {"cnn": 4, "resnet18": 64}

#: The registered parameters: the single source of their defaults and ranges (``None``:
#: the preset's value).
PARAMS: tuple[Param, ...] = (
        Param("variant", "str", "fsf", "fsf: mu=q'/alpha (finer); scf: mu=alpha/q' "
              "(coarser); fixed: constant mu (Kim et al.)", choices=("fsf", "scf", "fixed")),
        Param("alpha", "float", None, "dynamic-weight scale (default 15 FSF, 50 SCF)",
              low=0.0, high=1000.0),
        Param("mu", "float", 5.0, "constant continuity weight for variant=fixed; higher = "
              "smoother", low=0.0, high=1e4),
        Param("backbone", "str", "cnn", "cnn (no weights) or resnet18 (+FPN; pass weights=)",
              choices=("cnn", "resnet18")),
        Param("weights", "str", None, "ResNet-18 ImageNet state_dict file (resnet18 only)"),
        Param("preset", "str", "superpixels", "superpixels (default: 2 networks; "
              "superpixels merged by colour and their co-association; best BSDS scores), "
              "fast (reduced resolution, stability stop; the cluster map), regions (fast + "
              "early stop at 16 clusters + connected, colour-merged regions) or published "
              "(full recipe, ~1 h/image on a CPU core)",
              choices=("superpixels", "fast", "regions", "published")),
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
              "regions < min_size px (post-processing, not in the paper; on in presets "
              "superpixels and regions)"),
        Param("min_size", "int", None, "smallest region kept with components=true "
              "(fast 50; regions, superpixels 20)", low=0, high=10**7),
        Param("merge", "float", None, "with components: merge adjacent regions whose mean "
              "L*a*b* colours differ by < merge (0 = off; regions, superpixels 10)", low=0.0,
              high=1000.0),
        Param("final", "str", None, "with scale<1: upsample the response or run the "
              "net once at full resolution (fast: upsample; regions, superpixels: full)",
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
)


@defaults_from(PARAMS)
def segment_dynaseg(
    image: np.ndarray,
    *,
    variant: str,
    alpha: float | None,
    mu: float,
    backbone: str,
    weights: str | None,
    preset: str,
    max_iter: int | None,
    min_labels: int | None,
    patience: int | None,
    scale: float | None,
    channels: int | None,
    n_conv: int | None,
    silhouette: bool | None,
    k_min: int = 3,
    k_max: int = 12,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float | None = None,
    threads: int | None,
    device: str,
    scribble: np.ndarray | None = None,
    components: bool | None,
    min_size: int | None,
    merge: float | None,
    final: str | None,
    runs: int | None,
    superpixels: float | None,
    merge_mode: str | None,
    edge_weight: float | None,
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
    preset : {"superpixels", "fast", "regions", "published"}, default "superpixels"
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
        Default from the preset (on in ``superpixels``, the default, and ``regions``; off
        in ``fast`` and ``published``). Post-processing: give each
        4-connected region of a cluster its own label and absorb regions smaller than
        ``min_size`` pixels into the nearest larger region (see :func:`split_components`),
        then optionally merge similar neighbours (``merge``). Not part of the published
        method (Kim et al. suggest connected components for disconnected same-label
        regions); it raises the BSDS scores, which count segments, not clusters.
    min_size : int, optional
        Smallest kept region, in pixels of the input image (used with ``components``;
        50 in ``fast``/``published``, 20 in ``regions``/``superpixels``). Larger = fewer,
        bigger regions.
    merge : float, optional
        With ``components``: after the split, adjacent regions whose mean colours differ by
        less than ``merge`` are merged (:func:`merge_similar_regions`; CIE L*a*b* distance
        for RGB images, 100 x the [0, 1] channel values otherwise). 0 = off (``fast``,
        ``published``), 10 in ``regions``/``superpixels``. Larger = fewer regions; range
        [0, 1000].
    final : {"upsample", "full"}, optional
        Default from the preset (``fast``: ``upsample``; ``regions`` and ``superpixels``:
        ``full``, +0.027 H All on 40
        BSDS500 train/val images at the same cost). With ``scale < 1``: ``upsample``
        bilinearly upsamples the trained response to the input size; ``full`` runs the
        trained (fully convolutional) network once on the full-resolution input instead
        (one extra forward pass; sharper boundaries, but the features see a receptive
        field half as large relative to the content).
    runs : int, optional
        Number of independently initialised networks trained on the image (1..64; default
        from the preset: 1, ``superpixels`` (the default) 2). The first run (seeded as
        with ``runs=1``) gives the returned cluster map and diagnostics; all runs give the
        co-association boundary used by ``merge_mode="hierarchical"`` with
        ``edge_weight > 0``. Cost grows linearly.
    superpixels : float, optional
        With ``components``: if > 0, the regions to merge are Felzenszwalb-Huttenlocher
        superpixels of the image (``skimage.segmentation.felzenszwalb`` with
        ``scale=superpixels``, ``sigma=SUPERPIXEL_SIGMA`` (0.5), ``min_size``) instead of
        the connected regions of the cluster map; 0 = off (``fast``, ``regions``,
        ``published``; ``superpixels`` preset, the default, 200). Larger = fewer, larger
        superpixels; range [0, 1e6].
    merge_mode : {"threshold", "hierarchical"}, optional
        How ``merge`` is applied. ``threshold`` (presets ``fast``/``regions``): one cut of
        the region adjacency graph at colour distance ``merge``
        (:func:`merge_similar_regions`; transitive). ``hierarchical`` (preset
        ``superpixels``, the default): greedy agglomeration that always merges the adjacent pair of
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

    require("torch", feature="the dynaseg method")
    t0 = time.perf_counter()
    cfg = _settings(preset, scale=scale, channels=channels, n_conv=n_conv, max_iter=max_iter,
                    patience=patience, silhouette=silhouette, weight_decay=weight_decay,
                    min_labels=min_labels, components=components, min_size=min_size,
                    merge=merge, final=final, runs=runs, superpixels=superpixels,
                    merge_mode=merge_mode, edge_weight=edge_weight)
    if alpha is None:
        alpha = _DEFAULT_ALPHA[variant]
    _check_unregistered(k_min=k_min, k_max=k_max, lr=lr, momentum=momentum,
                        weight_decay=cfg["weight_decay"])
    _check_combinations(variant=variant, alpha=alpha, backbone=backbone, weights=weights)

    arr = _channels_last(image, channel_axis, backbone)
    rows, cols, n_ch = arr.shape
    train_shape = _training_shape(rows, cols, cfg["scale"], backbone)
    gen = as_rng(rng)
    first_seed = int(gen.integers(2**62))
    x01 = to_float01(arr)  # (rows, cols, C) float32 in [0, 1], a copy
    if backbone == "resnet18" and n_ch == 1:
        x01 = np.repeat(x01, 3, axis=-1)
    from . import _runs

    dev = _runs.torch_device(device)
    stop_labels, scr = cfg["min_labels"], None
    if scribble is not None:
        scr = _check_scribble(scribble, (rows, cols), cfg["channels"])
        stop_labels = int(np.unique(scr[scr >= 0]).size)

    with _runs.torch_threads(threads):
        x_train, x_full = _runs.image_tensors(x01, train_shape, dev)
        scr_t = None if scr is None else _runs.scribble_tensor(scr, train_shape, dev)
        k_star, scores = 0, {}
        if cfg["silhouette"]:
            feats = x_train[0].permute(1, 2, 0).reshape(train_shape[0] * train_shape[1], -1)
            k_star, scores = choose_k_silhouette(feats.cpu().numpy(), k_min=k_min,
                                                 k_max=k_max, rng=gen)
        # drawn after the silhouette phase, which uses the same generator
        seeds = [first_seed] + [int(gen.integers(2**62)) for _ in range(int(cfg["runs"]) - 1)]
        cluster_maps, first, response = _runs.train_runs(
            x_train, x_full, seeds, dev, backbone=backbone, weights=weights, cfg=cfg,
            train=dict(variant=variant, alpha=float(alpha), mu=float(mu),
                       max_iter=int(cfg["max_iter"]),
                       min_labels=max(int(stop_labels), k_star), q_floor=k_star,
                       patience=int(cfg["patience"]), lr=float(lr),
                       momentum=float(momentum), weight_decay=float(cfg["weight_decay"]),
                       scribble=scr_t),
            callback=callback)

    labels, n_clusters = _renumber_in_raster_order(cluster_maps[0])
    if cfg["components"]:
        labels = regions_from_clusters(labels, cluster_maps, x01, cfg)
    if not return_info:
        return labels
    info = dict(
        n_labels=first.n_labels, mu=first.mu, loss=first.loss, stop_reason=first.stop_reason,
        iterations=first.iterations, k_star=k_star or None, silhouette_scores=scores,
        n_clusters=n_clusters, seconds=time.perf_counter() - t0, train_shape=train_shape,
        seed=first_seed, preset=preset, config=cfg,
        response=np.moveaxis(response[0].cpu().numpy(), 0, -1),
    )
    return labels, info


# --------------------------------------------------------------------------------------
# the steps of segment_dynaseg


def _settings(preset: str, **explicit: Any) -> dict[str, Any]:
    """The preset's settings, each overridden by its explicit (not ``None``) value."""
    cfg = dict(PRESETS[preset])
    cfg.update({name: value for name, value in explicit.items() if value is not None})
    return cfg


def _check_unregistered(*, k_min: int, k_max: int, lr: float, momentum: float,
                        weight_decay: float) -> None:
    """Check the Python-only parameters, which the registry's schema does not declare."""
    _check_number("lr", lr, 0.0, 10.0, open_low=True)
    _check_number("momentum", momentum, 0.0, 1.0)
    _check_number("weight_decay", weight_decay, 0.0, 1.0)
    for name, value in (("k_min", k_min), ("k_max", k_max)):
        if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                or not 2 <= value <= 50):
            raise ValueError(f"{name} must be an integer in [2, 50]; got {value!r}.")
    if k_max < k_min:
        raise ValueError(f"k_max ({k_max}) must be >= k_min ({k_min}).")


def _check_combinations(*, variant: str, alpha: float, backbone: str,
                        weights: str | None) -> None:
    """Rules between parameters, which a per-parameter range cannot express."""
    if variant != "fixed" and not alpha > 0:
        raise ValueError(
            f"alpha must be > 0 with variant={variant!r} (the weight is q'/alpha for fsf, "
            f"alpha/q' for scf); got {alpha!r}. variant='fixed' uses the constant mu.")
    if weights is not None and backbone != "resnet18":
        raise ValueError("weights= is only used by backbone='resnet18'; remove it or set "
                         "backbone='resnet18'.")


def _check_number(name: str, value: Any, low: float, high: float, *,
                  open_low: bool = False) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = np.isfinite(v) and (v > low if open_low else v >= low) and v <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be a number in {bracket}{low:g}, {high:g}]; got {value!r}.")


def _channels_last(image: Any, channel_axis: int | None, backbone: str) -> np.ndarray:
    """The image as (rows, cols, C) of a real or integer dtype (bool as uint8), checked."""
    arr = np.asarray(image)
    if channel_axis is None:
        if arr.ndim != 2:
            hint = (" If the last axis holds colour channels, pass channel_axis=-1 (on the "
                    "command line: --channel-axis -1)."
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
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise TypeError(f"image has dtype {arr.dtype}; expected integers or real floats.")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values; replace them first "
                         "(e.g. np.nan_to_num).")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    n_ch = arr.shape[-1]
    if backbone == "resnet18" and n_ch not in (1, 3):
        raise ValueError(
            f"the resnet18 backbone needs an RGB (3-channel) or grey image; got {n_ch} "
            "channels. Drop the alpha channel (image[..., :3]) or use backbone='cnn', "
            "which accepts any number of channels.")
    return arr


def _training_shape(rows: int, cols: int, scale: float, backbone: str) -> tuple[int, int]:
    """(h, w) of the image the network trains on; refuse one smaller than the backbone needs."""
    h = max(int(round(rows * scale)), 1)
    w = max(int(round(cols * scale)), 1)
    need = _MIN_TRAIN_SIDE[backbone]
    if min(h, w) < need:
        raise ValueError(
            f"image too small for dynaseg: {rows}x{cols} pixels at scale {scale:g} "
            f"trains on {h}x{w}, but the {backbone} backbone needs at least {need} pixels per "
            f"side. Use a larger image or a larger scale (at most 1).")
    return h, w


def _check_scribble(scribble: Any, shape: tuple[int, int], channels: int) -> np.ndarray:
    """Scribble labels as int64 (rows, cols), -1 = unlabelled; class ids must be < channels."""
    negative = np.asarray(scribble) < 0
    scr = check_labels_like(np.where(negative, 0, scribble), shape, name="scribble")
    scr = np.where(negative, -1, scr).astype(np.int64)
    classes = np.unique(scr[scr >= 0])
    if classes.size == 0:
        raise ValueError("scribble has no labelled pixel (all negative); label some "
                         "pixels with class ids >= 0.")
    if classes.max() >= channels:
        raise ValueError(f"scribble class ids must be < channels ({channels}); got "
                         f"max {classes.max()}.")
    return scr


def _renumber_in_raster_order(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Cluster ids renumbered ``0..K-1`` in raster order of first appearance (int32), and K."""
    values, first = np.unique(ids.ravel(), return_index=True)
    order = values[np.argsort(first)]
    lut = np.zeros(int(order.max()) + 1, dtype=np.int32)
    lut[order] = np.arange(order.size, dtype=np.int32)
    return lut[ids], int(order.size)


register(
    Method(
        name="dynaseg",
        func=segment_dynaseg,
        params=PARAMS,
        summary="splits a photograph into regions by clustering the features of a small "
                "network trained on that image alone (DynaSeg, torch); no labels needed",
        supports_3d=False,
        supports_multichannel=True,
        requires=("torch",),
    )
)
