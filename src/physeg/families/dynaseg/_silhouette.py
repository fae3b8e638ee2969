"""DynaSeg's silhouette phase: the number of clusters ``k*`` that best separates the pixels.

Before training, ``n`` pixels of the (resized) input are drawn with ``rng``, their channel
values are clustered by k-means (:func:`physeg._kmeans.kmeans`, k-means++ seeding, 30 Lloyd
steps) for every ``k`` in ``[k_min, k_max]``, and the ``k`` with the largest mean
silhouette (Rousseeuw 1987)

.. math::

    s_i = \\frac{b_i - a_i}{\\max(a_i, b_i)}

on those samples is kept (``a_i``: mean distance of sample i to the other members of its
cluster; ``b_i``: smallest mean distance to another cluster). ``k*`` then floors the
cluster count in DynaSeg's dynamic weight and raises the stop threshold.

Choices (the paper gives no features, sampling or k range): pixels rather than the image
rows the official code's unused helper clusters (pixels are what is being clustered); a
subsample, because the silhouette is quadratic in the number of samples; k in [3, 12]
rather than 3..26, because the score fell monotonically from 3 to 26 on the BSD-sized
image measured; numpy only (scikit-learn is not a dependency). Everything is vectorised
except the loop over k.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._kmeans import kmeans
from ..._validate import as_rng

__all__ = ["choose_k_silhouette", "silhouette_score"]

#: Lloyd iterations per k of the silhouette phase.
KMEANS_ITERATIONS = 30


def silhouette_score(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette ``s_i = (b_i - a_i) / max(a_i, b_i)`` over the samples (Euclidean).

    ``a_i`` is the mean distance of sample i to the other members of its cluster, ``b_i``
    the smallest mean distance to another cluster; samples alone in their cluster get
    ``s_i = 0`` (Rousseeuw 1987, scikit-learn's convention). Needs >= 2 clusters.

    Parameters
    ----------
    x : ndarray (n, d)
        Samples.
    labels : ndarray of int (n,)
        Cluster of each sample (any integer ids).

    Returns
    -------
    float
        In [-1, 1]; larger = better separated clusters.
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    uniq, inv = np.unique(labels, return_inverse=True)
    if uniq.size < 2:
        raise ValueError("the silhouette needs at least 2 clusters.")
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    onehot = np.eye(uniq.size)[inv]  # (n, K)
    counts = onehot.sum(0)
    sums = dist @ onehot  # (n, K): sum of distances to each cluster
    own = counts[inv]
    rows = np.arange(x.shape[0])
    a = sums[rows, inv] / np.maximum(own - 1, 1)
    mean_other = sums / counts[None, :]
    mean_other[rows, inv] = np.inf
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
        Draws the samples, then the k-means++ seeds of every k in turn.

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
        labels, _ = kmeans(sample, k, init="k-means++", rng=gen, max_iter=KMEANS_ITERATIONS,
                           distance="direct")
        if np.unique(labels).size < 2:
            continue
        scores[k] = silhouette_score(sample, labels)
    if not scores:
        return int(k_min), scores
    best = max(scores.values())
    return min(k for k, s in scores.items() if s == best), scores
