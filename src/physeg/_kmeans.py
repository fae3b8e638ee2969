"""Lloyd's k-means, the one implementation the method families share (numpy only).

Lloyd's algorithm alternates two steps on samples ``x_i`` (rows of an (n, d) array) and
centres ``c_j``:

* assignment: ``l_i = argmin_j ||x_i - c_j||^2`` (ties go to the smallest ``j``);
* update: ``c_j = mean{x_i : l_i = j}`` (a centre with no sample keeps its place);

and stops when the assignment no longer changes, or after ``max_iter`` assignments. The
labels returned are those of the last assignment and the centres the means of those labels.

Two seedings, for two uses:

* ``"k-means++"`` (Arthur & Vassilvitskii, 2007): the first centre is a random sample, each
  next one a sample drawn with probability proportional to its squared distance to the
  nearest centre so far. Random, drawn from ``rng``; for small sample sets where the
  clustering is repeated for several k (DynaSeg's silhouette phase).
* ``"principal-axis"``: the samples are sorted along their first principal axis and cut
  into k slices of equal count; the centres are the slices' means. Deterministic, so no
  restarts are needed; suits intensity-like features whose clusters are ordered along one
  direction (the heat method's initial partition).

Two ways to compute the assignment's distances, which can round differently and so break
near-ties differently (each caller keeps the one its recorded results were made with):

* ``"direct"``: ``sum_c (x_ic - c_jc)^2``, exact to rounding, (n, k, d) memory;
* ``"expanded"``: ``-2 x_i . c_j + |c_j|^2`` (``|x_i|^2`` is dropped: it does not change the
  argmin), one matrix product, (n, k) memory; for many samples.

This module is in the foundation layer: it imports nothing from physeg.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "kmeans",
    "assign",
    "kmeans_plus_plus_centres",
    "principal_axis_centres",
    "first_principal_component",
]

_INITS = ("k-means++", "principal-axis")
_DISTANCES = ("direct", "expanded")


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    init: str = "k-means++",
    rng: Any = None,
    max_iter: int = 30,
    distance: str = "direct",
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of ``x`` into ``k`` groups by Lloyd's algorithm.

    Parameters
    ----------
    x : ndarray of shape (n, d)
        Samples (any real dtype; the iterations run in float64).
    k : int
        Number of clusters, ``1 <= k <= n``. ``"principal-axis"`` also accepts ``k > n``:
        the surplus slices are empty, their centres NaN and the labels meaningless (kept
        because the heat method's results for such tiny images were recorded that way).
    init : {"k-means++", "principal-axis"}, default "k-means++"
        Seeding of the centres (see the module notes): random k-means++ or deterministic
        principal-axis quantile slices.
    rng : None, int or numpy.random.Generator, optional
        Draws the k-means++ seeds (unused by ``"principal-axis"``). A generator is used as
        given (and advanced); an int seeds a new one.
    max_iter : int, default 30
        Most assignment steps; fewer when the labels stop changing.
    distance : {"direct", "expanded"}, default "direct"
        How the squared distances of the assignment are computed (see the module notes).

    Returns
    -------
    labels : ndarray of intp, shape (n,)
        Cluster of each sample, ``0..k-1`` (a cluster may end up empty).
    centres : ndarray of float64, shape (k, d)
        The means of the clusters of ``labels``.

    Raises
    ------
    ValueError
        ``k < 1``, ``k > n`` with k-means++ seeding, or an unknown ``init`` or ``distance``.
    """
    if init not in _INITS:
        raise ValueError(f"Unknown k-means init {init!r}; expected one of {list(_INITS)}.")
    if distance not in _DISTANCES:
        raise ValueError(
            f"Unknown k-means distance {distance!r}; expected one of {list(_DISTANCES)}.")
    x = np.asarray(x)
    n = x.shape[0]
    if k < 1 or (init == "k-means++" and k > n):
        raise ValueError(f"k-means needs 1 <= k <= number of samples ({n}); got k={k}.")
    x64 = x.astype(np.float64, copy=False)
    if init == "k-means++":
        centres = kmeans_plus_plus_centres(x64, k, rng=np.random.default_rng(rng))
    else:
        # the slices are taken on x as given: the recorded heat labels sort float32 features
        centres = principal_axis_centres(x, k)
    labels = np.full(n, -1, dtype=np.intp)
    for _ in range(max_iter):
        new = assign(x64, centres, distance=distance)
        if np.array_equal(new, labels):
            break
        labels = new
        _update_centres(x64, labels, centres)
    return labels, centres


def assign(x: np.ndarray, centres: np.ndarray, *, distance: str = "direct") -> np.ndarray:
    """Index of the nearest centre for every row of ``x`` (ties: the smallest index).

    Parameters
    ----------
    x : ndarray of float64, shape (n, d)
    centres : ndarray of float64, shape (k, d)
    distance : {"direct", "expanded"}, default "direct"
        See the module notes.

    Returns
    -------
    ndarray of intp, shape (n,)
    """
    if distance == "direct":
        score = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    else:
        score = -2.0 * x @ centres.T + np.einsum("kc,kc->k", centres, centres)
    return np.argmin(score, axis=1)


def _update_centres(x: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> None:
    """Move every non-empty cluster's centre (in place) to the mean of its samples.

    One ``bincount`` over (cluster, channel) bins; it adds the samples in their order, the
    same sums as a per-cluster loop.
    """
    k, d = centres.shape
    counts = np.bincount(labels, minlength=k)
    bins = (labels[:, None] * d + np.arange(d)).ravel()
    sums = np.bincount(bins, weights=x.ravel(), minlength=k * d).reshape(k, d)
    filled = counts > 0
    centres[filled] = sums[filled] / counts[filled, None]


def kmeans_plus_plus_centres(x: np.ndarray, k: int, *, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds: ``k`` rows of ``x``, each drawn with probability ~ its squared distance.

    Parameters
    ----------
    x : ndarray of float64, shape (n, d)
    k : int
        Number of centres, ``1 <= k <= n``.
    rng : numpy.random.Generator
        Draws the first centre uniformly, then each next one. If every sample coincides
        with a centre already chosen, the next one is drawn uniformly.

    Returns
    -------
    ndarray of float64, shape (k, d)
    """
    n = x.shape[0]
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    nearest_d2 = ((x - centres[0]) ** 2).sum(1)
    # sequential by definition: each draw depends on the centres before it
    for j in range(1, k):
        total = nearest_d2.sum()
        pick = rng.choice(n, p=nearest_d2 / total) if total > 0 else rng.integers(n)
        centres[j] = x[pick]
        nearest_d2 = np.minimum(nearest_d2, ((x - centres[j]) ** 2).sum(1))
    return centres


def principal_axis_centres(x: np.ndarray, k: int) -> np.ndarray:
    """Means of ``k`` equal-count slices of the samples sorted along their first principal axis.

    Parameters
    ----------
    x : ndarray of shape (n, d)
    k : int
        Number of slices, ``1 <= k <= n`` (slice sizes differ by at most one).

    Returns
    -------
    ndarray of float64, shape (k, d)
        Ordered along the axis (the first centre is the darkest for intensities).
    """
    order = np.argsort(first_principal_component(x), kind="stable")
    # k is small; np.mean per slice keeps the sums of the recorded heat results
    return np.stack([x[s].mean(axis=0, dtype=np.float64) for s in np.array_split(order, k)])


def first_principal_component(x: np.ndarray) -> np.ndarray:
    """Projection of the samples on their first principal axis, oriented towards larger sums.

    Parameters
    ----------
    x : ndarray of shape (n, d)

    Returns
    -------
    ndarray of shape (n,), in ``x``'s dtype
        ``x @ v`` with ``v`` the unit eigenvector of the largest eigenvalue of the sample
        covariance, signed so that its entries sum to >= 0 ("brighter" is larger); the
        samples are not centred (an offset does not change the order). ``x[:, 0]`` if d = 1.
    """
    if x.shape[1] == 1:
        return x[:, 0]
    _, vecs = np.linalg.eigh(np.cov(x, rowvar=False))
    axis = vecs[:, -1]
    if axis.sum() < 0:
        axis = -axis
    return x @ axis.astype(x.dtype)
