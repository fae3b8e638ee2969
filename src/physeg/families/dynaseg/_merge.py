"""Greedy hierarchical merging of a region adjacency graph (DynaSeg post-processing).

Private helper of :mod:`physeg.families.dynaseg` (numpy + heapq; no torch). The pixel work
(region means, boundary lengths and boundary strengths) is vectorised with ``bincount``;
the greedy loop runs over merges (one per region at most), never over pixels.
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = ["adjacency", "coassociation_boundary", "merge_hierarchical",
           "region_sums", "relabel_with_features"]


def relabel_with_features(regions, features) -> tuple[np.ndarray, np.ndarray]:
    """Regions relabelled ``0..R-1`` and the features as float64, after a shape check."""
    reg = np.asarray(regions)
    _, reg = np.unique(reg, return_inverse=True)
    reg = reg.reshape(np.shape(regions))
    feats = np.asarray(features, dtype=np.float64)
    if feats.shape[:2] != reg.shape:
        raise ValueError(f"features have shape {feats.shape} but regions {reg.shape}; the "
                         "first two axes must match.")
    return reg, feats


def region_sums(reg: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts (n,) and per-region feature sums (n, d) of a label image ``0..n-1``."""
    n = int(reg.max()) + 1
    flat = reg.ravel()
    f = feats.reshape(reg.size, -1)
    size = np.bincount(flat, minlength=n).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=f[:, c], minlength=n)
                     for c in range(f.shape[1])], axis=1)
    return size, sums


def adjacency(reg: np.ndarray, edge: np.ndarray | None = None):
    """4-adjacent region pairs of a label image ``0..n-1``.

    Returns ``(pairs, length, strength)``: the unique pairs ``(a, b)`` with ``a < b``, the
    number of pixel pairs on their shared border, and the sum over those pixel pairs of
    ``(edge[p] + edge[q]) / 2`` (zeros if ``edge`` is None).
    """
    n = int(reg.max()) + 1
    a = np.concatenate([reg[:, :-1].ravel(), reg[:-1, :].ravel()]).astype(np.int64)
    b = np.concatenate([reg[:, 1:].ravel(), reg[1:, :].ravel()]).astype(np.int64)
    diff = a != b
    lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
    key, inv = np.unique(lo * n + hi, return_inverse=True)
    length = np.bincount(inv, minlength=key.size).astype(np.float64)
    if edge is None:
        strength = np.zeros(key.size)
    else:
        e = np.asarray(edge, dtype=np.float64)
        ep = np.concatenate([((e[:, :-1] + e[:, 1:]) / 2).ravel(),
                             ((e[:-1, :] + e[1:, :]) / 2).ravel()])[diff]
        strength = np.bincount(inv, weights=ep, minlength=key.size)
    pairs = np.stack([key // n, key % n], axis=1)
    return pairs, length, strength


def coassociation_boundary(label_maps) -> np.ndarray:
    """Per-pixel boundary strength in [0, 1] from several label maps of one image.

    For every 4-neighbour pixel pair, the fraction of the maps that give the two pixels
    different labels; each pixel takes the largest fraction over its (up to four) pairs.
    1 = every run draws a boundary there, 0 = none does.
    """
    st = np.stack([np.asarray(m) for m in label_maps])
    if st.ndim != 3:
        raise ValueError(f"label maps must be 2D and of one shape; got stacked shape {st.shape}.")
    out = np.zeros(st.shape[1:])
    dv = (st[:, 1:] != st[:, :-1]).mean(0)
    dh = (st[:, :, 1:] != st[:, :, :-1]).mean(0)
    out[1:] = np.maximum(out[1:], dv)
    out[:-1] = np.maximum(out[:-1], dv)
    out[:, 1:] = np.maximum(out[:, 1:], dh)
    out[:, :-1] = np.maximum(out[:, :-1], dh)
    return out


def merge_hierarchical(
    regions: np.ndarray,
    features: np.ndarray,
    *,
    edge: np.ndarray | None = None,
    edge_weight: float = 0.0,
    size_power: float = 0.0,
    threshold: float = np.inf,
    n_regions: int = 1,
) -> np.ndarray:
    """Greedy agglomeration: repeatedly merge the adjacent pair of smallest cost.

    Cost of merging adjacent regions ``a`` and ``b`` (means ``f_a``, ``f_b``, sizes
    ``n_a``, ``n_b`` in pixels, ``N`` pixels in the image, mean boundary strength ``e_ab``
    along their shared border)::

        c(a, b) = (||f_a - f_b|| + edge_weight * e_ab) * (min(n_a, n_b) / (N / 100)) ** size_power

    Parameters
    ----------
    regions : ndarray of int (rows, cols)
        Initial regions (any non-negative ids; each should be 4-connected).
    features : ndarray (rows, cols) or (rows, cols, d)
        Per-pixel features whose region means are compared (DynaSeg: CIE L*a*b*).
    edge : ndarray (rows, cols), optional
        Per-pixel boundary strength (DynaSeg: the co-association boundary in [0, 1]).
    edge_weight : float, default 0
        Weight of the mean boundary strength in the cost (>= 0).
    size_power : float, default 0
        > 0 makes merges involving small regions cheaper (0 = off).
    threshold : float, default inf
        Largest cost still merged (>= 0); inclusive.
    n_regions : int, default 1
        Stop when this many regions are left (>= 1).

    Returns
    -------
    ndarray of int32
        Labels ``0..R'-1`` (the input is not modified).

    Notes
    -----
    After a merge the new region's mean, size and border statistics are the exact pooled
    values (sums of the parts), and its costs to its neighbours are recomputed. Merging
    stops when the smallest cost exceeds ``threshold`` or ``n_regions`` regions are left.
    """
    reg, feats = relabel_with_features(regions, features)
    if edge is not None and np.shape(edge) != reg.shape:
        raise ValueError(f"edge has shape {np.shape(edge)} but regions {reg.shape}; give one "
                         "boundary strength per pixel.")
    if not (threshold >= 0 and n_regions >= 1 and edge_weight >= 0):
        raise ValueError(f"need threshold >= 0, n_regions >= 1 and edge_weight >= 0; got "
                         f"{threshold}, {n_regions}, {edge_weight}.")
    n = int(reg.max()) + 1
    size, sums = region_sums(reg, feats)
    pairs, length, strength = adjacency(reg, edge)
    unit = reg.size / 100.0
    nbr: list[dict[int, list[float]]] = [dict() for _ in range(n)]
    for (i, j), ln, st in zip(pairs.tolist(), length.tolist(), strength.tolist(),
                              strict=True):
        nbr[i][j] = [ln, st]
        nbr[j][i] = [ln, st]

    def cost(i: int, j: int) -> float:
        d = float(np.sqrt(((sums[i] / size[i] - sums[j] / size[j]) ** 2).sum()))
        if edge_weight:
            ln, st = nbr[i][j]
            d += edge_weight * st / ln
        if size_power:
            d *= (min(size[i], size[j]) / unit) ** size_power
        return d

    version = [0] * n
    heap = [(cost(i, j), i, j, 0, 0) for i, j in pairs.tolist()]
    heapq.heapify(heap)
    parent = np.arange(n)
    alive = n
    while heap and alive > n_regions:
        c, i, j, vi, vj = heapq.heappop(heap)
        if version[i] != vi or version[j] != vj:
            continue  # stale entry
        if c > threshold:
            break
        # merge j into i
        size[i] += size[j]
        sums[i] += sums[j]
        for k, (ln, st) in nbr[j].items():
            if k == i:
                continue
            del nbr[k][j]
            if k in nbr[i]:
                nbr[i][k][0] += ln
                nbr[i][k][1] += st
            else:
                nbr[i][k] = [ln, st]
            nbr[k][i] = nbr[i][k]
        del nbr[i][j]
        nbr[j] = {}
        version[j] = -1
        version[i] += 1
        parent[j] = i
        alive -= 1
        for k in nbr[i]:
            a, b = (i, k) if i < k else (k, i)
            heapq.heappush(heap, (cost(a, b), a, b, version[a], version[b]))
    # resolve parents (chains are short; vectorised pointer jumping)
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    _, out = np.unique(parent[reg], return_inverse=True)
    return out.reshape(reg.shape).astype(np.int32)
