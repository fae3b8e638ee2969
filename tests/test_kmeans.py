"""Known-answer tests for physeg._kmeans (Lloyd's k-means with two seedings)."""

from __future__ import annotations

import numpy as np
import pytest

from physeg._kmeans import (
    assign,
    first_principal_component,
    kmeans,
    kmeans_plus_plus_centres,
    principal_axis_centres,
)

INITS = ("k-means++", "principal-axis")
DISTANCES = ("direct", "expanded")


def blobs(centres, n_each=40, spread=0.05, seed=0):
    """Well-separated Gaussian blobs; returns samples and the true blob of each."""
    gen = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=float)
    x = np.concatenate([gen.normal(c, spread, (n_each, centres.shape[1])) for c in centres])
    return x, np.repeat(np.arange(len(centres)), n_each)


def same_partition(a, b):
    """True when the two labelings group the samples identically (up to renaming)."""
    pairs = np.unique(np.stack([a, b]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("distance", DISTANCES)
def test_well_separated_blobs_are_found(init, distance):
    x, truth = blobs([[0, 0], [5, 0], [0, 5]], seed=1)
    labels, centres = kmeans(x, 3, init=init, rng=0, distance=distance)
    assert same_partition(labels, truth)
    # the centres are the blob means
    for j in range(3):
        np.testing.assert_allclose(centres[j], x[labels == j].mean(0))
    true = np.array([[0, 0], [5, 0], [0, 5]])
    nearest = np.linalg.norm(centres[:, None] - true[None], axis=-1).min(0)
    assert nearest.max() < 0.05


@pytest.mark.parametrize("init", INITS)
def test_k_equal_one_is_the_mean(init):
    x, _ = blobs([[0, 0, 0], [1, 2, 3]], seed=2)
    labels, centres = kmeans(x, 1, init=init, rng=0)
    assert labels.dtype == np.intp and (labels == 0).all()
    np.testing.assert_allclose(centres, x.mean(0, keepdims=True))


def test_hand_computed_one_dimensional_case():
    # principal-axis slices of 6 sorted samples into 2: {0, 1, 2} and {10, 11, 12}
    x = np.array([[10.0], [0.0], [11.0], [1.0], [12.0], [2.0]])
    np.testing.assert_allclose(principal_axis_centres(x, 2), [[1.0], [11.0]])
    labels, centres = kmeans(x, 2, init="principal-axis")
    np.testing.assert_array_equal(labels, [1, 0, 1, 0, 1, 0])
    np.testing.assert_allclose(centres, [[1.0], [11.0]])


def test_lloyd_moves_a_bad_start_to_the_means():
    # slices of 4 samples along the axis: {0, 1} | {2, 9}: the second start is pulled
    x = np.array([[0.0], [1.0], [2.0], [9.0]])
    labels, centres = kmeans(x, 2, init="principal-axis")
    np.testing.assert_array_equal(labels, [0, 0, 0, 1])
    np.testing.assert_allclose(centres, [[1.0], [9.0]])


def test_assignment_ties_go_to_the_smallest_index():
    x = np.array([[0.5], [0.0], [1.0]])
    centres = np.array([[0.0], [1.0]])
    for distance in DISTANCES:
        np.testing.assert_array_equal(assign(x, centres, distance=distance), [0, 0, 1])


def test_distances_agree_away_from_ties():
    gen = np.random.default_rng(3)
    x, centres = gen.random((200, 4)), gen.random((5, 4))
    np.testing.assert_array_equal(assign(x, centres, distance="direct"),
                                  assign(x, centres, distance="expanded"))


def test_first_principal_component_orientation():
    # samples along the direction (1, 1): projections grow with the channel sum
    t = np.linspace(-1, 1, 9)
    x = np.stack([t, t + 0.01 * np.sin(7 * t)], axis=1)
    z = first_principal_component(x)
    assert np.all(np.diff(z) > 0)
    np.testing.assert_array_equal(first_principal_component(x[:, :1]), x[:, 0])


# ----------------------------------------------------------------------------- randomness


def test_same_seed_same_labels_and_the_generator_is_advanced():
    x, _ = blobs([[0, 0], [1, 0], [0, 1], [1, 1]], spread=0.3, seed=4)
    a, ca = kmeans(x, 4, rng=7)
    b, cb = kmeans(x, 4, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ca, cb)
    gen = np.random.default_rng(7)
    first = kmeans_plus_plus_centres(x, 4, rng=gen)
    second = kmeans_plus_plus_centres(x, 4, rng=gen)  # continues the stream
    assert not np.array_equal(first, second)
    # the principal-axis seeding draws nothing
    np.testing.assert_array_equal(kmeans(x, 4, init="principal-axis", rng=1)[0],
                                  kmeans(x, 4, init="principal-axis", rng=2)[0])


def test_kmeans_plus_plus_seeds_are_distinct_samples():
    x = np.array([[0.0, 0.0]] * 5 + [[3.0, 0.0]] * 5 + [[0.0, 4.0]] * 5)
    seeds = kmeans_plus_plus_centres(x, 3, rng=np.random.default_rng(0))
    # a sample at distance 0 from a chosen seed has probability 0: three different points
    assert np.unique(seeds, axis=0).shape[0] == 3
    # all samples equal: the draws fall back to uniform picks instead of dividing by 0
    same = kmeans_plus_plus_centres(np.ones((4, 2)), 3, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(same, np.ones((3, 2)))


# ----------------------------------------------------------------------------- errors


def test_errors():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"1 <= k <= number of samples \(3\); got k=4"):
        kmeans(x, 4)
    with pytest.raises(ValueError, match="got k=0"):
        kmeans(x, 0, init="principal-axis")
    with pytest.raises(ValueError, match="Unknown k-means init 'kmeans'"):
        kmeans(x, 2, init="kmeans")
    with pytest.raises(ValueError, match="Unknown k-means distance"):
        kmeans(x, 2, distance="cosine")
