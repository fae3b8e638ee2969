"""DynaSeg's region output (``components=True``): regions, then an optional colour merge.

A DynaSeg cluster id can cover many disconnected regions; BSDS-style scores count segments,
so with ``components=True`` the output is a map of regions instead of clusters:

1. the regions are the 4-connected regions of the cluster map with those below ``min_size``
   pixels absorbed into the nearest larger one (:func:`split_components`), or, with
   ``superpixels > 0``, Felzenszwalb-Huttenlocher superpixels of the image (scale
   ``superpixels``, sigma :data:`SUPERPIXEL_SIGMA`, ``min_size``);
2. with ``merge > 0``, adjacent regions of similar colour are merged: one threshold cut of
   the region adjacency graph at mean-colour distance ``merge``
   (:func:`merge_similar_regions`, ``merge_mode="threshold"``), or a greedy merge whose cost
   adds ``edge_weight`` times the co-association boundary of the ``runs`` cluster maps
   (:func:`physeg.families.dynaseg._merge.merge_hierarchical`, ``"hierarchical"``).

Colour is CIE L*a*b* for RGB images (a distance of ~2.3 is one just-noticeable difference)
and 100 x the [0, 1] channel values otherwise. This is classical post-processing, not part
of the published method; ``docs/methods/dynaseg.md`` records what it gains.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._merge import (
    adjacency,
    coassociation_boundary,
    merge_hierarchical,
    region_sums,
    relabel_with_features,
)

__all__ = ["split_components", "merge_similar_regions", "regions_from_clusters",
           "colour_features", "SUPERPIXEL_SIGMA"]

#: Gaussian smoothing (pixels) of the Felzenszwalb superpixels (``superpixels > 0``).
SUPERPIXEL_SIGMA = 0.5


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


def regions_from_clusters(labels: np.ndarray, cluster_maps: list[np.ndarray],
                          x01: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """The ``components=True`` output: regions of the image, then the merge.

    Parameters
    ----------
    labels : ndarray of int32 (rows, cols)
        The first run's cluster map, renumbered.
    cluster_maps : list of ndarray (rows, cols)
        The cluster map of every run (their co-association boundary feeds the
        hierarchical merge).
    x01 : ndarray (rows, cols, C)
        The image in [0, 1].
    cfg : dict
        The resolved settings: ``min_size``, ``merge``, ``superpixels``, ``merge_mode``,
        ``edge_weight``.

    Returns
    -------
    ndarray of int32 (rows, cols)
        Region labels ``0..R-1``.
    """
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
    colour = colour_features(x01)
    if cfg["merge_mode"] == "threshold":
        return merge_similar_regions(regions, colour, threshold=merge)
    edge = coassociation_boundary(cluster_maps) if cfg["edge_weight"] > 0 else None
    return merge_hierarchical(regions, colour, edge=edge, edge_weight=float(cfg["edge_weight"]),
                              threshold=merge)


def colour_features(x01: np.ndarray) -> np.ndarray:
    """Features of the colour merge: CIE L*a*b* for RGB, else 100 x the [0, 1] channels."""
    if x01.shape[-1] == 3:
        from skimage.color import rgb2lab

        return rgb2lab(x01)
    return 100.0 * x01
