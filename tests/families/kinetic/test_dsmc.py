"""The particle model's fast paths (physeg.families.kinetic._dsmc): the row-box disk sums
against the FFT and against the definition, and the pair draw without a full permutation.

Both paths exist for speed only (benchmarks/results/kinetic_speed.md), so each is checked
against an independent computation of the same quantity.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate2d

from physeg.families.kinetic import _dsmc


def _state(shape, radius, n, seed):
    rng = np.random.default_rng(seed)
    avg = _dsmc.LocalAverager(shape, radius)
    a1, a2 = avg.extent
    x = rng.uniform(-1, 1, (n, 2)) * [a1, a2]
    return avg, x, rng.random((n, 2))


@pytest.mark.parametrize("shape", [(40, 40), (12, 40), (40, 3), (1, 64), (3, 200)])
@pytest.mark.parametrize("radius_cells", [0.5, 1.0, 1.8, 2.5, 3.2, 5.5])
def test_row_boxes_equal_the_fft_disk_sums(shape, radius_cells):
    """Both ways of summing the disk give the same local means to round-off, also for a
    disk cropped to a short side; "auto" takes the row boxes for disks of few rows."""
    radius = radius_cells * 2.0 / max(shape)
    avg, x, c = _state(shape, radius, 500, seed=1)
    rows = min(int(radius_cells), shape[0] - 1)
    assert avg.row_box == (rows <= _dsmc.ROW_BOX_MAX)  # these grids are small
    boxes = _dsmc.LocalAverager(shape, radius, "row boxes")
    fft = _dsmc.LocalAverager(shape, radius, "fft")
    assert boxes.row_box and not fft.row_box
    np.testing.assert_allclose(boxes(x, c), fft(x, c), atol=1e-12)
    np.testing.assert_array_equal(avg(x, c), (boxes if avg.row_box else fft)(x, c))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="'row boxes' or 'fft'"):
        _dsmc.LocalAverager((8, 8), 0.3, "direct")


def test_row_boxes_are_the_zero_padded_disk_correlation():
    """The row-box sums on the grid are scipy's zero-padded 2D correlation with the disk."""
    shape, rc = (23, 31), 2.7
    avg = _dsmc.LocalAverager(shape, rc * 2.0 / max(shape))
    assert avg.row_box and avg.R == (2, 2)
    field = np.random.default_rng(2).random((2,) + shape)
    off = np.arange(-2, 3)
    disk = (off[:, None] ** 2 + off[None, :] ** 2 <= rc * rc).astype(float)
    padded = np.zeros((2,) + avg.nfft)
    padded[:, 2:2 + shape[0], 3:3 + shape[1]] = field
    got = avg._row_boxes(padded)
    ref = np.stack([correlate2d(f, disk, mode="same") for f in field])
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_large_grids_keep_the_fft_beyond_one_row():
    """On grids of more than ROW_BOX_CELLS cells only a radius of 1 cell takes the row boxes
    (where they are faster there); 2 and 3 cells keep the FFT."""
    n = 256
    assert n * n > _dsmc.ROW_BOX_CELLS
    assert [_dsmc.LocalAverager((n, n), (r + 0.5) * 2.0 / n).row_box
            for r in (1, 2, 3, 7)] == [True, False, False, False]


@pytest.mark.parametrize("n, k", [(3600, 180), (1000, 250), (1000, 251), (10, 10), (5, 0)])
def test_distinct_sample_is_k_distinct_indices(n, k):
    rng = np.random.default_rng(0)
    s = _dsmc.distinct_sample(rng, n, k)
    assert s.shape == (k,) and np.unique(s).size == k
    assert k == 0 or (s.min() >= 0 and s.max() < n)
    again = _dsmc.distinct_sample(np.random.default_rng(0), n, k)
    np.testing.assert_array_equal(s, again)  # same seed, same draw


def test_distinct_sample_is_uniform_in_membership_and_order():
    """Every index is drawn with probability k / n, and every position of the sample holds
    each index equally often (the pairs are the positions k and k + n_p)."""
    n, k, trials = 40, 6, 20_000
    rng = np.random.default_rng(4)
    draws = np.stack([_dsmc.distinct_sample(rng, n, k) for _ in range(trials)])
    member = np.bincount(draws.ravel(), minlength=n) / trials
    np.testing.assert_allclose(member, k / n, atol=0.012)  # binomial sd ~0.0024
    for pos in (0, k - 1):
        freq = np.bincount(draws[:, pos], minlength=n) / trials
        np.testing.assert_allclose(freq, 1 / n, atol=0.006)  # sd ~0.0011
